// The attention interaction (tnd.interactions.attention) with leaky dynamics, included by
// tnd_loop.cpp. Per batch row, neuron n (d-dim state s_n, key vector c_n), flat units m = n*d + l:
//     k_n = kappa * tanh(<c_n, s_n>),   e_n = exp(k_n - max_n' k_n')     (the shift cancels below)
//     num = (e * s) @ Wv,   den = e @ Wp                 (e replicated over the d dims of a neuron)
//     u   = num / den (0 where den = 0: no in-edges)
//     c   = act(u + x + bias),   a = exp(-r dt),   s' = c + (s - c) * a
// Wv[(j,l), (i,l)] = p_ji v_ji,l and Wp[(j,l), (i,l)] = p_ji (the prior softmax weight
// p = mask * exp(b - max b) and the value v of edge j -> i): dense (M, M) block matrices or the
// flat CSR over targets, exactly as the linear interaction's W. Forward saves S, C (targets),
// U and DEN; backward recomputes e. Dense weight gradients are formed by the caller in one
// matmul each (ES^T Gnum, EF^T Gden), sparse ones accumulated here.

template <typename T>
struct AArgs {
    int T_, B, N, d, n_in, n_out, seq_out, sparse, act, nthreads;
    T kappa;
    const T *P, *s0, *W1, *W2, *key, *r, *bias, *dt, *g_outs, *g_last, *S_in, *C_in, *U_in, *D_in;
    const i64 *in_idx, *out_idx, *rowptr;
    const i32* src;
    i64 E;
    T *outs, *s_last, *S, *C, *U, *D, *g_s0, *g_P, *Gnum, *Gden, *EF, *ES, *g_params;
};

// The attention family's C ABI (tnd.fast.attention.AttnArgs mirrors it); forward and backward share it.
#define TND_ATTN_FIELDS(X)                                                                                \
    X(i, T_) X(i, B) X(i, N) X(i, d) X(i, n_in) X(i, n_out) X(i, seq_out) X(i, sparse) X(i, act) X(i, E)  \
    X(i, nthreads) X(d, kappa) X(f, P) X(f, s0) X(f, W1) X(f, W2) X(f, key) X(f, r) X(f, bias) X(f, dt)   \
    X(f, g_outs) X(f, g_last) X(f, S_in) X(f, C_in) X(f, U_in) X(f, D_in) X(l, in_idx) X(l, out_idx)     \
    X(l, rowptr) X(n, src) X(f, outs) X(f, s_last) X(f, S) X(f, C) X(f, U) X(f, D) X(f, g_s0) X(f, g_P)  \
    X(f, Gnum) X(f, Gden) X(f, EF) X(f, ES) X(f, g_params)
TND_DEFINE_ABI(attn, TND_ATTN_FIELDS)

// ef = e (replicated over d), es = e * s, th = tanh(<c_n, s_n>) for nb rows of states s.
// Flat loops (tanh, max, exp each over all neurons) so that they vectorise.
template <typename T>
static void attn_keys(const AArgs<T>& A, const T* s, int nb, T* ef, T* es, T* th) {
    const int N = A.N, d = A.d, M = N * d;
    const T kappa = A.kappa;
    for (int bb = 0; bb < nb; ++bb) {
        const T* __restrict sb = s + (i64)bb * M;
        T* __restrict tb = th + (i64)bb * N;
        T* __restrict efb = ef + (i64)bb * M;
        T* __restrict esb = es + (i64)bb * M;
        if (d == 1) {
            for (int n = 0; n < N; ++n) tb[n] = A.key[n] * sb[n];
        } else {
            for (int n = 0; n < N; ++n) {
                T z = 0;
                for (int l = 0; l < d; ++l) z += A.key[n * d + l] * sb[n * d + l];
                tb[n] = z;
            }
        }
        for (int n = 0; n < N; ++n) tb[n] = std::tanh(tb[n]);
        T tmax = T(-1);
        for (int n = 0; n < N; ++n) tmax = tb[n] > tmax ? tb[n] : tmax;
        const T kmax = kappa * tmax;
        if (d == 1) {
            for (int n = 0; n < N; ++n) {
                const T e = std::exp(kappa * tb[n] - kmax);
                efb[n] = e;
                esb[n] = e * sb[n];
            }
        } else {
            for (int n = 0; n < N; ++n) efb[n * d] = std::exp(kappa * tb[n] - kmax);
            for (int n = 0; n < N; ++n)
                for (int l = 0; l < d; ++l) {
                    efb[n * d + l] = efb[n * d];
                    esb[n * d + l] = efb[n * d] * sb[n * d + l];
                }
        }
    }
}

