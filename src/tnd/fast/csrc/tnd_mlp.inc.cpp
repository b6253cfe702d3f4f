// Per-neuron MLP dynamics (tnd.dynamics.mlp), included by tnd_loop.cpp. Per neuron n with
// W1 (3d, H) (rows: s, u, x), b1 (H), W2 (H, d), b2 (d):
//     hid = tanh([s_n, u_n, x_n] W1 + b1)      x_n: the input projection P at input neurons, else 0
//     c   = tanh(hid W2 + b2),   a = exp(-r dt),   s' = c + (s - c) * a
// Forward saves S, U, C; the backward pass recomputes hid (saving it would cost H times the
// states' memory). The input's share of the first layer is computed here too (no (T, B, n_in, H)
// tensor outside), and so is its weight gradient.
//
// d == 1 (the common case) runs on "transposed" copies of the weights, (H, N) instead of (N, H),
// so that every loop runs over neurons and vectorises (no per-neuron dot products of length H).

// tanh of the hidden layer, its hottest spot (H per neuron and step, forward and backward). float:
// a rational minimax approximation (Eigen's, max abs error 3e-7, clamped beyond |x| = 7.9 where
// tanh rounds to 1), about twice as fast as libmvec's vector tanhf; double: std::tanh.
template <typename T>
static inline T hidden_tanh(T x) {
    return std::tanh(x);
}
template <>
inline float hidden_tanh<float>(float x) {
    const float c = 7.90531110763549805f;
    x = x > c ? c : (x < -c ? -c : x);
    const float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return x * p / q;
}

template <typename T>
struct MArgs {
    int T_, B, N, d, H, n_in, n_out, seq_out, sparse, nthreads;
    const T *P, *s0, *W, *WT, *w, *W1, *B1, *W2, *B2, *r, *dt, *g_outs, *g_last, *S_in, *U_in, *C_in;
    const i64 *in_pos, *out_idx, *rowptr;
    const i32* src;
    i64 E;
    T *outs, *s_last, *S, *U, *C, *g_s0, *g_P, *Gu, *g_params;
    // d == 1: transposed weights (H, N), filled once per call
    const T *W1sT, *W1uT, *W1xT, *B1T, *W2T;
};

// The MLP family's C ABI (tnd.fast.mlp.MLPArgs mirrors it); forward and backward share it.
#define TND_MLP_FIELDS(X)                                                                                 \
    X(i, T_) X(i, B) X(i, N) X(i, d) X(i, H) X(i, n_in) X(i, n_out) X(i, seq_out) X(i, sparse) X(i, E)    \
    X(i, nthreads) X(f, P) X(f, s0) X(f, W) X(f, WT) X(f, w) X(f, W1) X(f, B1) X(f, W2) X(f, B2) X(f, r)  \
    X(f, dt) X(f, g_outs) X(f, g_last) X(f, S_in) X(f, U_in) X(f, C_in) X(l, in_pos) X(l, out_idx)       \
    X(l, rowptr) X(n, src) X(f, outs) X(f, s_last) X(f, S) X(f, U) X(f, C) X(f, g_s0) X(f, g_P) X(f, Gu) \
    X(f, g_params)
TND_DEFINE_ABI(mlp, TND_MLP_FIELDS)

// x_n for one batch row: P's value at input neurons, 0 elsewhere (d == 1), or the slot (any d).
template <typename T>
static void mlp_x_row(const MArgs<T>& A, const T* prow, T* xv) {
    for (int n = 0; n < A.N; ++n) {
        const i64 slot = A.in_pos[n];
        xv[n] = slot >= 0 ? prow[slot] : T(0);
    }
}

