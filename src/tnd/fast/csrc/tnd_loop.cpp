// Fused time loops of the TND discrete mode (exponential Euler, 1 sub-step): the leaky update
// with the linear interaction is spelled out below; the gated, MLP and attention loops and the
// single-step kernels (tnd_{gated,mlp,attention,step,gated_step}.inc.cpp) are #included at the end, in this
// translation unit (never compiled on their own), and share its interaction code and its
// batch-parallel structure.
//
// Neurons are "flat": M = N * d scalar units (a state of size d is d units with the same
// edges), states are row-major (B, M). One step, for every unit m of every sequence b:
//     pre = u[b, m] + bias[m] + x[b, m]        u = s @ W  (dense, W[j, i] for edge j -> i)
//                                              or CSR over targets (sparse)
//     c   = act(pre)                           act = tanh or identity
//     a   = exp(-r[m] * dt[t, b])              r = 1 / tau
//     s'  = c + (s - c) * a
// The backward pass is the analytic backpropagation through time of that update.
// Plain C++ on raw pointers; compiled at first use by tnd.fast.cbuild and loaded with ctypes.
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

typedef int64_t i64;
typedef int32_t i32;

// ---------------------------------------------------------------------------------- C ABI
// Every entry point takes ONE struct of 64-bit fields (so that a field can be neither reordered
// nor mistyped without notice): a family lists its fields once, FIELDS(X) = X(kind, name)...,
// with kind i (integer), d (double), f (pointer to T), l (pointer to int64), n (pointer to int32).
// TND_DEFINE_ABI makes from that one list the raw struct <family>_raw, <family>_fill (copies the
// fields into the family's typed Args struct, whose members have the same names) and, once per
// library, tnd_layout_<family>() ("kind:name " per field), which tnd.fast.abi compares with its
// ctypes.Structure at load, together with tnd_abi_version().
#define TND_ABI_VERSION 5
#define TND_RAW_i(n) i64 n;
#define TND_RAW_d(n) double n;
#define TND_RAW_f(n) void* n;
#define TND_RAW_l(n) void* n;
#define TND_RAW_n(n) void* n;
#define TND_RAW_FIELD(k, n) TND_RAW_##k(n)
#define TND_NAME_FIELD(k, n) #k ":" #n " "
#define TND_FILL_FIELD(k, n) A.n = (decltype(A.n))R.n;
#ifndef TND_SKIP_F32
#define TND_LAYOUT(family, FIELDS) \
    extern "C" const char* tnd_layout_##family(void) { return FIELDS(TND_NAME_FIELD); }
extern "C" int tnd_abi_version(void) { return TND_ABI_VERSION; }
#else
#define TND_LAYOUT(family, FIELDS)
#endif
#define TND_DEFINE_ABI(family, FIELDS)                                      \
    struct family##_raw {                                                   \
        FIELDS(TND_RAW_FIELD)                                               \
    };                                                                      \
    template <typename A_>                                                  \
    static void family##_fill(A_& A, const family##_raw& R) {               \
        FIELDS(TND_FILL_FIELD)                                              \
    }                                                                       \
    TND_LAYOUT(family, FIELDS)

template <typename T>
static inline T act_fwd(T z, int act) { return act == 0 ? std::tanh(z) : z; }

// Register-blocked micro-kernel: out[r, i0 + c] += sum_j in[r, j] * W[j, i0 + c] for r < RB, c < CW.
// RB * CW accumulators live in vector registers across the whole j loop.
template <typename T, int RB, int CW>
static inline void mm_block(T* __restrict out, const T* __restrict in, const T* __restrict W, int M, int i0) {
    T acc[RB][CW];
    for (int r = 0; r < RB; ++r)
        for (int c = 0; c < CW; ++c) acc[r][c] = 0;
    for (int j = 0; j < M; ++j) {
        const T* __restrict w = W + (i64)j * M + i0;
        for (int r = 0; r < RB; ++r) {
            const T a = in[(i64)r * M + j];
            for (int c = 0; c < CW; ++c) acc[r][c] += a * w[c];
        }
    }
    for (int r = 0; r < RB; ++r)
        for (int c = 0; c < CW; ++c) out[(i64)r * M + i0 + c] += acc[r][c];
}

