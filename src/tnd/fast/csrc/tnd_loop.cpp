// Fused time loops of the TND discrete mode (linear I, exponential Euler, 1 sub-step) for the
// leaky, gated and per-neuron-MLP dynamics. The leaky update is spelled out below; the gated and
// MLP kernels (further down) share its interaction code and its batch-parallel structure.
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

// out[b, i] += sum_{e in row i} w[e] * in[b, src[e]]   (CSR over targets); four rows of the
// batch share each pass over the edge list.
template <typename T>
static void csr_gather(T* __restrict out, const T* __restrict in, const i64* __restrict rowptr,
                       const i32* __restrict src, const T* __restrict w, int B, int M) {
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

// The transpose of csr_gather plus the edge-weight gradient, for B rows:
//     gn[b, src[e]] += w[e] * gp[b, i],   acc_w[e] += sum_b gp[b, i] * s[b, src[e]]   (e in row i)
template <typename T>
static void csr_scatter_grad(T* __restrict gn, const T* __restrict gp, const T* __restrict s,
                             const i64* __restrict rowptr, const i32* __restrict src, const T* __restrict w,
                             double* __restrict acc_w, int B, int M) {
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
    int T_, B, M, n_in, n_out, seq_out, sparse, act;
    const T *P, *s0, *W, *WT, *w, *r, *bias, *dt, *S_in, *C_in, *g_outs, *g_last;
    const i64 *in_idx, *out_idx, *rowptr;
    const i32* src;
    i64 E;
    T *outs, *s_last, *S, *C, *g_s0, *g_P, *Gpre;
};

template <typename T>
static void forward_rows(const Args<T>& A, int b0, int b1) {
    const int B = A.B, M = A.M, nb = b1 - b0, n_in = A.n_in, n_out = A.n_out;
    const i64 BM = (i64)B * M, nbM = (i64)nb * M;
    std::vector<T> buf_a(A.S ? 0 : nbM), buf_b(A.S ? 0 : nbM), pre(nbM), decay(M);
    const T* r = A.r;
    if (!A.dt)
        for (int m = 0; m < M; ++m) decay[m] = std::exp(-r[m]);
    const T* cur = A.s0 + (i64)b0 * M;
    if (A.S) std::memcpy(A.S + (i64)b0 * M, cur, sizeof(T) * nbM);
    for (int t = 0; t < A.T_; ++t) {
        T* nxt = A.S ? A.S + (i64)(t + 1) * BM + (i64)b0 * M : (t % 2 == 0 ? buf_a.data() : buf_b.data());
        T* c = A.C ? A.C + (i64)t * BM + (i64)b0 * M : pre.data();
        // pre = bias + x_t  (x only at input units)
        for (int bb = 0; bb < nb; ++bb) {
            T* cb = c + (i64)bb * M;
            std::memcpy(cb, A.bias, sizeof(T) * M);
            const T* p = A.P + ((i64)t * B + b0 + bb) * n_in;
            for (int k = 0; k < n_in; ++k) cb[A.in_idx[k]] += p[k];
        }
        if (A.sparse)
            csr_gather(c, cur, A.rowptr, A.src, A.w, nb, M);
        else
            matmul_rows(c, cur, A.W, nb, M);
        for (int bb = 0; bb < nb; ++bb) {
            T* __restrict cb = c + (i64)bb * M;
            const T* __restrict sb = cur + (i64)bb * M;
            T* __restrict nbp = nxt + (i64)bb * M;
            if (A.act == 0)
                for (int m = 0; m < M; ++m) cb[m] = std::tanh(cb[m]);
            if (A.dt) {
                const T h = A.dt[(i64)t * B + b0 + bb];
                for (int m = 0; m < M; ++m) {
                    const T a = std::exp(-r[m] * h);
                    nbp[m] = cb[m] + (sb[m] - cb[m]) * a;
                }
            } else {
                const T* __restrict dc = decay.data();
                for (int m = 0; m < M; ++m) nbp[m] = cb[m] + (sb[m] - cb[m]) * dc[m];
            }
        }
        if (A.seq_out || t == A.T_ - 1) {
            T* o = A.outs + (A.seq_out ? (i64)t * B * n_out : 0);
            for (int bb = 0; bb < nb; ++bb)
                for (int k = 0; k < n_out; ++k)
                    o[(i64)(b0 + bb) * n_out + k] = nxt[(i64)bb * M + A.out_idx[k]];
        }
        cur = nxt;
    }
    std::memcpy(A.s_last + (i64)b0 * M, cur, sizeof(T) * nbM);
}

// The element-wise part of one backward step of the leaky update, for one batch row.
template <typename T, bool DT, bool TANH>
__attribute__((noinline)) static void leaky_bwd_elem(int M, const T* __restrict sb, const T* __restrict cb,
                                                     const T* __restrict gb, const T* __restrict r,
                                                     const T* __restrict decay, T h, T* __restrict gpb,
                                                     T* __restrict gnb, double* __restrict acc_r,
                                                     double* __restrict acc_bias) {
    for (int m = 0; m < M; ++m) {
        const T a = DT ? std::exp(-r[m] * h) : decay[m];
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
                                                     const T* __restrict cdb, const T* __restrict gb, T rmax, T h,
                                                     T* __restrict ggb, T* __restrict gcb, T* __restrict gnb,
                                                     double* __restrict abeta, double* __restrict acb) {
    for (int m = 0; m < M; ++m) {
        const T sig = sgb[m], c = cdb[m], gv = gb[m];
        const T a = std::exp(-rmax * sig * h);
        ggb[m] = -gv * (sb[m] - c) * a * h * rmax * sig * (T(1) - sig);
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
    const int B = A.B, M = A.M, nb = b1 - b0, n_in = A.n_in, n_out = A.n_out;
    const i64 BM = (i64)B * M, nbM = (i64)nb * M;
    const T* r = A.r;
    std::vector<T> g(nbM), gn(nbM), gp_buf(A.sparse ? nbM : 0), decay(M);
    if (!A.dt)
        for (int m = 0; m < M; ++m) decay[m] = std::exp(-r[m]);
    if (A.g_last)
        std::memcpy(g.data(), A.g_last + (i64)b0 * M, sizeof(T) * nbM);
    else
        std::memset(g.data(), 0, sizeof(T) * nbM);
    {
        const T* go = A.g_outs + (A.seq_out ? (i64)(A.T_ - 1) * B * n_out : 0);
        for (int bb = 0; bb < nb; ++bb)
            for (int k = 0; k < n_out; ++k) g[(i64)bb * M + A.out_idx[k]] += go[(i64)(b0 + bb) * n_out + k];
    }
    for (int t = A.T_ - 1; t >= 0; --t) {
        const T* st = A.S_in + (i64)t * BM + (i64)b0 * M;
        const T* ct = A.C_in + (i64)t * BM + (i64)b0 * M;
        T* gp = A.sparse ? gp_buf.data() : A.Gpre + (i64)t * BM + (i64)b0 * M;
        for (int bb = 0; bb < nb; ++bb) {
            const T* __restrict sb = st + (i64)bb * M;
            const T* __restrict cb = ct + (i64)bb * M;
            const T* __restrict gb = g.data() + (i64)bb * M;
            T* __restrict gpb = gp + (i64)bb * M;
            T* __restrict gnb = gn.data() + (i64)bb * M;
            const T h = A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1);
            if (A.dt) {
                if (A.act == 0)
                    leaky_bwd_elem<T, true, true>(M, sb, cb, gb, r, decay.data(), h, gpb, gnb, acc_r, acc_bias);
                else
                    leaky_bwd_elem<T, true, false>(M, sb, cb, gb, r, decay.data(), h, gpb, gnb, acc_r, acc_bias);
            } else {
                if (A.act == 0)
                    leaky_bwd_elem<T, false, true>(M, sb, cb, gb, r, decay.data(), h, gpb, gnb, acc_r, acc_bias);
                else
                    leaky_bwd_elem<T, false, false>(M, sb, cb, gb, r, decay.data(), h, gpb, gnb, acc_r, acc_bias);
            }
            T* gPt = A.g_P + ((i64)t * B + b0 + bb) * n_in;
            for (int k = 0; k < n_in; ++k) gPt[k] = gpb[A.in_idx[k]];
        }
        if (A.sparse) {
            csr_scatter_grad(gn.data(), gp, st, A.rowptr, A.src, A.w, acc_w, nb, M);
        } else {
            matmul_rows(gn.data(), gp, A.WT, nb, M);
        }
        if (A.seq_out && t >= 1) {
            const T* go = A.g_outs + (i64)(t - 1) * B * n_out;
            for (int bb = 0; bb < nb; ++bb)
                for (int k = 0; k < n_out; ++k) gn[(i64)bb * M + A.out_idx[k]] += go[(i64)(b0 + bb) * n_out + k];
        }
        g.swap(gn);
    }
    std::memcpy(A.g_s0 + (i64)b0 * M, g.data(), sizeof(T) * nbM);
}

// Split the batch into `nthreads` chunks (multiples of 4 rows where possible).
static std::vector<std::pair<int, int>> split_rows(int B, int nthreads) {
    std::vector<std::pair<int, int>> parts;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > B) nthreads = B;
    int per = (B + nthreads - 1) / nthreads;
    if (per % 4 && B >= 4 * nthreads) per += 4 - per % 4;
    for (int b = 0; b < B; b += per) parts.emplace_back(b, b + per < B ? b + per : B);
    return parts;
}

template <typename T>
static void forward(const Args<T>& A, int nthreads) {
    auto parts = split_rows(A.B, nthreads);
    std::vector<std::thread> pool;
    for (size_t k = 1; k < parts.size(); ++k)
        pool.emplace_back([&A, &parts, k] { forward_rows(A, parts[k].first, parts[k].second); });
    forward_rows(A, parts[0].first, parts[0].second);
    for (auto& th : pool) th.join();
}

template <typename T>
static void backward(const Args<T>& A, int nthreads, T* g_bias, T* g_r, T* g_w) {
    auto parts = split_rows(A.B, nthreads);
    const size_t np = parts.size(), M = A.M, E = A.sparse ? A.E : 0;
    std::vector<double> acc((2 * M + E) * np, 0.0);
    auto work = [&](size_t k) {
        double* a = acc.data() + (2 * M + E) * k;
        backward_rows(A, parts[k].first, parts[k].second, a, a + M, a + 2 * M);
    };
    std::vector<std::thread> pool;
    for (size_t k = 1; k < np; ++k) pool.emplace_back(work, k);
    work(0);
    for (auto& th : pool) th.join();
    for (size_t k = 1; k < np; ++k) {
        const double* a = acc.data() + (2 * M + E) * k;
        for (size_t i = 0; i < 2 * M + E; ++i) acc[i] += a[i];
    }
    for (size_t m = 0; m < M; ++m) {
        g_bias[m] = (T)acc[m];
        g_r[m] = (T)acc[M + m];
    }
    for (size_t e = 0; e < E; ++e) g_w[e] = (T)acc[2 * M + e];
}

// ------------------------------------------------------------------------------------------
// Gated dynamics (tnd.dynamics.gated): per neuron n with d x d matrices A, G, V (N, d, d):
//     gate = s_n A_n + u_n G_n + beta + xg        (xg: input projection through H, input units)
//     c    = tanh(u_n V_n + cb + xc)              (xc: input projection through U, input units)
//     a    = exp(-rmax * sigmoid(gate) * dt),     s' = c + (s - c) * a
template <typename T>
struct GArgs {
    int T_, B, N, d, n_in, n_out, seq_out, sparse;
    T rmax;
    const T *XG, *XC, *s0, *W, *WT, *w, *A, *G, *V, *beta, *cb, *dt, *g_outs, *g_last;
    const T *S_in, *U_in, *SIG_in, *CAND_in;
    const i64 *in_idx, *out_idx, *rowptr;
    const i32* src;
    i64 E;
    T *outs, *s_last, *S, *U, *SIG, *CAND, *g_s0, *g_XG, *g_XC, *Gu;
};

template <typename T>
__attribute__((noinline)) static void gated_step_d1(int M, const T* __restrict gr, const T* __restrict sr,
                                                    const T* __restrict Av, const T* __restrict ur,
                                                    const T* __restrict Gv, const T* __restrict cr,
                                                    const T* __restrict Vv, T* __restrict sgr, T* __restrict cdr,
                                                    T* __restrict nr, T rh) {
    for (int m = 0; m < M; ++m) {  // d == 1: one flat, vectorised loop
        const T gate = gr[m] + sr[m] * Av[m] + ur[m] * Gv[m];
        const T sig = T(0.5) * std::tanh(T(0.5) * gate) + T(0.5);  // sigmoid, overflow-free (no division)
        const T c = std::tanh(cr[m] + ur[m] * Vv[m]);
        const T a = std::exp(-rh * sig);
        sgr[m] = sig;
        cdr[m] = c;
        nr[m] = c + (sr[m] - c) * a;
    }
}

template <typename T>
static void gated_forward_rows(const GArgs<T>& A, int b0, int b1) {
    const int B = A.B, N = A.N, d = A.d, M = N * d, nb = b1 - b0, n_in = A.n_in, n_out = A.n_out;
    const i64 BM = (i64)B * M, nbM = (i64)nb * M;
    std::vector<T> buf_a(A.S ? 0 : nbM), buf_b(A.S ? 0 : nbM), u_buf(nbM), sig_buf(nbM), cand_buf(nbM);
    std::vector<T> gin(nbM), cin(nbM);
    const T* cur = A.s0 + (i64)b0 * M;
    if (A.S) std::memcpy(A.S + (i64)b0 * M, cur, sizeof(T) * nbM);
    for (int t = 0; t < A.T_; ++t) {
        const i64 off = (i64)t * BM + (i64)b0 * M;
        T* nxt = A.S ? A.S + off + BM : (t % 2 == 0 ? buf_a.data() : buf_b.data());
        T* u = A.U ? A.U + off : u_buf.data();
        T* sg = A.SIG ? A.SIG + off : sig_buf.data();
        T* cd = A.CAND ? A.CAND + off : cand_buf.data();
        std::memset(u, 0, sizeof(T) * nbM);
        if (A.sparse)
            csr_gather(u, cur, A.rowptr, A.src, A.w, nb, M);
        else
            matmul_rows(u, cur, A.W, nb, M);
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
                gated_step_d1(M, gi, cur + (i64)bb * M, A.A, u + (i64)bb * M, A.G, ci, A.V, sgb, cdb, nbp, A.rmax * h);
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
                    const T a = std::exp(-A.rmax * sig * h);
                    sgb[o + k] = sig;
                    cdb[o + k] = c;
                    nbp[o + k] = c + (sb[o + k] - c) * a;
                }
            }
        }
        if (A.seq_out || t == A.T_ - 1) {
            T* o = A.outs + (A.seq_out ? (i64)t * B * n_out : 0);
            for (int bb = 0; bb < nb; ++bb)
                for (int k = 0; k < n_out; ++k)
                    o[(i64)(b0 + bb) * n_out + k] = nxt[(i64)bb * M + A.out_idx[k]];
        }
        cur = nxt;
    }
    std::memcpy(A.s_last + (i64)b0 * M, cur, sizeof(T) * nbM);
}

