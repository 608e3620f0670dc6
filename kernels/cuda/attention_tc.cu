/*
 * attention_tc.cu — causal GQA attention for prefill chunks on tensor cores
 * (WMMA, f16 inputs, f32 accumulation), flash style.
 *
 * A block serves one KV head and up to 64 rows of (query, group head), like
 * the CUDA-core kernel, and walks the visible keys 64 at a time: the tile's
 * keys and values are converted to f16 in shared memory, S = Q·Kᵀ comes from
 * 16×16×16 products (two output tiles per warp), each warp turns 8 rows of S
 * into probabilities with the running max and sum (online softmax), scales
 * those rows of the f32 output kept in shared memory, and O += P·V is again
 * on tensor cores with O loaded as the accumulator. Queries are scaled before
 * they are rounded to f16, so scores keep f16's relative precision. The
 * output (or, with key splits, the unnormalised partials) is what
 * attention.cu's kernel writes, merged the same way (attention_merge_if_last).
 */
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/tc_tile.cuh"

#include <math.h>

using namespace nvcuda;

#define TC_KEYS TC_TILE

/* Shared-memory layout; every leading dimension keeps WMMA's 32-byte row alignment. */
template <int HD>
struct tc_layout {
    static constexpr int QLD = tc_dims<HD>::QLD;
    static constexpr int SLD = tc_dims<HD>::SLD;
    static constexpr int PLD = TC_KEYS + 8; /* f16 probabilities */
    static constexpr int OLD = HD + 4;      /* f32 output */
    static constexpr size_t q_off = 0;
    static constexpr size_t k_off = q_off + (size_t)TC_ROWS * QLD * 2;
    static constexpr size_t v_off = k_off + (size_t)TC_KEYS * QLD * 2;
    static constexpr size_t s_off = v_off + (size_t)TC_KEYS * QLD * 2;
    static constexpr size_t p_off = s_off + (size_t)TC_ROWS * SLD * 4;
    static constexpr size_t o_off = p_off + (size_t)TC_ROWS * PLD * 2;
    static constexpr size_t m_off = o_off + (size_t)TC_ROWS * OLD * 4;
    static constexpr size_t l_off = m_off + (size_t)TC_ROWS * 4;
    static constexpr size_t bytes = l_off + (size_t)TC_ROWS * 4;
};

