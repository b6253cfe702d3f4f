// One time step of the leaky/linear TND with input projection and readout, for control loops
// (tnd.fast.step.Stepper, TND.step). Included by tnd_loop.cpp (shares matmul_rows/csr_gather).
// Per batch row b, flat units m (M = N * d), all in one call so that a step costs one ctypes call:
//     pre = bias + (Win x_b + bin at the input units) + s_b @ W      (W dense, or CSR over targets)
//     c   = act(pre),   a = exp(-r * dt) (or the precomputed exp(-r) when dt is absent)
//     s'  = c + (s_b - c) * a,   y_b = Wout s'[out units] + bout   (or s'[out units], identity)
// With rounds = K > 1 (propagation_steps) the update is done K times, each over dt / K (decay then
// holds exp(-r / K)) from the state the previous round left, the projected input held; y reads
// the state after the last round. K = 1 is the one update above, unchanged.
// Inputs are checked on the way (x, s finite; dt finite and > 0) with bit tests, which -ffast-math
// cannot fold away, and s against the state bound s_bound (> 0; 0: none); a non-zero return
// (1: x, 2: s not finite, 4: dt, 8: s outside the bound) means nothing valid was written.
#include <cstdint>
#include <cstring>
#include <vector>

// The step's C ABI (tnd.fast.step.StepArgs mirrors it): the snapshot (set once per refresh) and
// the call's own fields (B, x, s, dt, dt_stride, dt_scalar, has_dt, s_out, y), all in one struct.
#define TND_STEP_FIELDS(X)                                                                                \
    X(i, M) X(i, C) X(i, n_in) X(i, n_out) X(i, O) X(i, sparse) X(i, act) X(i, readout) X(l, in_idx)     \
    X(l, out_idx) X(f, Win) X(f, bin) X(f, W) X(l, rowptr) X(n, src) X(f, w) X(f, r) X(f, decay)         \
    X(f, bias) X(f, Wout) X(f, bout) X(i, rounds) X(d, s_bound) X(i, B) X(f, x) X(f, s) X(f, dt) X(i, dt_stride) X(d, dt_scalar)    \
    X(i, has_dt) X(f, s_out) X(f, y)
TND_DEFINE_ABI(step, TND_STEP_FIELDS)