// Remainder columns [i0, M) of RB rows (plain loops).
template <typename T>
static void mm_tail(T* __restrict out, const T* __restrict in, const T* __restrict W, int M, int i0, int rows) {
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < M; ++j) {
            const T a = in[(i64)r * M + j];
            const T* __restrict w = W + (i64)j * M;
            T* __restrict o = out + (i64)r * M;
            for (int i = i0; i < M; ++i) o[i] += a * w[i];
        }
}

template <typename T, int RB, int CW>
static inline void mm_rows(T* out, const T* in, const T* W, int M) {
    int i0 = 0;
    for (; i0 + CW <= M; i0 += CW) mm_block<T, RB, CW>(out, in, W, M, i0);
    if (i0 < M) mm_tail<T>(out, in, W, M, i0, RB);
}

// out[b, :] += sum_j in[b, j] * W[j, :] for b < B  (W is M x M, row-major).
template <typename T>
static void matmul_rows(T* __restrict out, const T* __restrict in, const T* __restrict W, int B, int M) {
    constexpr int V = 32 / sizeof(T);  // elements per 256-bit vector
    int b = 0;
    for (; b + 4 <= B; b += 4) mm_rows<T, 4, 4 * V>(out + (i64)b * M, in + (i64)b * M, W, M);
    for (; b < B; ++b) mm_rows<T, 1, 8 * V>(out + (i64)b * M, in + (i64)b * M, W, M);
}

// From this many rows on, the edge loops run batch-inner: over a transposed (M, B) copy of the
// states, each edge is one vectorised multiply-add over the rows instead of scalar gathers (about
// 4x faster at B = 64); fewer rows (the control loop's B = 1) take the row-blocked loops.
constexpr int BATCH_INNER_ROWS = 8;

// dst[j * B + b] = src[b * M + j]
template <typename T>
static inline void transpose_rows(T* __restrict dst, const T* __restrict src, int B, int M) {
    for (int b = 0; b < B; ++b) {
        const T* __restrict s = src + (i64)b * M;
        for (int j = 0; j < M; ++j) dst[(i64)j * B + b] = s[j];
    }
}

// csr_gather, batch-inner: the same sums in the same order for every (b, i).
template <typename T>
static void csr_gather_bt(T* __restrict out, const T* __restrict in, const i64* __restrict rowptr,
                          const i32* __restrict src, const T* __restrict w, int B, int M) {
    thread_local std::vector<T> buf;
    buf.resize((size_t)M * B + B);
    T* __restrict inT = buf.data();
    T* __restrict acc = inT + (i64)M * B;
    transpose_rows(inT, in, B, M);
    for (int i = 0; i < M; ++i) {
        for (int b = 0; b < B; ++b) acc[b] = 0;
        for (i64 e = rowptr[i]; e < rowptr[i + 1]; ++e) {
            const T wv = w[e];
            const T* __restrict r = inT + (i64)src[e] * B;
            for (int b = 0; b < B; ++b) acc[b] += wv * r[b];
        }
        for (int b = 0; b < B; ++b) out[(i64)b * M + i] += acc[b];
    }
}

// out[b, i] += sum_{e in row i} w[e] * in[b, src[e]]   (CSR over targets); four rows of the
// batch share each pass over the edge list.
template <typename T>
static void csr_gather(T* __restrict out, const T* __restrict in, const i64* __restrict rowptr,
                       const i32* __restrict src, const T* __restrict w, int B, int M) {
    if (B >= BATCH_INNER_ROWS) return csr_gather_bt(out, in, rowptr, src, w, B, M);
    int b = 0;
    for (; b + 4 <= B; b += 4) {
        const T* s0 = in + (i64)b * M;
        const T* s1 = s0 + M;
        const T* s2 = s1 + M;
        const T* s3 = s2 + M;
        T* o = out + (i64)b * M;
        for (int i = 0; i < M; ++i) {
            T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (i64 e = rowptr[i]; e < rowptr[i + 1]; ++e) {
                const i32 j = src[e];
                const T wv = w[e];
                a0 += wv * s0[j];
                a1 += wv * s1[j];
                a2 += wv * s2[j];
                a3 += wv * s3[j];
            }
            o[i] += a0;
            o[i + M] += a1;
            o[i + 2 * M] += a2;
            o[i + 3 * (i64)M] += a3;
        }
    }
    for (; b < B; ++b) {
        const T* __restrict s = in + (i64)b * M;
        T* __restrict o = out + (i64)b * M;
        for (int i = 0; i < M; ++i) {
            T acc = 0;
            for (i64 e = rowptr[i]; e < rowptr[i + 1]; ++e) acc += w[e] * s[src[e]];
            o[i] += acc;
        }
    }
}