// acc layout (doubles): A (N*d*d) | G (N*d*d) | V (N*d*d) | beta (M) | cb (M) | w (E, sparse)
template <typename T>
static void gated_backward_rows(const GArgs<T>& A, int b0, int b1, double* acc) {
    const int B = A.B, N = A.N, d = A.d, M = N * d, nb = b1 - b0, n_in = A.n_in, n_out = A.n_out;
    const i64 BM = (i64)B * M, nbM = (i64)nb * M, NDD = (i64)N * d * d;
    double* aA = acc;
    double* aG = aA + NDD;
    double* aV = aG + NDD;
    double* abeta = aV + NDD;
    double* acb = abeta + M;
    double* aw = acb + M;
    std::vector<T> g(nbM), gn(nbM), gu_buf(A.sparse ? nbM : 0), gg(M), gc(M);
    if (A.g_last)
        std::memcpy(g.data(), A.g_last + (i64)b0 * M, sizeof(T) * nbM);
    else
        std::memset(g.data(), 0, sizeof(T) * nbM);
    {
        const T* go = A.g_outs + (A.seq_out ? (i64)(A.T_ - 1) * B * n_out : 0);
        for (int bb = 0; bb < nb; ++bb)
            for (int k = 0; k < n_out; ++k) g[(i64)bb * M + A.out_idx[k]] += go[(i64)(b0 + bb) * n_out + k];
    }
    T* __restrict ggb = gg.data();
    T* __restrict gcb = gc.data();
    for (int t = A.T_ - 1; t >= 0; --t) {
        const i64 off = (i64)t * BM + (i64)b0 * M;
        T* gut = A.sparse ? gu_buf.data() : A.Gu + off;
        for (int bb = 0; bb < nb; ++bb) {
            const i64 ro = (i64)bb * M;
            const T* __restrict sb = A.S_in + off + ro;
            const T* __restrict ub = A.U_in + off + ro;
            const T* __restrict sgb = A.SIG_in + off + ro;
            const T* __restrict cdb = A.CAND_in + off + ro;
            const T* __restrict gb = g.data() + ro;
            T* __restrict gub = gut + ro;
            T* __restrict gnb = gn.data() + ro;
            const T h = A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1);
            gated_bwd_elem(M, sb, sgb, cdb, gb, A.rmax, h, ggb, gcb, gnb, abeta, acb);
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
        if (A.sparse) {
            csr_scatter_grad(gn.data(), gut, A.S_in + off, A.rowptr, A.src, A.w, aw, nb, M);
        } else {
            matmul_rows(gn.data(), gut, A.WT, nb, M);
        }
        if (A.seq_out && t >= 1) {
            const T* go = A.g_outs + (i64)(t - 1) * B * n_out;
            for (int bb = 0; bb < nb; ++bb)
                for (int k = 0; k < n_out; ++k) gn[(i64)bb * M + A.out_idx[k]] += go[(i64)(b0 + bb) * n_out + k];
        }
        g.swap(gn);
    }
    std::memcpy(A.g_s0 + (i64)b0 * M, g.data(), sizeof(T) * nbM);
}