static inline bool nonfinite(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    return (u & 0x7f800000u) == 0x7f800000u;
}
static inline bool nonfinite(double v) {
    uint64_t u;
    std::memcpy(&u, &v, 8);
    return (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
}

template <typename T>
static bool any_nonfinite(const T* v, i64 n) {
    for (i64 i = 0; i < n; ++i)
        if (nonfinite(v[i])) return true;
    return false;
}

// The step kernels' input checks: x, s finite; s within s_bound (> 0; 0: none); dt finite and
// > 0 (per row, or the scalar). Returns the flags (0: all valid).
template <typename T>
static int step_input_flags(const T* x, i64 nx, const T* s, i64 ns, double s_bound, int has_dt, const T* dt, int B,
                            int dt_stride, double dt_scalar) {
    int flags = 0;
    if (any_nonfinite(x, nx)) flags |= 1;
    if (s && any_nonfinite(s, ns)) flags |= 2;
    if (s && !(flags & 2) && s_bound > 0.0) {
        const T lim = (T)s_bound;
        for (i64 i = 0; i < ns; ++i)
            if (s[i] > lim || s[i] < -lim) { flags |= 8; break; }
    }
    if (has_dt) {
        if (dt) {
            for (int b = 0; b < B; ++b) {
                const T v = dt[(i64)b * dt_stride];
                if (nonfinite(v) || !(v > T(0))) flags |= 4;
            }
        } else if (nonfinite(dt_scalar) || !(dt_scalar > 0.0)) {
            flags |= 4;
        }
    }
    return flags;
}

// y_b = Wout s_b[out units] + bout (readout = 1) or s_b[out units] (identity).
template <typename T>
static void step_readout(T* y, const T* s_out, const T* Wout, const T* bout, const i64* out_idx, int B, int M, int O,
                         int n_out, int readout) {
    for (int b = 0; b < B; ++b) {
        const T* o = s_out + (i64)b * M;
        T* yb = y + (i64)b * O;
        if (readout) {
            for (int q = 0; q < O; ++q) {
                const T* wq = Wout + (i64)q * n_out;
                T acc = bout[q];
                for (int k = 0; k < n_out; ++k) acc += wq[k] * o[out_idx[k]];
                yb[q] = acc;
            }
        } else {
            for (int k = 0; k < n_out; ++k) yb[k] = o[out_idx[k]];
        }
    }
}

template <typename T>
static int tnd_step(const step_raw& c) {
    const int M = (int)c.M, C = (int)c.C, n_in = (int)c.n_in, n_out = (int)c.n_out, O = (int)c.O;
    const T *Win = (const T*)c.Win, *bin = (const T*)c.bin, *W = (const T*)c.W, *w = (const T*)c.w;
    const T *r = (const T*)c.r, *decay = (const T*)c.decay, *bias = (const T*)c.bias;
    const T *Wout = (const T*)c.Wout, *bout = (const T*)c.bout;
    const i64 *in_idx = (const i64*)c.in_idx, *out_idx = (const i64*)c.out_idx;
    const int B = (int)c.B, dt_stride = (int)c.dt_stride, has_dt = (int)c.has_dt;
    const T *x = (const T*)c.x, *s = (const T*)c.s, *dt = (const T*)c.dt;
    const double dt_scalar = c.dt_scalar;
    T *s_out = (T*)c.s_out, *y = (T*)c.y;
    const int flags = step_input_flags<T>(x, (i64)B * C, s, (i64)B * M, c.s_bound, has_dt, dt, B, dt_stride, dt_scalar);
    if (flags) return flags;
    const int rounds = c.rounds > 1 ? (int)c.rounds : 1;
    const i64 BM = (i64)B * M;
    // K > 1: the drive (bias + input projection) is kept in D and the rounds ping-pong between
    // two scratch buffers, the last writing s_out; K = 1 builds the drive in s_out itself.
    std::vector<T> scratch(rounds > 1 ? 3 * BM : 0);
    T* D = rounds > 1 ? scratch.data() : s_out;
    for (int b = 0; b < B; ++b) {  // pre = bias + input projection (at the input units)
        T* o = D + (i64)b * M;
        std::memcpy(o, bias, sizeof(T) * M);
        const T* xb = x + (i64)b * C;
        for (int k = 0; k < n_in; ++k) {
            const T* wk = Win + (i64)k * C;
            T acc = bin[k];
            for (int q = 0; q < C; ++q) acc += wk[q] * xb[q];
            o[in_idx[k]] += acc;
        }
    }
    const T* cur = s;  // the state before this round (null: the zero state)
    for (int k = 0; k < rounds; ++k) {
        T* out = k == rounds - 1 ? s_out : scratch.data() + (1 + k % 2) * BM;
        if (out != D) std::memcpy(out, D, sizeof(T) * BM);
        if (cur) {  // + what each unit receives along its in-edges (zero state: nothing)
            if (c.sparse)
                csr_gather(out, cur, (const i64*)c.rowptr, (const i32*)c.src, w, B, M);
            else
                matmul_rows(out, cur, W, B, M);
        }
        for (int b = 0; b < B; ++b) {
            T* __restrict o = out + (i64)b * M;
            if (c.act == 0)
                for (int m = 0; m < M; ++m) o[m] = std::tanh(o[m]);
            const T* __restrict sb = cur ? cur + (i64)b * M : nullptr;
            if (has_dt) {
                const T h0 = dt ? dt[(i64)b * dt_stride] : (T)dt_scalar;
                const T h = rounds > 1 ? h0 / (T)rounds : h0;
                if (sb)
                    for (int m = 0; m < M; ++m) o[m] = o[m] + (sb[m] - o[m]) * std::exp(-r[m] * h);
                else
                    for (int m = 0; m < M; ++m) o[m] = o[m] + (T(0) - o[m]) * std::exp(-r[m] * h);
            } else {
                if (sb)
                    for (int m = 0; m < M; ++m) o[m] = o[m] + (sb[m] - o[m]) * decay[m];
                else
                    for (int m = 0; m < M; ++m) o[m] = o[m] + (T(0) - o[m]) * decay[m];
            }
        }
        cur = out;
    }
    step_readout<T>(y, s_out, Wout, bout, out_idx, B, M, O, n_out, (int)c.readout);
    return 0;
}

#define TND_STEP_EXPORT(T, SUF) \
    extern "C" int tnd_step_##SUF(const step_raw* R) { return tnd_step<T>(*R); }

#ifndef TND_SKIP_F32
TND_STEP_EXPORT(float, f32)
#endif
#ifndef TND_SKIP_F64
TND_STEP_EXPORT(double, f64)
#endif