// csr_scatter_grad, batch-inner (see csr_gather_bt): gn's new terms are summed apart and then
// added, and each edge's weight gradient is one sum over the rows (other rounding, same sums).
template <typename T>
static void csr_scatter_grad_bt(T* __restrict gn, const T* __restrict gp, const T* __restrict s,
                                const i64* __restrict rowptr, const i32* __restrict src, const T* __restrict w,
                                double* __restrict acc_w, int B, int M) {
    thread_local std::vector<T> buf;
    const i64 MB = (i64)M * B;
    buf.assign((size_t)(3 * MB), T(0));
    T* __restrict gpT = buf.data();
    T* __restrict sT = gpT + MB;
    T* __restrict gnT = sT + MB;
    transpose_rows(gpT, gp, B, M);
    transpose_rows(sT, s, B, M);
    for (int i = 0; i < M; ++i) {
        const T* __restrict g = gpT + (i64)i * B;
        for (i64 e = rowptr[i]; e < rowptr[i + 1]; ++e) {
            const i64 j = (i64)src[e] * B;
            const T wv = w[e];
            T* __restrict gr = gnT + j;
            const T* __restrict sr = sT + j;
            T dot = 0;
            for (int b = 0; b < B; ++b) {
                gr[b] += wv * g[b];
                dot += g[b] * sr[b];
            }
            acc_w[e] += (double)dot;
        }
    }
    for (int b = 0; b < B; ++b) {
        T* __restrict o = gn + (i64)b * M;
        for (int j = 0; j < M; ++j) o[j] += gnT[(i64)j * B + b];
    }
}

// The transpose of csr_gather plus the edge-weight gradient, for B rows:
//     gn[b, src[e]] += w[e] * gp[b, i],   acc_w[e] += sum_b gp[b, i] * s[b, src[e]]   (e in row i)
template <typename T>
static void csr_scatter_grad(T* __restrict gn, const T* __restrict gp, const T* __restrict s,
                             const i64* __restrict rowptr, const i32* __restrict src, const T* __restrict w,
                             double* __restrict acc_w, int B, int M) {
    if (B >= BATCH_INNER_ROWS) return csr_scatter_grad_bt(gn, gp, s, rowptr, src, w, acc_w, B, M);
    int b = 0;
    for (; b + 4 <= B; b += 4) {
        const i64 o = (i64)b * M;
        for (int i = 0; i < M; ++i) {
            const T g0 = gp[o + i], g1 = gp[o + M + i], g2 = gp[o + 2 * M + i], g3 = gp[o + 3 * (i64)M + i];
            for (i64 e = rowptr[i]; e < rowptr[i + 1]; ++e) {
                const i64 j = o + src[e];
                const T wv = w[e];
                gn[j] += wv * g0;
                gn[j + M] += wv * g1;
                gn[j + 2 * M] += wv * g2;
                gn[j + 3 * (i64)M] += wv * g3;
                acc_w[e] += (double)(g0 * s[j] + g1 * s[j + M] + g2 * s[j + 2 * M] + g3 * s[j + 3 * (i64)M]);
            }
        }
    }
    for (; b < B; ++b) {
        const i64 o = (i64)b * M;
        for (int i = 0; i < M; ++i) {
            const T gv = gp[o + i];
            for (i64 e = rowptr[i]; e < rowptr[i + 1]; ++e) {
                const i64 j = o + src[e];
                gn[j] += w[e] * gv;
                acc_w[e] += (double)(gv * s[j]);
            }
        }
    }
}