template <int HD>
__global__ void __launch_bounds__(TC_WARPS * 32) attention_tc_kernel(attn_args a)
{
    using L = tc_layout<HD>;
    extern __shared__ __align__(128) unsigned char smem[];
    __half *qs = (__half *)(smem + L::q_off), *ks = (__half *)(smem + L::k_off);
    __half *vs = (__half *)(smem + L::v_off), *ps = (__half *)(smem + L::p_off);
    float *ss = (float *)(smem + L::s_off), *os = (float *)(smem + L::o_off);
    float *row_m = (float *)(smem + L::m_off), *row_l = (float *)(smem + L::l_off);

    const int group = a.n_heads / a.n_kv;
    const int rows = a.bq * group;
    const int g = blockIdx.y, split = blockIdx.z;
    const int i0 = blockIdx.x * a.bq;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t base = a.head_base ? (size_t)a.head_base[g] : (size_t)g * a.capacity;
    const int first = a.head_base ? a.head_rows[g] : a.pos0; /* rows before the first query */
    const float *kh = a.kc + base * HD, *vh = a.vc + base * HD;

    tc_load_queries<HD>(qs, a.q, a.scale, a.n, a.n_heads, i0, g, group, rows);
    for (int idx = threadIdx.x; idx < TC_ROWS * HD; idx += blockDim.x)
        os[idx / HD * L::OLD + idx % HD] = 0.0f;
    for (int r = threadIdx.x; r < TC_ROWS; r += blockDim.x) {
        row_m[r] = -INFINITY;
        row_l[r] = 0.0f;
    }
    int last = min(a.n, i0 + a.bq) - 1;
    int kv_hi = first + last + 1;
    int k_begin = split * a.split_len, k_end = min(kv_hi, k_begin + a.split_len);

    for (int t0 = k_begin; t0 < k_end; t0 += TC_KEYS) {
        int tn = min(TC_KEYS, k_end - t0);
        __syncthreads(); /* the previous tile's P·V is done with ks, vs, ps */
        for (int idx = threadIdx.x; idx < TC_KEYS * HD / 4; idx += blockDim.x) {
            int j = idx / (HD / 4), d = idx % (HD / 4) * 4;
            float4 k4 = make_float4(0.f, 0.f, 0.f, 0.f), v4 = k4;
            if (j < tn) {
                k4 = *(const float4 *)(kh + (size_t)(t0 + j) * HD + d);
                v4 = *(const float4 *)(vh + (size_t)(t0 + j) * HD + d);
            }
            __half2 *kd = (__half2 *)(ks + j * L::QLD + d), *vd = (__half2 *)(vs + j * L::QLD + d);
            kd[0] = kvz_half2_sat(k4.x, k4.y);
            kd[1] = kvz_half2_sat(k4.z, k4.w);
            vd[0] = kvz_half2_sat(v4.x, v4.y);
            vd[1] = kvz_half2_sat(v4.z, v4.w);
        }
        __syncthreads();

        tc_qk_tile<HD>(qs, ks, ss); /* S (64 x 64) = Q Kᵀ */
        __syncthreads();

        /* online softmax: warp w owns rows 8w .. 8w+7, lane scores keys lane and lane + 32 */
        for (int k = 0; k < TC_ROWS / TC_WARPS; k++) {
            int r = warp * (TC_ROWS / TC_WARPS) + k;
            int i = i0 + r / group;
            bool row_ok = r < rows && i < a.n;
            int key0 = t0 + lane, key1 = key0 + 32;
            bool ok0 = row_ok && lane < tn && key0 <= first + i;
            bool ok1 = row_ok && lane + 32 < tn && key1 <= first + i;
            float s0 = ok0 ? ss[r * L::SLD + lane] : -INFINITY;
            float s1 = ok1 ? ss[r * L::SLD + lane + 32] : -INFINITY;
            float tmax = fmaxf(s0, s1);
            for (int off = 16; off > 0; off >>= 1)
                tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, off));
            float p0 = 0.0f, p1 = 0.0f, alpha = 1.0f, m_old = row_m[r], m_new = m_old;
            if (tmax != -INFINITY) { /* uniform across the warp */
                m_new = fmaxf(m_old, tmax);
                alpha = __expf(m_old - m_new);
                p0 = ok0 ? __expf(s0 - m_new) : 0.0f;
                p1 = ok1 ? __expf(s1 - m_new) : 0.0f;
            }
            __half h0 = __float2half(p0), h1 = __float2half(p1);
            ps[r * L::PLD + lane] = h0;
            ps[r * L::PLD + lane + 32] = h1;
            float psum = __half2float(h0) + __half2float(h1); /* the sum of what P·V multiplies */
            for (int off = 16; off > 0; off >>= 1)
                psum += __shfl_xor_sync(0xffffffffu, psum, off);
            __syncwarp();
            if (lane == 0) {
                row_l[r] = row_l[r] * alpha + psum;
                row_m[r] = m_new;
            }
            if (alpha != 1.0f)
                for (int d = lane; d < HD; d += 32)
                    os[r * L::OLD + d] *= alpha;
        }
        __syncthreads();

        /* O (64 x HD) += P V: 4 x HD/16 tiles over the warps */
        for (int t = warp; t < (TC_ROWS / 16) * (HD / 16); t += TC_WARPS) {
            int tr = t / (HD / 16), tc = t % (HD / 16);
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            float *o = os + 16 * tr * L::OLD + 16 * tc;
            wmma::load_matrix_sync(acc, o, L::OLD, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < TC_KEYS / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> pa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> vb;
                wmma::load_matrix_sync(pa, ps + 16 * tr * L::PLD + 16 * kk, L::PLD);
                wmma::load_matrix_sync(vb, vs + 16 * kk * L::QLD + 16 * tc, L::QLD);
                wmma::mma_sync(acc, pa, vb, acc);
            }
            wmma::store_matrix_sync(o, acc, L::OLD, wmma::mem_row_major);
        }
    }
    __syncthreads();

    for (int idx = threadIdx.x; idx < rows * HD; idx += blockDim.x) {
        int r = idx / HD, d = idx % HD, i = i0 + r / group, h = g * group + r % group;
        if (i >= a.n)
            continue;
        if (a.splits == 1) {
            a.out[((size_t)i * a.n_heads + h) * HD + d] = os[r * L::OLD + d] / row_l[r];
        } else {
            float *pr = a.partials + (((size_t)split * a.n + i) * a.n_heads + h) * (HD + 2);
            pr[d] = os[r * L::OLD + d];
            if (d == 0) {
                pr[HD] = row_m[r];
                pr[HD + 1] = row_l[r];
            }
        }
    }
    if (a.splits > 1)
        attention_merge_if_last<HD, TC_WARPS>(a, i0, g, rows, group);
}

size_t cuda_attention_tc_smem(int hd)
{
    return hd == 64 ? tc_layout<64>::bytes : hd == 96 ? tc_layout<96>::bytes : tc_layout<128>::bytes;
}

template <int HD>
static int configure_tc(cuda_impl *c)
{
    return cuda_allow_smem(c, attention_tc_kernel<HD>, "attention_tc_kernel", HD, tc_layout<HD>::bytes,
                           &c->attention_tc_room[cuda_head_slot(HD)]);
}

int cuda_attention_tc_configure(cuda_impl *c)
{
    KVZ_TRY(configure_tc<64>(c));
    KVZ_TRY(configure_tc<96>(c));
    return configure_tc<128>(c);
}

template <int HD>
static int launch_tc(cuda_impl *c, const attn_args *a, dim3 grid)
{
    attention_tc_kernel<HD><<<grid, TC_WARPS * 32, tc_layout<HD>::bytes, c->stream>>>(*a);
    CUDA_LAUNCHED("tensor-core attention");
    return KVZ_OK;
}

int cuda_attention_tc_launch(cuda_impl *c, const attn_args *a, int hd, dim3 grid)
{
    return hd == 64 ? launch_tc<64>(c, a, grid) : hd == 96 ? launch_tc<96>(c, a, grid) : launch_tc<128>(c, a, grid);
}
