// Gated dynamics (tnd.dynamics.gated), included by tnd_loop.cpp: per neuron n with d x d matrices A, G, V (N, d, d):
//     gate = s_n A_n + u_n G_n + beta + xg        (xg: input projection through H, input units)
//     c    = tanh(u_n V_n + cb + xc)              (xc: input projection through U, input units)
//     rate = rmin + (rmax - rmin) * sigmoid(gate)   (rspan = rmax - rmin; tau in [tau_min, tau_max])
//     a    = exp(-rate * dt),     s' = c + (s - c) * a
template <typename T>
struct GArgs {
    int T_, B, N, d, n_in, n_out, seq_out, sparse, nthreads;
    T rmin, rspan;
    const T *XG, *XC, *s0, *W, *WT, *w, *A, *G, *V, *beta, *cb, *dt, *g_outs, *g_last;
    const T *S_in, *U_in, *SIG_in, *CAND_in;
    const i64 *in_idx, *out_idx, *rowptr;
    const i32* src;
    i64 E;
    T *outs, *s_last, *S, *U, *SIG, *CAND, *g_s0, *g_XG, *g_XC, *Gu, *g_params;
};

// The gated family's C ABI (tnd.fast.gated.GatedArgs mirrors it); forward and backward share it.
#define TND_GATED_FIELDS(X)                                                                               \
    X(i, T_) X(i, B) X(i, N) X(i, d) X(i, n_in) X(i, n_out) X(i, seq_out) X(i, sparse) X(i, E)            \
    X(i, nthreads) X(d, rmin) X(d, rspan) X(f, XG) X(f, XC) X(f, s0) X(f, W) X(f, WT) X(f, w) X(f, A)     \
    X(f, G) X(f, V) X(f, beta) X(f, cb) X(f, dt) X(f, g_outs) X(f, g_last) X(f, S_in) X(f, U_in)          \
    X(f, SIG_in) X(f, CAND_in) X(l, in_idx) X(l, out_idx) X(l, rowptr) X(n, src) X(f, outs) X(f, s_last) \
    X(f, S) X(f, U) X(f, SIG) X(f, CAND) X(f, g_s0) X(f, g_XG) X(f, g_XC) X(f, Gu) X(f, g_params)
TND_DEFINE_ABI(gated, TND_GATED_FIELDS)

template <typename T>
__attribute__((noinline)) static void gated_step_d1(int M, const T* __restrict gr, const T* __restrict sr,
                                                    const T* __restrict Av, const T* __restrict ur,
                                                    const T* __restrict Gv, const T* __restrict cr,
                                                    const T* __restrict Vv, T* __restrict sgr, T* __restrict cdr,
                                                    T* __restrict nr, T rminh, T rspanh) {
    for (int m = 0; m < M; ++m) {  // d == 1: one flat, vectorised loop
        const T gate = gr[m] + sr[m] * Av[m] + ur[m] * Gv[m];
        const T sig = T(0.5) * std::tanh(T(0.5) * gate) + T(0.5);  // sigmoid, overflow-free (no division)
        const T c = std::tanh(cr[m] + ur[m] * Vv[m]);
        const T a = std::exp(-(rminh + rspanh * sig));
        sgr[m] = sig;
        cdr[m] = c;
        nr[m] = c + (sr[m] - c) * a;
    }
}

template <typename T>
static void gated_forward_rows(const GArgs<T>& A, int b0, int b1) {
    const int B = A.B, N = A.N, d = A.d, M = N * d, nb = b1 - b0, n_in = A.n_in;
    const i64 nbM = (i64)nb * M;
    std::vector<T> u_buf(nbM), sig_buf(nbM), cand_buf(nbM);
    std::vector<T> gin(nbM), cin(nbM);
    forward_time_loop<T>(A, b0, b1, M, [&](int t, i64 off, const T* cur, T* nxt) {
        T* u = A.U ? A.U + off : u_buf.data();
        T* sg = A.SIG ? A.SIG + off : sig_buf.data();
        T* cd = A.CAND ? A.CAND + off : cand_buf.data();
        std::memset(u, 0, sizeof(T) * nbM);
        aggregate(A, u, cur, nb, M);
        for (int bb = 0; bb < nb; ++bb) {
            T* gi = gin.data() + (i64)bb * M;
            T* ci = cin.data() + (i64)bb * M;
            std::memcpy(gi, A.beta, sizeof(T) * M);
            std::memcpy(ci, A.cb, sizeof(T) * M);
            const T* xg = A.XG + ((i64)t * B + b0 + bb) * n_in;
            const T* xc = A.XC + ((i64)t * B + b0 + bb) * n_in;
            for (int k = 0; k < n_in; ++k) {
                gi[A.in_idx[k]] += xg[k];
                ci[A.in_idx[k]] += xc[k];
            }
            const T h = A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1);
            const T* sb = cur + (i64)bb * M;
            const T* ub = u + (i64)bb * M;
            T* sgb = sg + (i64)bb * M;
            T* cdb = cd + (i64)bb * M;
            T* nbp = nxt + (i64)bb * M;
            if (d == 1) {  // flat, vectorisable loops
                gated_step_d1(M, gi, cur + (i64)bb * M, A.A, u + (i64)bb * M, A.G, ci, A.V, sgb, cdb, nbp, A.rmin * h, A.rspan * h);
                continue;
            }
            for (int n = 0; n < N; ++n) {
                const T* An = A.A + (i64)n * d * d;
                const T* Gn = A.G + (i64)n * d * d;
                const T* Vn = A.V + (i64)n * d * d;
                const int o = n * d;
                for (int k = 0; k < d; ++k) {
                    T gate = gi[o + k], cpre = ci[o + k];
                    for (int l = 0; l < d; ++l) {
                        gate += sb[o + l] * An[l * d + k] + ub[o + l] * Gn[l * d + k];
                        cpre += ub[o + l] * Vn[l * d + k];
                    }
                    const T sig = T(0.5) * std::tanh(T(0.5) * gate) + T(0.5);  // sigmoid, overflow-free (no division)
                    const T c = std::tanh(cpre);
                    const T a = std::exp(-(A.rmin + A.rspan * sig) * h);
                    sgb[o + k] = sig;
                    cdb[o + k] = c;
                    nbp[o + k] = c + (sb[o + k] - c) * a;
                }
            }
        }
    });
}