// All arguments of one call; each worker thread runs the whole time loop for rows [b0, b1) of
// the batch (the rows are independent), so threads never synchronise inside the loop.
template <typename T>
struct Args {
    int T_, B, M, n_in, n_out, seq_out, sparse, act, nthreads;
    const T *P, *s0, *W, *WT, *w, *r, *bias, *dt, *S_in, *C_in, *g_outs, *g_last;
    const i64 *in_idx, *out_idx, *rowptr;
    const i32* src;
    i64 E;
    T *outs, *s_last, *S, *C, *g_s0, *g_P, *Gpre, *g_bias, *g_r, *g_w;
};

// The leaky family's C ABI (tnd.fast.loop.LeakyArgs mirrors it); forward and backward share it.
#define TND_LEAKY_FIELDS(X)                                                                               \
    X(i, T_) X(i, B) X(i, M) X(i, n_in) X(i, n_out) X(i, seq_out) X(i, sparse) X(i, act) X(i, E)          \
    X(i, nthreads) X(f, P) X(f, s0) X(f, W) X(f, WT) X(f, w) X(f, r) X(f, bias) X(f, dt) X(f, S_in)      \
    X(f, C_in) X(f, g_outs) X(f, g_last) X(l, in_idx) X(l, out_idx) X(l, rowptr) X(n, src) X(f, outs)    \
    X(f, s_last) X(f, S) X(f, C) X(f, g_s0) X(f, g_P) X(f, Gpre) X(f, g_bias) X(f, g_r) X(f, g_w)
TND_DEFINE_ABI(leaky, TND_LEAKY_FIELDS)

// Split the batch into `nthreads` chunks (multiples of 4 rows where possible); none for B = 0.
static std::vector<std::pair<int, int>> split_rows(int B, int nthreads) {
    std::vector<std::pair<int, int>> parts;
    if (B <= 0) return parts;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > B) nthreads = B;
    int per = (B + nthreads - 1) / nthreads;
    if (per % 4 && B >= 4 * nthreads) per += 4 - per % 4;
    for (int b = 0; b < B; b += per) parts.emplace_back(b, b + per < B ? b + per : B);
    return parts;
}

// Run rows(b0, b1) on every chunk of the batch, in parallel, the first chunk on this thread.
template <typename F>
static void for_row_chunks(const std::vector<std::pair<int, int>>& parts, F rows) {
    if (parts.empty()) return;
    std::vector<std::thread> pool;
    for (size_t k = 1; k < parts.size(); ++k) pool.emplace_back([&rows, &parts, k] { rows(parts[k].first, parts[k].second); });
    rows(parts[0].first, parts[0].second);
    for (auto& th : pool) th.join();
}

// Run work(b0, b1, acc) on every chunk in parallel, each with its own `L` zeroed doubles, and return
// their sum over the chunks, added in chunk order (results do not depend on thread timing).
template <typename F>
static std::vector<double> sum_over_chunks(const std::vector<std::pair<int, int>>& parts, size_t L, F work) {
    if (parts.empty()) return std::vector<double>(L, 0.0);  // no rows: every sum is zero
    std::vector<double> acc(L * parts.size(), 0.0);
    std::vector<std::thread> pool;
    for (size_t k = 1; k < parts.size(); ++k)
        pool.emplace_back([&work, &parts, &acc, L, k] { work(parts[k].first, parts[k].second, acc.data() + L * k); });
    work(parts[0].first, parts[0].second, acc.data());
    for (auto& th : pool) th.join();
    for (size_t k = 1; k < parts.size(); ++k)
        for (size_t i = 0; i < L; ++i) acc[i] += acc[L * k + i];
    acc.resize(L);
    return acc;
}

// The output units' states of a worker's nb rows after step t, into outs (every step, or the last).
template <typename T, typename Args_>
static inline void store_outs(const Args_& A, const T* nxt, int t, int b0, int nb, i64 M) {
    const int n_out = A.n_out;
    T* o = A.outs + (A.seq_out ? (i64)t * A.B * n_out : 0);
    for (int bb = 0; bb < nb; ++bb)
        for (int k = 0; k < n_out; ++k) o[(i64)(b0 + bb) * n_out + k] = nxt[(i64)bb * M + A.out_idx[k]];
}