// ---------------------------------------------------------------------------------- d == 1
template <typename T>
static void mlp1_hidden(const MArgs<T>& A, const T* __restrict sb, const T* __restrict ub, const T* __restrict xv,
                        T* __restrict hid) {
    const int N = A.N, H = A.H;
    for (int j = 0; j < H; ++j) {
        const i64 o = (i64)j * N;
        const T *__restrict ws = A.W1sT + o, *__restrict wu = A.W1uT + o, *__restrict wx = A.W1xT + o,
                *__restrict b1 = A.B1T + o;
        T* __restrict hj = hid + o;
        for (int n = 0; n < N; ++n) hj[n] = b1[n] + sb[n] * ws[n] + ub[n] * wu[n] + xv[n] * wx[n];
    }
    const i64 NH = (i64)N * H;
    for (i64 i = 0; i < NH; ++i) hid[i] = hidden_tanh(hid[i]);
}

// c (pre-activation of the target) = b2 + sum_j hid[j, n] W2[j, n]
template <typename T>
static void mlp1_out(const MArgs<T>& A, const T* __restrict hid, T* __restrict cb) {
    const int N = A.N, H = A.H;
    std::memcpy(cb, A.B2, sizeof(T) * N);
    for (int j = 0; j < H; ++j) {
        const T *__restrict hj = hid + (i64)j * N, *__restrict w2 = A.W2T + (i64)j * N;
        for (int n = 0; n < N; ++n) cb[n] += hj[n] * w2[n];
    }
}

// ------------------------------------------------------------------------------------ any d
template <typename T>
static void mlpd_hidden(const MArgs<T>& A, const T* sb, const T* ub, const T* prow, T* hid) {
    const int N = A.N, d = A.d, H = A.H;
    std::memcpy(hid, A.B1, sizeof(T) * (i64)N * H);
    for (int n = 0; n < N; ++n) {
        T* hn = hid + (i64)n * H;
        const T* W1 = A.W1 + (i64)n * 3 * d * H;
        for (int l = 0; l < d; ++l) {
            const T sv = sb[n * d + l], uv = ub[n * d + l];
            const T* w1s = W1 + (i64)l * H;
            const T* w1u = W1 + (i64)(d + l) * H;
            for (int j = 0; j < H; ++j) hn[j] += sv * w1s[j] + uv * w1u[j];
        }
        const i64 slot = A.in_pos[n];
        if (slot >= 0)
            for (int l = 0; l < d; ++l) {
                const T xv = prow[slot * d + l];
                const T* w1x = W1 + (i64)(2 * d + l) * H;
                for (int j = 0; j < H; ++j) hn[j] += xv * w1x[j];
            }
    }
    const i64 NH = (i64)N * H;
    for (i64 i = 0; i < NH; ++i) hid[i] = hidden_tanh(hid[i]);
}

template <typename T>
static void mlp_forward_rows(const MArgs<T>& A, int b0, int b1) {
    const int B = A.B, N = A.N, d = A.d, H = A.H, M = N * d, nb = b1 - b0, n_in = A.n_in;
    const i64 nbM = (i64)nb * M;
    std::vector<T> u_buf(nbM), hid((i64)N * H), c_buf(M), xv(N);
    forward_time_loop<T>(A, b0, b1, M, [&](int t, i64 off, const T* cur, T* nxt) {
        T* u = A.U ? A.U + off : u_buf.data();
        std::memset(u, 0, sizeof(T) * nbM);
        aggregate(A, u, cur, nb, M);
        for (int bb = 0; bb < nb; ++bb) {
            const T h = A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1);
            const T* sb = cur + (i64)bb * M;
            const T* ub = u + (i64)bb * M;
            const T* prow = A.P + ((i64)t * B + b0 + bb) * n_in * d;
            T* cb = A.C ? A.C + off + (i64)bb * M : c_buf.data();
            T* nbp = nxt + (i64)bb * M;
            if (d == 1) {
                mlp_x_row(A, prow, xv.data());
                mlp1_hidden(A, sb, ub, xv.data(), hid.data());
                mlp1_out(A, hid.data(), cb);
            } else {
                mlpd_hidden(A, sb, ub, prow, hid.data());
                std::memcpy(cb, A.B2, sizeof(T) * M);
                for (int n = 0; n < N; ++n) {
                    const T* W2 = A.W2 + (i64)n * H * d;
                    const T* hn = hid.data() + (i64)n * H;
                    for (int k = 0; k < d; ++k) {
                        T pre = 0;
                        for (int j = 0; j < H; ++j) pre += hn[j] * W2[j * d + k];
                        cb[n * d + k] += pre;
                    }
                }
            }
            const T* __restrict r = A.r;
            for (int m = 0; m < M; ++m) {
                const T c = std::tanh(cb[m]);
                const T a = std::exp(-r[m] * h);
                cb[m] = c;
                nbp[m] = c + (sb[m] - c) * a;
            }
        }
    });
}