template <typename T>
static void gated_forward(const GArgs<T>& A, int nthreads) {
    auto parts = split_rows(A.B, nthreads);
    std::vector<std::thread> pool;
    for (size_t k = 1; k < parts.size(); ++k)
        pool.emplace_back([&A, &parts, k] { gated_forward_rows(A, parts[k].first, parts[k].second); });
    gated_forward_rows(A, parts[0].first, parts[0].second);
    for (auto& th : pool) th.join();
}

// out: A, G, V grads (N*d*d each), beta (M), cb (M), w (E, sparse)
template <typename T>
static void gated_backward(const GArgs<T>& A, int nthreads, T* out) {
    auto parts = split_rows(A.B, nthreads);
    const i64 M = (i64)A.N * A.d;
    const i64 L = 3 * (i64)A.N * A.d * A.d + 2 * M + (A.sparse ? A.E : 0);
    const size_t np = parts.size();
    std::vector<double> acc(L * np, 0.0);
    auto work = [&](size_t k) { gated_backward_rows(A, parts[k].first, parts[k].second, acc.data() + L * k); };
    std::vector<std::thread> pool;
    for (size_t k = 1; k < np; ++k) pool.emplace_back(work, k);
    work(0);
    for (auto& th : pool) th.join();
    for (i64 i = 0; i < L; ++i) {
        double v = 0;
        for (size_t k = 0; k < np; ++k) v += acc[L * k + i];
        out[i] = (T)v;
    }
}