// g[bb, out_idx[k]] += go[b0 + bb, k] for a worker's nb batch rows: an output's gradient enters the
// state it was read from.
template <typename T, typename Args_>
static inline void add_out_grad(const Args_& A, T* g, const T* go, int b0, int nb, i64 M) {
    const int n_out = A.n_out;
    for (int bb = 0; bb < nb; ++bb)
        for (int k = 0; k < n_out; ++k) g[(i64)bb * M + A.out_idx[k]] += go[(i64)(b0 + bb) * n_out + k];
}

// The gradient w.r.t. the state after the last step: g_last (or 0) plus the last output's gradient.
template <typename T, typename Args_>
static void seed_grad(const Args_& A, T* g, int b0, int nb, i64 M) {
    const i64 nbM = (i64)nb * M;
    if (A.g_last)
        std::memcpy(g, A.g_last + (i64)b0 * M, sizeof(T) * nbM);
    else
        std::memset(g, 0, sizeof(T) * nbM);
    add_out_grad(A, g, A.g_outs + (A.seq_out ? (i64)(A.T_ - 1) * A.B * A.n_out : 0), b0, nb, M);
}

// ------------------------------------------------------------ the row skeleton of every family
// A worker's rows [b0, b1) of the batch run the whole time loop; the families differ only in one
// step, given as a callable, while these loops own the states and gradients from step to step.

// Forward: step(t, off, cur, nxt) updates the nb rows from the states cur to nxt (off: the offset
// of row b0 at step t in (T, B, M) arrays). The states ping-pong between two buffers (or go to S,
// when saved); the outputs are stored after every step (or the last), the last state in s_last.
template <typename T, typename Args_, typename Step>
static inline void forward_time_loop(const Args_& A, int b0, int b1, int M, Step step) {
    const int nb = b1 - b0;
    const i64 BM = (i64)A.B * M, nbM = (i64)nb * M;
    std::vector<T> buf_a(A.S ? 0 : nbM), buf_b(A.S ? 0 : nbM);
    const T* cur = A.s0 + (i64)b0 * M;
    if (A.S) std::memcpy(A.S + (i64)b0 * M, cur, sizeof(T) * nbM);
    for (int t = 0; t < A.T_; ++t) {
        const i64 off = (i64)t * BM + (i64)b0 * M;
        T* nxt = A.S ? A.S + off + BM : (t % 2 == 0 ? buf_a.data() : buf_b.data());
        step(t, off, cur, nxt);
        if (A.seq_out || t == A.T_ - 1) store_outs(A, nxt, t, b0, nb, M);
        cur = nxt;
    }
    std::memcpy(A.s_last + (i64)b0 * M, cur, sizeof(T) * nbM);
}

// Backward through time: step(t, off, g, gn) takes the gradient g w.r.t. the state after step t
// to gn, the one w.r.t. the state before it (and accumulates the family's parameter gradients);
// the outputs' gradients enter where they were read, the last one gives g_s0.
template <typename T, typename Args_, typename Step>
static inline void backward_time_loop(const Args_& A, int b0, int b1, int M, Step step) {
    const int nb = b1 - b0;
    const i64 BM = (i64)A.B * M, nbM = (i64)nb * M;
    std::vector<T> g(nbM), gn(nbM);
    seed_grad(A, g.data(), b0, nb, M);
    for (int t = A.T_ - 1; t >= 0; --t) {
        step(t, (i64)t * BM + (i64)b0 * M, g.data(), gn.data());
        if (A.seq_out && t >= 1) add_out_grad(A, gn.data(), A.g_outs + (i64)(t - 1) * A.B * A.n_out, b0, nb, M);
        g.swap(gn);
    }
    std::memcpy(A.g_s0 + (i64)b0 * M, g.data(), sizeof(T) * nbM);
}

// u += s @ W for nb rows, over the dense W or the CSR (rowptr, src, w).
template <typename T, typename Args_>
static inline void aggregate(const Args_& A, T* u, const T* s, int nb, int M) {
    if (A.sparse)
        csr_gather(u, s, A.rowptr, A.src, A.w, nb, M);
    else
        matmul_rows(u, s, A.W, nb, M);
}

// Its transpose, gn += gp @ W^T (dense: the transposed matrix WT), and, sparse, the edge weights'
// gradient sum_b gp[b, i] * s[b, j] into acc_w.
template <typename T, typename Args_>
static inline void aggregate_grad(const Args_& A, T* gn, const T* gp, const T* s, double* acc_w, int nb, int M) {
    if (A.sparse)
        csr_scatter_grad(gn, gp, s, A.rowptr, A.src, A.w, acc_w, nb, M);
    else
        matmul_rows(gn, gp, A.WT, nb, M);
}