// One backward row of the d == 1 MLP: from gp2 (gradient of the output layer's pre-activation)
// to the first layer; accumulates the (transposed) weight gradients of this step in f*.
template <typename T>
static void mlp1_backward_row(const MArgs<T>& A, const T* __restrict sb, const T* __restrict ub,
                              const T* __restrict xv, const T* __restrict hid, const T* __restrict gp2,
                              T* __restrict gs, T* __restrict gu, T* __restrict gx, T* __restrict f) {
    const int N = A.N, H = A.H;
    const i64 NH = (i64)N * H;
    T *__restrict fWs = f, *__restrict fWu = f + NH, *__restrict fWx = f + 2 * NH, *__restrict fB1 = f + 3 * NH,
      *__restrict fW2 = f + 4 * NH;
    for (int n = 0; n < N; ++n) gs[n] = gu[n] = gx[n] = T(0);
    for (int j = 0; j < H; ++j) {
        const i64 o = (i64)j * N;
        const T *__restrict hj = hid + o, *__restrict w2 = A.W2T + o, *__restrict ws = A.W1sT + o,
                *__restrict wu = A.W1uT + o, *__restrict wx = A.W1xT + o;
        for (int n = 0; n < N; ++n) {
            const T hv = hj[n];
            const T gp1 = gp2[n] * w2[n] * (T(1) - hv * hv);
            fW2[o + n] += hv * gp2[n];
            fB1[o + n] += gp1;
            fWs[o + n] += sb[n] * gp1;
            fWu[o + n] += ub[n] * gp1;
            fWx[o + n] += xv[n] * gp1;
            gs[n] += gp1 * ws[n];
            gu[n] += gp1 * wu[n];
            gx[n] += gp1 * wx[n];
        }
    }
}