#define TND_GATED_EXPORT(T, SUF)                                                                                   \
    extern "C" void tnd_gated_forward_##SUF(int T_, int B, int N, int d, int n_in, int n_out, int seq_out,        \
                                            const T* XG, const T* XC, const i64* in_idx, const i64* out_idx,      \
                                            const T* s0, int sparse, const T* W, const i64* rowptr, const i32* src,\
                                            const T* w, const T* Am, const T* Gm, const T* Vm, const T* beta,     \
                                            const T* cb, double rmax, const T* dt, T* outs, T* s_last, T* S, T* U, \
                                            T* SIG, T* CAND, int nthreads) {                                      \
        GArgs<T> A{};                                                                                              \
        A.T_ = T_; A.B = B; A.N = N; A.d = d; A.n_in = n_in; A.n_out = n_out; A.seq_out = seq_out;                \
        A.sparse = sparse; A.rmax = (T)rmax; A.XG = XG; A.XC = XC; A.in_idx = in_idx; A.out_idx = out_idx;         \
        A.s0 = s0; A.W = W; A.rowptr = rowptr; A.src = src; A.w = w; A.A = Am; A.G = Gm; A.V = Vm; A.beta = beta; \
        A.cb = cb; A.dt = dt; A.outs = outs; A.s_last = s_last; A.S = S; A.U = U; A.SIG = SIG; A.CAND = CAND;     \
        gated_forward<T>(A, nthreads);                                                                             \
    }                                                                                                              \
    extern "C" void tnd_gated_backward_##SUF(int T_, int B, int N, int d, int n_in, int n_out, int seq_out,      \
                                             const i64* in_idx, const i64* out_idx, int sparse, const T* WT,       \
                                             const i64* rowptr, const i32* src, const T* w, i64 E, const T* Am,    \
                                             const T* Gm, const T* Vm, double rmax, const T* dt, const T* S,       \
                                             const T* U, const T* SIG, const T* CAND, const T* g_outs,             \
                                             const T* g_last, T* g_s0, T* g_XG, T* g_XC, T* Gu, T* g_params,       \
                                             int nthreads) {                                                       \
        GArgs<T> A{};                                                                                              \
        A.T_ = T_; A.B = B; A.N = N; A.d = d; A.n_in = n_in; A.n_out = n_out; A.seq_out = seq_out;                \
        A.in_idx = in_idx; A.out_idx = out_idx; A.sparse = sparse; A.WT = WT; A.rowptr = rowptr; A.src = src;      \
        A.w = w; A.E = E; A.A = Am; A.G = Gm; A.V = Vm; A.rmax = (T)rmax; A.dt = dt; A.S_in = S; A.U_in = U;       \
        A.SIG_in = SIG; A.CAND_in = CAND; A.g_outs = g_outs; A.g_last = g_last; A.g_s0 = g_s0; A.g_XG = g_XG;     \
        A.g_XC = g_XC; A.Gu = Gu;                                                                                  \
        gated_backward<T>(A, nthreads, g_params);                                                                  \
    }

