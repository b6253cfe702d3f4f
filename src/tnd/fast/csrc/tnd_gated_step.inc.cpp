// One time step of the gated/linear TND with input projection and readout, for control loops
// (tnd.fast.step.Stepper for dynamics="gated", TND.step). Included by tnd_loop.cpp after
// tnd_step.inc.cpp (shares matmul_rows, csr_gather, step_input_flags and step_readout).
// Per batch row b, flat units m = n * d + k (M = N * d), all in one call:
//     xg = WinG x_b + binG,  xc = WinC x_b + binC      (at the input units, zero elsewhere: the
//                                                        input projection already multiplied by
//                                                        each input neuron's gate_x / cand_x)
//     u  = s_b @ W                                       (W dense, or CSR over targets)
//     gate[n, k] = beta + xg + sum_l s[n, l] A[n, l, k] + u[n, l] G[n, l, k]
//     c[n, k]    = tanh(cb + xc + sum_l u[n, l] V[n, l, k])
//     rate = rmin + rspan * sigmoid(gate),   s' = c + (s - c) * exp(-rate * dt)
//     y_b  = Wout s'[out units] + bout                   (or s'[out units], identity)
// which is tnd.dynamics.gated with the exponential-Euler update. With rounds = K > 1
// (propagation_steps) the update runs K times over dt / K from the state the previous round
// left, xg and xc held; y reads the state after the last round. The same input checks and
// return flags as tnd_step (1: x, 2: s not finite, 4: dt, 8: s outside the bound).

#define TND_GSTEP_FIELDS(X)                                                                               \
    X(i, N) X(i, d) X(i, C) X(i, n_in) X(i, n_out) X(i, O) X(i, sparse) X(i, readout) X(l, in_idx)       \
    X(l, out_idx) X(f, WinG) X(f, binG) X(f, WinC) X(f, binC) X(f, W) X(l, rowptr) X(n, src) X(f, w)     \
    X(f, A) X(f, G) X(f, V) X(f, beta) X(f, cb) X(d, rmin) X(d, rspan) X(f, Wout) X(f, bout) X(i, rounds) \
    X(d, s_bound) X(i, B) X(f, x) X(f, s) X(f, dt) X(i, dt_stride) X(d, dt_scalar) X(i, has_dt)           \
    X(f, s_out) X(f, y)
TND_DEFINE_ABI(gstep, TND_GSTEP_FIELDS)

template <typename T>
static int tnd_gated_step(const gstep_raw& c) {
    const int N = (int)c.N, d = (int)c.d, M = N * d, C = (int)c.C, n_in = (int)c.n_in;
    const int B = (int)c.B, dt_stride = (int)c.dt_stride, has_dt = (int)c.has_dt;
    const T *WinG = (const T*)c.WinG, *binG = (const T*)c.binG, *WinC = (const T*)c.WinC, *binC = (const T*)c.binC;
    const T *W = (const T*)c.W, *w = (const T*)c.w;
    const T *A = (const T*)c.A, *G = (const T*)c.G, *V = (const T*)c.V, *beta = (const T*)c.beta, *cb = (const T*)c.cb;
    const i64* in_idx = (const i64*)c.in_idx;
    const T *x = (const T*)c.x, *s = (const T*)c.s, *dt = (const T*)c.dt;
    T* s_out = (T*)c.s_out;
    const int flags = step_input_flags<T>(x, (i64)B * C, s, (i64)B * M, c.s_bound, has_dt, dt, B, dt_stride, c.dt_scalar);
    if (flags) return flags;
    const int rounds = c.rounds > 1 ? (int)c.rounds : 1;
    const T rmin = (T)c.rmin, rspan = (T)c.rspan;
    const i64 BM = (i64)B * M;
    // XG, XC: the input's shares; U: what each unit hears; S1, S2: the states between rounds
    std::vector<T> buf((rounds > 1 ? 5 : 3) * BM, T(0));
    T *XG = buf.data(), *XC = XG + BM, *U = XC + BM;
    T* S12[2] = {rounds > 1 ? U + BM : nullptr, rounds > 1 ? U + 2 * BM : nullptr};
    for (int b = 0; b < B; ++b) {
        const T* xb = x + (i64)b * C;
        for (int k = 0; k < n_in; ++k) {
            const T *wg = WinG + (i64)k * C, *wc = WinC + (i64)k * C;
            T ag = binG[k], ac = binC[k];
            for (int q = 0; q < C; ++q) {
                ag += wg[q] * xb[q];
                ac += wc[q] * xb[q];
            }
            XG[(i64)b * M + in_idx[k]] = ag;
            XC[(i64)b * M + in_idx[k]] = ac;
        }
    }
    const T* cur = s;  // the state before this round (null: the zero state)
    for (int r = 0; r < rounds; ++r) {
        T* out = r == rounds - 1 ? s_out : S12[r % 2];
        std::fill(U, U + BM, T(0));
        if (cur) {
            if (c.sparse)
                csr_gather(U, cur, (const i64*)c.rowptr, (const i32*)c.src, w, B, M);
            else
                matmul_rows(U, cur, W, B, M);
        }
        for (int b = 0; b < B; ++b) {
            const i64 o = (i64)b * M;
            const T h0 = has_dt ? (dt ? dt[(i64)b * dt_stride] : (T)c.dt_scalar) : T(1);
            const T h = rounds > 1 ? h0 / (T)rounds : h0;
            const T* sb = cur ? cur + o : nullptr;
            const T* ub = U + o;
            for (int n = 0; n < N; ++n) {
                const i64 nd = (i64)n * d;
                for (int k = 0; k < d; ++k) {
                    const i64 m = nd + k;
                    T g = beta[m] + XG[o + m], cc = cb[m] + XC[o + m];
                    for (int l = 0; l < d; ++l) {
                        const i64 p = (nd + l) * d + k;  // [n, l, k] of an (N, d, d) matrix
                        const T uv = ub[nd + l];
                        g += uv * G[p];
                        cc += uv * V[p];
                        if (sb) g += sb[nd + l] * A[p];
                    }
                    const T rate = rmin + rspan / (T(1) + std::exp(-g));
                    const T cand = std::tanh(cc);
                    const T s0 = sb ? sb[m] : T(0);
                    out[o + m] = cand + (s0 - cand) * std::exp(-rate * h);
                }
            }
        }
        cur = out;
    }
    step_readout<T>((T*)c.y, s_out, (const T*)c.Wout, (const T*)c.bout, (const i64*)c.out_idx, B, M, (int)c.O,
                    (int)c.n_out, (int)c.readout);
    return 0;
}

#define TND_GSTEP_EXPORT(T, SUF) \
    extern "C" int tnd_gated_step_##SUF(const gstep_raw* R) { return tnd_gated_step<T>(*R); }

#ifndef TND_SKIP_F32
TND_GSTEP_EXPORT(float, f32)
#endif
#ifndef TND_SKIP_F64
TND_GSTEP_EXPORT(double, f64)
#endif