// acc layout (doubles), d == 1: W1s^T | W1u^T | W1x^T | B1^T | W2^T (H*N each) | B2 (M) | r (M) | w (E)
//                        any d: W1 (N*3d*H) | W2 (N*H*d) | B1 (N*H) | B2 (M) | r (M) | w (E)
template <typename T>
static void mlp_backward_rows(const MArgs<T>& A, int b0, int b1, double* acc) {
    const int B = A.B, N = A.N, d = A.d, H = A.H, M = N * d, nb = b1 - b0, n_in = A.n_in;
    const i64 nbM = (i64)nb * M;
    const i64 LW1 = (i64)N * 3 * d * H, LW2 = (i64)N * H * d, LB1 = (i64)N * H, LF = LW1 + LW2 + LB1;
    double* aB2 = acc + LF;
    double* ar = aB2 + M;
    double* aw = ar + M;
    std::vector<T> gu_buf(A.sparse ? nbM : 0), hid((i64)N * H), gp1(H), gp2(M), xv(N), gx(N), gs(N);
    // per-step partial sums (over this worker's rows) in T, flushed into the double sums once per step
    std::vector<T> f(LF);
    backward_time_loop<T>(A, b0, b1, M, [&](int t, i64 off, const T* g, T* gn) {
        T* gut = A.sparse ? gu_buf.data() : A.Gu + off;
        std::fill(f.begin(), f.end(), T(0));
        for (int bb = 0; bb < nb; ++bb) {
            const i64 ro = (i64)bb * M;
            const T* sb = A.S_in + off + ro;
            const T* ub = A.U_in + off + ro;
            const T* cb = A.C_in + off + ro;
            const T* gb = g + ro;
            T* gnb = gn + ro;
            T* gub = gut + ro;
            const T h = A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1);
            const i64 prow_off = ((i64)t * B + b0 + bb) * n_in * d;
            const T* prow = A.P + prow_off;
            T* gprow = A.g_P + prow_off;
            for (int m = 0; m < M; ++m) {  // flat: the output layer's tanh and the decay
                const T a = std::exp(-A.r[m] * h);
                const T gv = gb[m], c = cb[m];
                gp2[m] = gv * (T(1) - a) * (T(1) - c * c);
                ar[m] -= (double)(gv * (sb[m] - c) * a * h);
                aB2[m] += (double)gp2[m];
                gnb[m] = gv * a;
            }
            if (d == 1) {
                mlp_x_row(A, prow, xv.data());
                mlp1_hidden(A, sb, ub, xv.data(), hid.data());
                mlp1_backward_row(A, sb, ub, xv.data(), hid.data(), gp2.data(), gs.data(), gub, gx.data(), f.data());
                for (int n = 0; n < N; ++n) gnb[n] += gs[n];
                for (int n = 0; n < N; ++n) {
                    const i64 slot = A.in_pos[n];
                    if (slot >= 0) gprow[slot] = gx[n];
                }
                continue;
            }
            mlpd_hidden(A, sb, ub, prow, hid.data());
            T* fW1 = f.data();
            T* fW2 = fW1 + LW1;
            T* fB1 = fW2 + LW2;
            for (int n = 0; n < N; ++n) {
                const i64 slot = A.in_pos[n];
                const int o = n * d;
                const T* hn = hid.data() + (i64)n * H;
                const T* W2 = A.W2 + (i64)n * H * d;
                T* aW2n = fW2 + (i64)n * H * d;
                T* aB1n = fB1 + (i64)n * H;
                for (int j = 0; j < H; ++j) {
                    T gh = 0;
                    for (int k = 0; k < d; ++k) {
                        gh += gp2[o + k] * W2[j * d + k];
                        aW2n[j * d + k] += hn[j] * gp2[o + k];
                    }
                    gp1[j] = gh * (T(1) - hn[j] * hn[j]);
                    aB1n[j] += gp1[j];
                }
                const T* W1 = A.W1 + (i64)n * 3 * d * H;
                T* aW1n = fW1 + (i64)n * 3 * d * H;
                for (int l = 0; l < d; ++l) {
                    const T* w1s = W1 + (i64)l * H;
                    const T* w1u = W1 + (i64)(d + l) * H;
                    T* as = aW1n + (i64)l * H;
                    T* au = aW1n + (i64)(d + l) * H;
                    const T sv = sb[o + l], uv = ub[o + l];
                    T gsv = 0, guv = 0;
                    for (int j = 0; j < H; ++j) {
                        gsv += gp1[j] * w1s[j];
                        guv += gp1[j] * w1u[j];
                        as[j] += sv * gp1[j];
                        au[j] += uv * gp1[j];
                    }
                    gnb[o + l] += gsv;
                    gub[o + l] = guv;
                }
                if (slot >= 0)
                    for (int l = 0; l < d; ++l) {
                        const T* w1x = W1 + (i64)(2 * d + l) * H;
                        T* ax = aW1n + (i64)(2 * d + l) * H;
                        const T pv = prow[slot * d + l];
                        T gxv = 0;
                        for (int j = 0; j < H; ++j) {
                            gxv += gp1[j] * w1x[j];
                            ax[j] += pv * gp1[j];
                        }
                        gprow[slot * d + l] = gxv;
                    }
            }
        }
        for (i64 i = 0; i < LF; ++i) acc[i] += (double)f[i];
        aggregate_grad(A, gn, gut, A.S_in + off, aw, nb, M);
    });
}