// Each precision may be compiled in its own translation unit (in parallel; see cbuild.py).
#ifndef TND_SKIP_F32
TND_GATED_EXPORT(float, f32)
#endif
#ifndef TND_SKIP_F64
TND_GATED_EXPORT(double, f64)
#endif

// ------------------------------------------------------------------------------------------
// Per-neuron MLP dynamics (tnd.dynamics.mlp): per neuron n, W1 (3d, H), b1 (H), W2 (H, d), b2 (d):
//     hid = tanh([s_n, u_n, x_n] W1 + b1)     (the x part, XW, is precomputed for the input neurons)
//     c   = tanh(hid W2 + b2),   a = exp(-r dt),   s' = c + (s - c) * a
// Saves S, U, C; the backward pass recomputes hid.
template <typename T>
struct MArgs {
    int T_, B, N, d, H, n_in, n_out, seq_out, sparse;
    const T *XW, *s0, *W, *WT, *w, *W1, *B1, *W2, *B2, *r, *dt, *g_outs, *g_last, *S_in, *U_in, *C_in;
    const i64 *in_pos, *out_idx, *rowptr;
    const i32* src;
    i64 E;
    T *outs, *s_last, *S, *U, *C, *g_s0, *g_XW, *Gu;
};

// hid (N * H) = tanh(s W1_s + u W1_u + b1 + xw) for all neurons of one batch row, with one flat
// (vectorisable) tanh over N * H values.
template <typename T, int HC>  // HC > 0: d == 1 and H == HC known at compile time
static void mlp_hidden_row(const MArgs<T>& A, const T* sb, const T* ub, const T* xw_row, T* hid) {
    const int N = A.N, d = HC ? 1 : A.d, H = HC ? HC : A.H;
    std::memcpy(hid, A.B1, sizeof(T) * (i64)N * H);
    for (int n = 0; n < N; ++n) {
        T* hn = hid + (i64)n * H;
        const i64 slot = A.in_pos[n];
        if (slot >= 0)
            for (int j = 0; j < H; ++j) hn[j] += xw_row[slot * H + j];
        const T* W1 = A.W1 + (i64)n * 3 * d * H;
        for (int l = 0; l < d; ++l) {
            const T sv = sb[n * d + l], uv = ub[n * d + l];
            const T* w1s = W1 + (i64)l * H;
            const T* w1u = W1 + (i64)(d + l) * H;
            for (int j = 0; j < H; ++j) hn[j] += sv * w1s[j] + uv * w1u[j];
        }
    }
    const i64 NH = (i64)N * H;
    for (i64 i = 0; i < NH; ++i) hid[i] = std::tanh(hid[i]);
}