// exp(-r[m] h) for every unit, recomputed only when h changes: dt is usually the same at every
// step (a fixed step, or dt / K for K propagation rounds), so the decays cost M exps per call,
// not one per element. A flag, not a NaN sentinel, marks "none yet": -ffast-math assumes no NaNs.
template <typename T>
struct Decays {
    const T* r;
    int M;
    std::vector<T> v;
    T h = T(0);
    bool have = false;
    Decays(const T* r_, int M_) : r(r_), M(M_), v(M_) {}
    const T* at(T h_) {
        if (!have || h_ != h) {
            for (int m = 0; m < M; ++m) v[m] = std::exp(-r[m] * h_);
            h = h_;
            have = true;
        }
        return v.data();
    }
};

template <typename T>
static void forward_rows(const Args<T>& A, int b0, int b1) {
    const int B = A.B, M = A.M, nb = b1 - b0, n_in = A.n_in;
    std::vector<T> pre((i64)nb * M);
    Decays<T> decays(A.r, M);
    forward_time_loop<T>(A, b0, b1, M, [&](int t, i64 off, const T* cur, T* nxt) {
        T* c = A.C ? A.C + off : pre.data();
        // pre = bias + x_t  (x only at input units)
        for (int bb = 0; bb < nb; ++bb) {
            T* cb = c + (i64)bb * M;
            std::memcpy(cb, A.bias, sizeof(T) * M);
            const T* p = A.P + ((i64)t * B + b0 + bb) * n_in;
            for (int k = 0; k < n_in; ++k) cb[A.in_idx[k]] += p[k];
        }
        aggregate(A, c, cur, nb, M);
        for (int bb = 0; bb < nb; ++bb) {
            T* __restrict cb = c + (i64)bb * M;
            const T* __restrict sb = cur + (i64)bb * M;
            T* __restrict nbp = nxt + (i64)bb * M;
            if (A.act == 0)
                for (int m = 0; m < M; ++m) cb[m] = std::tanh(cb[m]);
            const T* __restrict dc = decays.at(A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1));
            for (int m = 0; m < M; ++m) nbp[m] = cb[m] + (sb[m] - cb[m]) * dc[m];
        }
    });
}

// The element-wise part of one backward step of the leaky update, for one batch row.
// ``decay`` holds exp(-r h) for this row's step h (h = 1 without dt).
template <typename T, bool TANH>
__attribute__((noinline)) static void leaky_bwd_elem(int M, const T* __restrict sb, const T* __restrict cb,
                                                     const T* __restrict gb, const T* __restrict decay, T h,
                                                     T* __restrict gpb, T* __restrict gnb, double* __restrict acc_r,
                                                     double* __restrict acc_bias) {
    for (int m = 0; m < M; ++m) {
        const T a = decay[m];
        const T gv = gb[m], cv = cb[m];
        const T dact = TANH ? T(1) - cv * cv : T(1);
        const T gpre = gv * (T(1) - a) * dact;
        gpb[m] = gpre;
        gnb[m] = gv * a;
        acc_r[m] -= (double)(gv * (sb[m] - cv) * a * h);
        acc_bias[m] += (double)gpre;
    }
}

// The element-wise part of one backward step of the gated update, for one batch row.
template <typename T>
__attribute__((noinline)) static void gated_bwd_elem(int M, const T* __restrict sb, const T* __restrict sgb,
                                                     const T* __restrict cdb, const T* __restrict gb, T rmin, T rspan, T h,
                                                     T* __restrict ggb, T* __restrict gcb, T* __restrict gnb,
                                                     double* __restrict abeta, double* __restrict acb) {
    for (int m = 0; m < M; ++m) {
        const T sig = sgb[m], c = cdb[m], gv = gb[m];
        const T a = std::exp(-(rmin + rspan * sig) * h);
        ggb[m] = -gv * (sb[m] - c) * a * h * rspan * sig * (T(1) - sig);
        gcb[m] = gv * (T(1) - a) * (T(1) - c * c);
        gnb[m] = gv * a;
        abeta[m] += (double)ggb[m];
        acb[m] += (double)gcb[m];
    }
}