// d == 1: the transposed copies of W1 (rows s, u, x), B1 and W2, (H, N) each, in one buffer.
template <typename T>
static std::vector<T> mlp1_transpose(MArgs<T>& A) {
    const int N = A.N, H = A.H;
    const i64 NH = (i64)N * H;
    std::vector<T> buf(A.d == 1 ? 5 * NH : 0);
    if (A.d != 1) return buf;
    for (int n = 0; n < N; ++n)
        for (int j = 0; j < H; ++j) {
            const i64 q = (i64)j * N + n;
            for (int k = 0; k < 3; ++k) buf[k * NH + q] = A.W1[(i64)n * 3 * H + (i64)k * H + j];
            buf[3 * NH + q] = A.B1[(i64)n * H + j];
            buf[4 * NH + q] = A.W2[(i64)n * H + j];
        }
    A.W1sT = buf.data();
    A.W1uT = buf.data() + NH;
    A.W1xT = buf.data() + 2 * NH;
    A.B1T = buf.data() + 3 * NH;
    A.W2T = buf.data() + 4 * NH;
    return buf;
}

template <typename T>
static void mlp_forward(MArgs<T>& A, int nthreads) {
    auto tr = mlp1_transpose(A);
    for_row_chunks(split_rows(A.B, nthreads), [&A](int b0, int b1) { mlp_forward_rows(A, b0, b1); });
}

// out: W1 grad (N*3d*H), W2 (N*H*d), B1 (N*H), B2 (M), r (M), w (E, sparse)
template <typename T>
static void mlp_backward(MArgs<T>& A, int nthreads, T* out) {
    auto tr = mlp1_transpose(A);
    const int N = A.N, d = A.d, H = A.H;
    const i64 M = (i64)N * d, NH = (i64)N * H;
    const i64 LF = (i64)N * 3 * d * H + (i64)N * H * d + NH;
    const i64 L = LF + 2 * M + (A.sparse ? A.E : 0);
    auto acc = sum_over_chunks(split_rows(A.B, nthreads), L, [&A](int b0, int b1, double* a) { mlp_backward_rows(A, b0, b1, a); });
    if (d == 1) {  // back from the transposed layout: W1 (N, 3, H) | W2 (N, H) | B1 (N, H)
        for (int n = 0; n < N; ++n)
            for (int j = 0; j < H; ++j) {
                const i64 q = (i64)j * N + n;
                for (int k = 0; k < 3; ++k) out[(i64)n * 3 * H + (i64)k * H + j] = (T)acc[k * NH + q];
                out[3 * NH + (i64)n * H + j] = (T)acc[4 * NH + q];  // W2
                out[4 * NH + (i64)n * H + j] = (T)acc[3 * NH + q];  // B1
            }
        for (i64 i = LF; i < L; ++i) out[i] = (T)acc[i];
    } else {
        for (i64 i = 0; i < L; ++i) out[i] = (T)acc[i];
    }
}

#define TND_MLP_EXPORT(T, SUF)                                                    \
    extern "C" void tnd_mlp_forward_##SUF(const mlp_raw* R) {                    \
        MArgs<T> A{};                                                             \
        mlp_fill(A, *R);                                                          \
        mlp_forward<T>(A, A.nthreads);                                            \
    }                                                                             \
    extern "C" void tnd_mlp_backward_##SUF(const mlp_raw* R) {                   \
        MArgs<T> A{};                                                             \
        mlp_fill(A, *R);                                                          \
        mlp_backward<T>(A, A.nthreads, A.g_params);                               \
    }

#ifndef TND_SKIP_F32
TND_MLP_EXPORT(float, f32)
#endif
#ifndef TND_SKIP_F64
TND_MLP_EXPORT(double, f64)
#endif