template <typename T, int HC>
static void mlp_forward_rows(const MArgs<T>& A, int b0, int b1) {
    const int B = A.B, N = A.N, d = HC ? 1 : A.d, H = HC ? HC : A.H, M = N * d, nb = b1 - b0, n_in = A.n_in, n_out = A.n_out;
    const i64 BM = (i64)B * M, nbM = (i64)nb * M;
    std::vector<T> buf_a(A.S ? 0 : nbM), buf_b(A.S ? 0 : nbM), u_buf(nbM), hid((i64)N * H), c_buf(M);
    const T* cur = A.s0 + (i64)b0 * M;
    if (A.S) std::memcpy(A.S + (i64)b0 * M, cur, sizeof(T) * nbM);
    for (int t = 0; t < A.T_; ++t) {
        const i64 off = (i64)t * BM + (i64)b0 * M;
        T* nxt = A.S ? A.S + off + BM : (t % 2 == 0 ? buf_a.data() : buf_b.data());
        T* u = A.U ? A.U + off : u_buf.data();
        std::memset(u, 0, sizeof(T) * nbM);
        if (A.sparse)
            csr_gather(u, cur, A.rowptr, A.src, A.w, nb, M);
        else
            matmul_rows(u, cur, A.W, nb, M);
        for (int bb = 0; bb < nb; ++bb) {
            const T h = A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1);
            const T* sb = cur + (i64)bb * M;
            const T* ub = u + (i64)bb * M;
            T* cb = A.C ? A.C + off + (i64)bb * M : c_buf.data();
            T* nbp = nxt + (i64)bb * M;
            mlp_hidden_row<T, HC>(A, sb, ub, A.XW + ((i64)t * B + b0 + bb) * n_in * H, hid.data());
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
            const T* __restrict r = A.r;
            for (int m = 0; m < M; ++m) {
                const T c = std::tanh(cb[m]);
                const T a = std::exp(-r[m] * h);
                cb[m] = c;
                nbp[m] = c + (sb[m] - c) * a;
            }
        }
        if (A.seq_out || t == A.T_ - 1) {
            T* o = A.outs + (A.seq_out ? (i64)t * B * n_out : 0);
            for (int bb = 0; bb < nb; ++bb)
                for (int k = 0; k < n_out; ++k)
                    o[(i64)(b0 + bb) * n_out + k] = nxt[(i64)bb * M + A.out_idx[k]];
        }
        cur = nxt;
    }
    std::memcpy(A.s_last + (i64)b0 * M, cur, sizeof(T) * nbM);
}

// acc layout (doubles): W1 (N*3d*H, x rows unused) | W2 (N*H*d) | B1 (N*H) | B2 (M) | r (M) | w (E)
template <typename T, int HC>
static void mlp_backward_rows(const MArgs<T>& A, int b0, int b1, double* acc) {
    const int B = A.B, N = A.N, d = HC ? 1 : A.d, H = HC ? HC : A.H, M = N * d, nb = b1 - b0, n_in = A.n_in, n_out = A.n_out;
    const i64 BM = (i64)B * M, nbM = (i64)nb * M;
    double* aW1 = acc;
    double* aW2 = aW1 + (i64)N * 3 * d * H;
    double* aB1 = aW2 + (i64)N * H * d;
    double* aB2 = aB1 + (i64)N * H;
    double* ar = aB2 + M;
    double* aw = ar + M;
    std::vector<T> g(nbM), gn(nbM), gu_buf(A.sparse ? nbM : 0), hid((i64)N * H), gp1(H), gp2(M);
    // per-step partial sums (over this worker's rows) in T, flushed into the double sums once per step
    const i64 LW1 = (i64)N * 3 * d * H, LW2 = (i64)N * H * d, LB1 = (i64)N * H;
    std::vector<T> fW1(LW1), fW2(LW2), fB1(LB1);
    if (A.g_last)
        std::memcpy(g.data(), A.g_last + (i64)b0 * M, sizeof(T) * nbM);
    else
        std::memset(g.data(), 0, sizeof(T) * nbM);
    {
        const T* go = A.g_outs + (A.seq_out ? (i64)(A.T_ - 1) * B * n_out : 0);
        for (int bb = 0; bb < nb; ++bb)
            for (int k = 0; k < n_out; ++k) g[(i64)bb * M + A.out_idx[k]] += go[(i64)(b0 + bb) * n_out + k];
    }
    for (int t = A.T_ - 1; t >= 0; --t) {
        const i64 off = (i64)t * BM + (i64)b0 * M;
        T* gut = A.sparse ? gu_buf.data() : A.Gu + off;
        std::fill(fW1.begin(), fW1.end(), T(0));
        std::fill(fW2.begin(), fW2.end(), T(0));
        std::fill(fB1.begin(), fB1.end(), T(0));
        for (int bb = 0; bb < nb; ++bb) {
            const i64 ro = (i64)bb * M;
            const T* sb = A.S_in + off + ro;
            const T* ub = A.U_in + off + ro;
            const T* cb = A.C_in + off + ro;
            const T* gb = g.data() + ro;
            T* gnb = gn.data() + ro;
            T* gub = gut + ro;
            const T h = A.dt ? A.dt[(i64)t * B + b0 + bb] : T(1);
            mlp_hidden_row<T, HC>(A, sb, ub, A.XW + ((i64)t * B + b0 + bb) * n_in * H, hid.data());
            T* gxw_row = A.g_XW + ((i64)t * B + b0 + bb) * n_in * H;
            for (int m = 0; m < M; ++m) {  // flat: the output layer and the decay
                const T a = std::exp(-A.r[m] * h);
                const T gv = gb[m], c = cb[m];
                gp2[m] = gv * (T(1) - a) * (T(1) - c * c);
                ar[m] -= (double)(gv * (sb[m] - c) * a * h);
                aB2[m] += (double)gp2[m];
                gnb[m] = gv * a;
            }
            for (int n = 0; n < N; ++n) {
                const i64 slot = A.in_pos[n];
                const int o = n * d;
                const T* hn = hid.data() + (i64)n * H;
                const T* W2 = A.W2 + (i64)n * H * d;
                T* aW2n = fW2.data() + (i64)n * H * d;
                T* aB1n = fB1.data() + (i64)n * H;
                for (int j = 0; j < H; ++j) {
                    T gh = 0;
                    for (int k = 0; k < d; ++k) {
                        gh += gp2[o + k] * W2[j * d + k];
                        aW2n[j * d + k] += hn[j] * gp2[o + k];
                    }
                    gp1[j] = gh * (T(1) - hn[j] * hn[j]);
                    aB1n[j] += gp1[j];
                }
                if (slot >= 0)
                    for (int j = 0; j < H; ++j) gxw_row[slot * H + j] = gp1[j];
                const T* W1 = A.W1 + (i64)n * 3 * d * H;
                T* aW1n = fW1.data() + (i64)n * 3 * d * H;
                for (int l = 0; l < d; ++l) {
                    const T* w1s = W1 + (i64)l * H;
                    const T* w1u = W1 + (i64)(d + l) * H;
                    T* as = aW1n + (i64)l * H;
                    T* au = aW1n + (i64)(d + l) * H;
                    const T sv = sb[o + l], uv = ub[o + l];
                    T gs = 0, gu = 0;
                    for (int j = 0; j < H; ++j) {
                        gs += gp1[j] * w1s[j];
                        gu += gp1[j] * w1u[j];
                        as[j] += sv * gp1[j];
                        au[j] += uv * gp1[j];
                    }
                    gnb[o + l] += gs;
                    gub[o + l] = gu;
                }
            }
        }
        for (i64 i = 0; i < LW1; ++i) aW1[i] += (double)fW1[i];
        for (i64 i = 0; i < LW2; ++i) aW2[i] += (double)fW2[i];
        for (i64 i = 0; i < LB1; ++i) aB1[i] += (double)fB1[i];
        if (A.sparse)
            csr_scatter_grad(gn.data(), gut, A.S_in + off, A.rowptr, A.src, A.w, aw, nb, M);
        else
            matmul_rows(gn.data(), gut, A.WT, nb, M);
        if (A.seq_out && t >= 1) {
            const T* go = A.g_outs + (i64)(t - 1) * B * n_out;
            for (int bb = 0; bb < nb; ++bb)
                for (int k = 0; k < n_out; ++k) gn[(i64)bb * M + A.out_idx[k]] += go[(i64)(b0 + bb) * n_out + k];
        }
        g.swap(gn);
    }
    std::memcpy(A.g_s0 + (i64)b0 * M, g.data(), sizeof(T) * nbM);
}