template <typename T>
static void attn_forward_rows(const AArgs<T>& A, int b0, int b1) {
    const int B = A.B, N = A.N, d = A.d, M = N * d, nb = b1 - b0, n_in = A.n_in;
    const i64 nbM = (i64)nb * M;
    std::vector<T> ef(nbM), es(nbM), th((i64)nb * N), num(nbM), den(nbM), pre(M), zbuf(M);
    forward_time_loop<T>(A, b0, b1, M, [&](int t, i64 off, const T* cur, T* nxt) {
        attn_keys(A, cur, nb, ef.data(), es.data(), th.data());
        std::memset(num.data(), 0, sizeof(T) * nbM);
        std::memset(den.data(), 0, sizeof(T) * nbM);
        if (A.sparse) {
            csr_gather(num.data(), es.data(), A.rowptr, A.src, A.W1, nb, M);
            csr_gather(den.data(), ef.data(), A.rowptr, A.src, A.W2, nb, M);
        } else {
            matmul_rows(num.data(), es.data(), A.W1, nb, M);
            matmul_rows(den.data(), ef.data(), A.W2, nb, M);
        }
        for (int bb = 0; bb < nb; ++bb) {
            const i64 ro = (i64)bb * M;
            std::memcpy(pre.data(), A.bias, sizeof(T) * M);
            const T* p = A.P + ((i64)t * B + b0 + bb) * n_in;
            for (int k = 0; k < n_in; ++k) pre[A.in_idx[k]] += p[k];
            const T* sb = cur + ro;
            T* nbp = nxt + ro;
            T* cb = A.C ? A.C + off + ro : pre.data();
            T* ub = A.U ? A.U + off + ro : nullptr;
            T* db = A.D ? A.D + off + ro : nullptr;
            const T h = A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1);
            T* __restrict z = zbuf.data();
            for (int m = 0; m < M; ++m) {  // separate flat loops, so that each vectorises
                const T dv = den[ro + m];
                const T u = dv > T(0) ? num[ro + m] / dv : T(0);
                z[m] = u + pre[m];
                if (ub) {
                    ub[m] = u;
                    db[m] = dv;
                }
            }
            if (A.act == 0)
                for (int m = 0; m < M; ++m) z[m] = std::tanh(z[m]);
            for (int m = 0; m < M; ++m) {
                const T c = z[m];
                cb[m] = c;
                nbp[m] = c + (sb[m] - c) * std::exp(-A.r[m] * h);
            }
        }
    });
}