// acc layout (doubles): A (N*d*d) | G (N*d*d) | V (N*d*d) | beta (M) | cb (M) | w (E, sparse)
template <typename T>
static void gated_backward_rows(const GArgs<T>& A, int b0, int b1, double* acc) {
    const int B = A.B, N = A.N, d = A.d, M = N * d, nb = b1 - b0, n_in = A.n_in;
    const i64 nbM = (i64)nb * M, NDD = (i64)N * d * d;
    double* aA = acc;
    double* aG = aA + NDD;
    double* aV = aG + NDD;
    double* abeta = aV + NDD;
    double* acb = abeta + M;
    double* aw = acb + M;
    std::vector<T> gu_buf(A.sparse ? nbM : 0), gg(M), gc(M);
    T* __restrict ggb = gg.data();
    T* __restrict gcb = gc.data();
    backward_time_loop<T>(A, b0, b1, M, [&](int t, i64 off, const T* g, T* gn) {
        T* gut = A.sparse ? gu_buf.data() : A.Gu + off;
        for (int bb = 0; bb < nb; ++bb) {
            const i64 ro = (i64)bb * M;
            const T* __restrict sb = A.S_in + off + ro;
            const T* __restrict ub = A.U_in + off + ro;
            const T* __restrict sgb = A.SIG_in + off + ro;
            const T* __restrict cdb = A.CAND_in + off + ro;
            const T* __restrict gb = g + ro;
            T* __restrict gub = gut + ro;
            T* __restrict gnb = gn + ro;
            const T h = A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1);
            gated_bwd_elem(M, sb, sgb, cdb, gb, A.rmin, A.rspan, h, ggb, gcb, gnb, abeta, acb);
            const i64 prow = ((i64)t * B + b0 + bb) * n_in;
            for (int k = 0; k < n_in; ++k) {
                A.g_XG[prow + k] = ggb[A.in_idx[k]];
                A.g_XC[prow + k] = gcb[A.in_idx[k]];
            }
            if (d == 1) {  // flat, vectorisable
                const T* __restrict Av = A.A;
                const T* __restrict Gv = A.G;
                const T* __restrict Vv = A.V;
                for (int m = 0; m < M; ++m) {
                    gnb[m] += ggb[m] * Av[m];
                    gub[m] = ggb[m] * Gv[m] + gcb[m] * Vv[m];
                    aA[m] += (double)(sb[m] * ggb[m]);
                    aG[m] += (double)(ub[m] * ggb[m]);
                    aV[m] += (double)(ub[m] * gcb[m]);
                }
                continue;
            }
            for (int n = 0; n < N; ++n) {
                const i64 nb2 = (i64)n * d * d;
                const int o = n * d;
                for (int l = 0; l < d; ++l) {
                    T gs = 0, gu = 0;
                    const T sv = sb[o + l], uv = ub[o + l];
                    for (int k = 0; k < d; ++k) {
                        const i64 q = nb2 + l * d + k;
                        gs += ggb[o + k] * A.A[q];
                        gu += ggb[o + k] * A.G[q] + gcb[o + k] * A.V[q];
                        aA[q] += (double)(sv * ggb[o + k]);
                        aG[q] += (double)(uv * ggb[o + k]);
                        aV[q] += (double)(uv * gcb[o + k]);
                    }
                    gnb[o + l] += gs;
                    gub[o + l] = gu;
                }
            }
        }
        aggregate_grad(A, gn, gut, A.S_in + off, aw, nb, M);
    });
}

template <typename T>
static void gated_forward(const GArgs<T>& A, int nthreads) {
    for_row_chunks(split_rows(A.B, nthreads), [&A](int b0, int b1) { gated_forward_rows(A, b0, b1); });
}

// out: A, G, V grads (N*d*d each), beta (M), cb (M), w (E, sparse)
template <typename T>
static void gated_backward(const GArgs<T>& A, int nthreads, T* out) {
    const i64 M = (i64)A.N * A.d;
    const i64 L = 3 * (i64)A.N * A.d * A.d + 2 * M + (A.sparse ? A.E : 0);
    auto acc = sum_over_chunks(split_rows(A.B, nthreads), L, [&A](int b0, int b1, double* a) { gated_backward_rows(A, b0, b1, a); });
    for (i64 i = 0; i < L; ++i) out[i] = (T)acc[i];
}

#define TND_GATED_EXPORT(T, SUF)                                                  \
    extern "C" void tnd_gated_forward_##SUF(const gated_raw* R) {                \
        GArgs<T> A{};                                                             \
        gated_fill(A, *R);                                                        \
        gated_forward<T>(A, A.nthreads);                                          \
    }                                                                             \
    extern "C" void tnd_gated_backward_##SUF(const gated_raw* R) {               \
        GArgs<T> A{};                                                             \
        gated_fill(A, *R);                                                        \
        gated_backward<T>(A, A.nthreads, A.g_params);                             \
    }

// Each precision may be compiled in its own translation unit (in parallel; see cbuild.py).
#ifndef TND_SKIP_F32
TND_GATED_EXPORT(float, f32)
#endif
#ifndef TND_SKIP_F64
TND_GATED_EXPORT(double, f64)
#endif