template <typename T>
static void mlp_forward_dispatch(const MArgs<T>& A, int b0, int b1) {
    if (A.d == 1 && A.H == 8)
        mlp_forward_rows<T, 8>(A, b0, b1);
    else
        mlp_forward_rows<T, 0>(A, b0, b1);
}

template <typename T>
static void mlp_forward(const MArgs<T>& A, int nthreads) {
    auto parts = split_rows(A.B, nthreads);
    std::vector<std::thread> pool;
    for (size_t k = 1; k < parts.size(); ++k)
        pool.emplace_back([&A, &parts, k] { mlp_forward_dispatch(A, parts[k].first, parts[k].second); });
    mlp_forward_dispatch(A, parts[0].first, parts[0].second);
    for (auto& th : pool) th.join();
}

// out: W1 grad (N*3d*H), W2 (N*H*d), B1 (N*H), B2 (M), r (M), w (E, sparse)
template <typename T>
static void mlp_backward(const MArgs<T>& A, int nthreads, T* out) {
    auto parts = split_rows(A.B, nthreads);
    const i64 M = (i64)A.N * A.d;
    const i64 L = (i64)A.N * 3 * A.d * A.H + (i64)A.N * A.H * A.d + (i64)A.N * A.H + 2 * M + (A.sparse ? A.E : 0);
    const size_t np = parts.size();
    std::vector<double> acc(L * np, 0.0);
    auto work = [&](size_t k) {
        if (A.d == 1 && A.H == 8)
            mlp_backward_rows<T, 8>(A, parts[k].first, parts[k].second, acc.data() + L * k);
        else
            mlp_backward_rows<T, 0>(A, parts[k].first, parts[k].second, acc.data() + L * k);
    };
    std::vector<std::thread> pool;
    for (size_t k = 1; k < np; ++k) pool.emplace_back(work, k);
    work(0);
    for (auto& th : pool) th.join();
    for (i64 i = 0; i < L; ++i) {
        double v = 0;
        for (size_t k = 0; k < np; ++k) v += acc[L * k + i];
        out[i] = (T)v;
    }
}