// acc layout (doubles): key (M) | r (M) | bias (M) | wv (E) | wp (E)   (E only when sparse)
template <typename T>
static void attn_backward_rows(const AArgs<T>& A, int b0, int b1, double* acc) {
    const int B = A.B, N = A.N, d = A.d, M = N * d, nb = b1 - b0, n_in = A.n_in;
    const i64 nbM = (i64)nb * M;
    double *akey = acc, *ar = acc + M, *abias = acc + 2 * M, *awv = acc + 3 * M, *awp = awv + (A.sparse ? A.E : 0);
    std::vector<T> gp(M), th((i64)nb * N), ges(nbM), gef(nbM), fkey(M);
    std::vector<T> ef_buf(A.EF ? 0 : nbM), es_buf(A.ES ? 0 : nbM), gnum_buf(A.Gnum ? 0 : nbM), gden_buf(A.Gden ? 0 : nbM);
    Decays<T> decays(A.r, M);  // once per distinct dt (tnd_loop.cpp)
    backward_time_loop<T>(A, b0, b1, M, [&](int t, i64 off, const T* g, T* gn) {
        const T* st = A.S_in + off;
        T* gnum = A.Gnum ? A.Gnum + off : gnum_buf.data();
        T* gden = A.Gden ? A.Gden + off : gden_buf.data();
        T* ef = A.EF ? A.EF + off : ef_buf.data();
        T* es = A.ES ? A.ES + off : es_buf.data();
        for (int bb = 0; bb < nb; ++bb) {
            const i64 ro = (i64)bb * M;
            const T h = A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1);
            const T *sb = st + ro, *cb = A.C_in + off + ro, *ub = A.U_in + off + ro, *db = A.D_in + off + ro;
            const T* gb = g + ro;
            T* gnb = gn + ro;
            const T* dc = decays.at(h);
            if (A.act == 0)
                leaky_bwd_elem<T, true>(M, sb, cb, gb, dc, h, gp.data(), gnb, ar, abias);
            else
                leaky_bwd_elem<T, false>(M, sb, cb, gb, dc, h, gp.data(), gnb, ar, abias);
            T* gPt = A.g_P + ((i64)t * B + b0 + bb) * n_in;
            for (int k = 0; k < n_in; ++k) gPt[k] = gp[A.in_idx[k]];
            for (int m = 0; m < M; ++m) {  // u = num / den
                const T dv = db[m];
                const T inv = dv > T(0) ? T(1) / dv : T(0);
                gnum[ro + m] = gp[m] * inv;
                gden[ro + m] = -gp[m] * ub[m] * inv;
            }
        }
        attn_keys(A, st, nb, ef, es, th.data());
        std::memset(ges.data(), 0, sizeof(T) * nbM);
        std::memset(gef.data(), 0, sizeof(T) * nbM);
        if (A.sparse) {
            csr_scatter_grad(ges.data(), gnum, es, A.rowptr, A.src, A.W1, awv, nb, M);
            csr_scatter_grad(gef.data(), gden, ef, A.rowptr, A.src, A.W2, awp, nb, M);
        } else {
            matmul_rows(ges.data(), gnum, A.W1, nb, M);  // W1, W2 are the transposed matrices here
            matmul_rows(gef.data(), gden, A.W2, nb, M);
        }
        std::fill(fkey.begin(), fkey.end(), T(0));
        for (int bb = 0; bb < nb; ++bb) {  // through e = exp(kappa tanh(<c, s>) - max) to s and c
            const i64 ro = (i64)bb * M;
            const T* __restrict sb = st + ro;
            const T* __restrict tb = th.data() + (i64)bb * N;
            T* __restrict gnb = gn + ro;
            if (d == 1) {  // flat, vectorised
                const T *__restrict efb = ef + ro, *__restrict gefb = gef.data() + ro, *__restrict gesb = ges.data() + ro;
                T* __restrict fk = fkey.data();
                for (int n = 0; n < N; ++n) {
                    const T e = efb[n];
                    const T gz = (gefb[n] + gesb[n] * sb[n]) * e * A.kappa * (T(1) - tb[n] * tb[n]);
                    gnb[n] += gesb[n] * e + gz * A.key[n];
                    fk[n] += gz * sb[n];
                }
                continue;
            }
            for (int n = 0; n < N; ++n) {
                const T e = ef[ro + n * d];
                T ge = 0;
                for (int l = 0; l < d; ++l) {
                    const int q = n * d + l;
                    ge += gef[ro + q] + ges[ro + q] * sb[q];
                    gnb[q] += ges[ro + q] * e;
                }
                const T gz = ge * e * A.kappa * (T(1) - tb[n] * tb[n]);
                for (int l = 0; l < d; ++l) {
                    const int q = n * d + l;
                    gnb[q] += gz * A.key[q];
                    fkey[q] += gz * sb[q];
                }
            }
        }
        for (int m = 0; m < M; ++m) akey[m] += (double)fkey[m];  // per-step partial sums, then double
    });
}

template <typename T>
static void attn_forward(const AArgs<T>& A, int nthreads) {
    for_row_chunks(split_rows(A.B, nthreads), [&A](int b0, int b1) { attn_forward_rows(A, b0, b1); });
}

// out: key (M) | r (M) | bias (M) | wv (E) | wp (E)   (E only when sparse)
template <typename T>
static void attn_backward(const AArgs<T>& A, int nthreads, T* out) {
    const i64 M = (i64)A.N * A.d, L = 3 * M + (A.sparse ? 2 * A.E : 0);
    auto acc = sum_over_chunks(split_rows(A.B, nthreads), L, [&A](int b0, int b1, double* a) { attn_backward_rows(A, b0, b1, a); });
    for (i64 i = 0; i < L; ++i) out[i] = (T)acc[i];
}

#define TND_ATTN_EXPORT(T, SUF)                                                   \
    extern "C" void tnd_attn_forward_##SUF(const attn_raw* R) {                  \
        AArgs<T> A{};                                                             \
        attn_fill(A, *R);                                                         \
        attn_forward<T>(A, A.nthreads);                                           \
    }                                                                             \
    extern "C" void tnd_attn_backward_##SUF(const attn_raw* R) {                 \
        AArgs<T> A{};                                                             \
        attn_fill(A, *R);                                                         \
        attn_backward<T>(A, A.nthreads, A.g_params);                              \
    }

#ifndef TND_SKIP_F32
TND_ATTN_EXPORT(float, f32)
#endif
#ifndef TND_SKIP_F64
TND_ATTN_EXPORT(double, f64)
#endif