// Backward through time for rows [b0, b1). S_in: (T+1, B, M) states, C_in: (T, B, M) targets,
// g_outs: (T', B, n_out), g_last: (B, M) or null. Writes g_s0 (B, M), g_P (T, B, n_in) and
// Gpre (T, B, M) (dense: the caller forms dW = S[:-1]^T Gpre in one matmul) for its rows, and
// accumulates this worker's partial sums of g_bias, g_r (M) and, sparse, g_w (E).
template <typename T>
static void backward_rows(const Args<T>& A, int b0, int b1, double* acc_bias, double* acc_r, double* acc_w) {
    const int B = A.B, M = A.M, nb = b1 - b0, n_in = A.n_in;
    std::vector<T> gp_buf(A.sparse ? (i64)nb * M : 0);
    Decays<T> decays(A.r, M);
    backward_time_loop<T>(A, b0, b1, M, [&](int t, i64 off, const T* g, T* gn) {
        const T* st = A.S_in + off;
        const T* ct = A.C_in + off;
        T* gp = A.sparse ? gp_buf.data() : A.Gpre + off;
        for (int bb = 0; bb < nb; ++bb) {
            const T* __restrict sb = st + (i64)bb * M;
            const T* __restrict cb = ct + (i64)bb * M;
            const T* __restrict gb = g + (i64)bb * M;
            T* __restrict gpb = gp + (i64)bb * M;
            T* __restrict gnb = gn + (i64)bb * M;
            const T h = A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1);
            const T* dc = decays.at(h);
            if (A.act == 0)
                leaky_bwd_elem<T, true>(M, sb, cb, gb, dc, h, gpb, gnb, acc_r, acc_bias);
            else
                leaky_bwd_elem<T, false>(M, sb, cb, gb, dc, h, gpb, gnb, acc_r, acc_bias);
            T* gPt = A.g_P + ((i64)t * B + b0 + bb) * n_in;
            for (int k = 0; k < n_in; ++k) gPt[k] = gpb[A.in_idx[k]];
        }
        aggregate_grad(A, gn, gp, st, acc_w, nb, M);
    });
}

template <typename T>
static void forward(const Args<T>& A, int nthreads) {
    for_row_chunks(split_rows(A.B, nthreads), [&A](int b0, int b1) { forward_rows(A, b0, b1); });
}

template <typename T>
static void backward(const Args<T>& A, int nthreads, T* g_bias, T* g_r, T* g_w) {
    const size_t M = A.M, E = A.sparse ? A.E : 0;
    auto acc = sum_over_chunks(split_rows(A.B, nthreads), 2 * M + E, [&A, M](int b0, int b1, double* a) {
        backward_rows(A, b0, b1, a, a + M, a + 2 * M);
    });
    for (size_t m = 0; m < M; ++m) {
        g_bias[m] = (T)acc[m];
        g_r[m] = (T)acc[M + m];
    }
    for (size_t e = 0; e < E; ++e) g_w[e] = (T)acc[2 * M + e];
}

#define TND_EXPORT(T, SUF)                                                                  \
    extern "C" void tnd_leaky_forward_##SUF(const leaky_raw* R) {                          \
        Args<T> A{};                                                                        \
        leaky_fill(A, *R);                                                                  \
        forward<T>(A, A.nthreads);                                                          \
    }                                                                                       \
    extern "C" void tnd_leaky_backward_##SUF(const leaky_raw* R) {                         \
        Args<T> A{};                                                                        \
        leaky_fill(A, *R);                                                                  \
        backward<T>(A, A.nthreads, A.g_bias, A.g_r, A.g_w);                                 \
    }

#ifndef TND_SKIP_F32
TND_EXPORT(float, f32)
#endif
#ifndef TND_SKIP_F64
TND_EXPORT(double, f64)
#endif

// The other dynamics, the attention interaction and the single-step kernel (one translation unit).
#include "tnd_gated.inc.cpp"
#include "tnd_attention.inc.cpp"
#include "tnd_mlp.inc.cpp"
#include "tnd_step.inc.cpp"
#include "tnd_gated_step.inc.cpp"