#define TND_MLP_EXPORT(T, SUF)                                                                                     \
    extern "C" void tnd_mlp_forward_##SUF(int T_, int B, int N, int d, int H, int n_in, int n_out, int seq_out,   \
                                          const T* XW, const i64* in_pos, const i64* out_idx, const T* s0,        \
                                          int sparse, const T* W, const i64* rowptr, const i32* src, const T* w,  \
                                          const T* W1, const T* B1, const T* W2, const T* B2, const T* r,         \
                                          const T* dt, T* outs, T* s_last, T* S, T* U, T* C, int nthreads) {      \
        MArgs<T> A{};                                                                                              \
        A.T_ = T_; A.B = B; A.N = N; A.d = d; A.H = H; A.n_in = n_in; A.n_out = n_out; A.seq_out = seq_out;       \
        A.sparse = sparse; A.XW = XW; A.in_pos = in_pos; A.out_idx = out_idx; A.s0 = s0; A.W = W;                  \
        A.rowptr = rowptr; A.src = src; A.w = w; A.W1 = W1; A.B1 = B1; A.W2 = W2; A.B2 = B2; A.r = r; A.dt = dt;   \
        A.outs = outs; A.s_last = s_last; A.S = S; A.U = U; A.C = C;                                               \
        mlp_forward<T>(A, nthreads);                                                                               \
    }                                                                                                              \
    extern "C" void tnd_mlp_backward_##SUF(int T_, int B, int N, int d, int H, int n_in, int n_out, int seq_out,  \
                                           const T* XW, const i64* in_pos, const i64* out_idx, int sparse,        \
                                           const T* WT, const i64* rowptr, const i32* src, const T* w, i64 E,     \
                                           const T* W1, const T* B1, const T* W2, const T* r, const T* dt,        \
                                           const T* S, const T* U, const T* C, const T* g_outs,                   \
                                           const T* g_last, T* g_s0, T* g_XW, T* Gu, T* g_params, int nthreads) { \
        MArgs<T> A{};                                                                                              \
        A.T_ = T_; A.B = B; A.N = N; A.d = d; A.H = H; A.n_in = n_in; A.n_out = n_out; A.seq_out = seq_out;       \
        A.XW = XW; A.in_pos = in_pos; A.out_idx = out_idx; A.sparse = sparse; A.WT = WT; A.rowptr = rowptr;        \
        A.src = src; A.w = w; A.E = E; A.W1 = W1; A.B1 = B1; A.W2 = W2; A.r = r; A.dt = dt; A.S_in = S;           \
        A.U_in = U; A.C_in = C; A.g_outs = g_outs; A.g_last = g_last; A.g_s0 = g_s0; A.g_XW = g_XW; A.Gu = Gu;    \
        mlp_backward<T>(A, nthreads, g_params);                                                                    \
    }

#ifndef TND_SKIP_F32
TND_MLP_EXPORT(float, f32)
#endif
#ifndef TND_SKIP_F64
TND_MLP_EXPORT(double, f64)
#endif

#define TND_EXPORT(T, SUF)                                                                                         \
    extern "C" void tnd_forward_##SUF(int T_, int B, int M, int n_in, int n_out, int seq_out, const T* P,         \
                                      const i64* in_idx, const i64* out_idx, const T* s0, int sparse, const T* W,  \
                                      const i64* rowptr, const i32* src, const T* w, const T* r, const T* bias,    \
                                      const T* dt, int act, T* outs, T* s_last, T* S, T* C, int nthreads) {       \
        Args<T> A{};                                                                                               \
        A.T_ = T_; A.B = B; A.M = M; A.n_in = n_in; A.n_out = n_out; A.seq_out = seq_out; A.sparse = sparse;       \
        A.act = act; A.P = P; A.s0 = s0; A.W = W; A.w = w; A.r = r; A.bias = bias; A.dt = dt; A.in_idx = in_idx;   \
        A.out_idx = out_idx; A.rowptr = rowptr; A.src = src; A.outs = outs; A.s_last = s_last; A.S = S; A.C = C;  \
        forward<T>(A, nthreads);                                                                                   \
    }                                                                                                              \
    extern "C" void tnd_backward_##SUF(int T_, int B, int M, int n_in, int n_out, int seq_out, const i64* in_idx,  \
                                       const i64* out_idx, int sparse, const T* WT, const i64* rowptr,             \
                                       const i32* src, const T* w, i64 E, const T* r, const T* dt, int act,        \
                                       const T* S, const T* C, const T* g_outs, const T* g_last, T* g_s0,          \
                                       T* g_P, T* g_bias, T* g_r, T* Gpre, T* g_w, int nthreads) {                 \
        Args<T> A{};                                                                                               \
        A.T_ = T_; A.B = B; A.M = M; A.n_in = n_in; A.n_out = n_out; A.seq_out = seq_out; A.sparse = sparse;       \
        A.act = act; A.WT = WT; A.rowptr = rowptr; A.src = src; A.w = w; A.E = E; A.r = r; A.dt = dt;              \
        A.in_idx = in_idx; A.out_idx = out_idx; A.S_in = S; A.C_in = C; A.g_outs = g_outs; A.g_last = g_last;      \
        A.g_s0 = g_s0; A.g_P = g_P; A.Gpre = Gpre;                                                                 \
        backward<T>(A, nthreads, g_bias, g_r, g_w);                                                                \
    }

#ifndef TND_SKIP_F32
TND_EXPORT(float, f32)
extern "C" int tnd_abi_version(void) { return 3; }
#endif
#ifndef TND_SKIP_F64
TND_EXPORT(double, f64)
#endif
