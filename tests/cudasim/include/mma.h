/* mma.h (nvcuda::wmma), emulated on the CPU: see tests/cudasim/cudasim.h.
 * Each lane's fragment holds the whole tile, in logical row-major order. */
#ifndef KVZ_TESTS_CUDASIM_MMA_H
#define KVZ_TESTS_CUDASIM_MMA_H
#include "cuda_fp16.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K> struct tile_shape;
template <int M, int N, int K> struct tile_shape<matrix_a, M, N, K> {
    static constexpr int rows = M, cols = K;
};
template <int M, int N, int K> struct tile_shape<matrix_b, M, N, K> {
    static constexpr int rows = K, cols = N;
};
template <int M, int N, int K> struct tile_shape<accumulator, M, N, K> {
    static constexpr int rows = M, cols = N;
};

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    typedef tile_shape<Use, M, N, K> shape;
    static constexpr int rows = shape::rows, cols = shape::cols, num_elements = rows * cols;
    T x[num_elements];
};

/* A warp's lanes meet at each call, as the hardware converges them. For the
 * race check, a load or a store also orders the warp's memory as __syncwarp
 * does (each waits for every lane), and the emulation's own work is not
 * instrumented (KVZ_SIM_PLAIN): the tile's memory is reported as read, or
 * written one row or column per lane, as a range. */
#define KVZ_SIM_PLAIN __attribute__((no_sanitize_thread))

template <class Use, int M, int N, int K, class T, class Layout>
KVZ_SIM_PLAIN void fill_fragment(fragment<Use, M, N, K, T, Layout> &f, T v)
{
    kvz_sim::warp_converge();
    for (int i = 0; i < f.num_elements; i++)
        f.x[i] = v;
}

/* Element (r, c) of a tile in memory, row- or column-major with leading dimension ldm. */
template <class T> T &tile_element(T *p, unsigned ldm, int r, int c, bool row_major_memory)
{
    return row_major_memory ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}

/* The tile's memory as `lines` runs of `run` elements, ldm apart. */
template <class Frag> int tile_lines(bool row_major_memory) { return row_major_memory ? Frag::rows : Frag::cols; }
template <class Frag> int tile_run(bool row_major_memory) { return row_major_memory ? Frag::cols : Frag::rows; }

template <class Frag, class T> KVZ_SIM_PLAIN void load_tile(Frag &f, const T *p, unsigned ldm, bool row_major_memory)
{
    kvz_sim::wmma_check_tile(p, ldm, sizeof(T), "wmma::load_matrix_sync");
    __syncwarp();
    for (int i = 0; i < tile_lines<Frag>(row_major_memory); i++)
        kvz_sim::race_read(p + (size_t)i * ldm, tile_run<Frag>(row_major_memory) * sizeof(T));
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++)
            f.x[r * f.cols + c] = tile_element(p, ldm, r, c, row_major_memory);
    kvz_sim::warp_converge();
}

template <class Use, int M, int N, int K, class T, class Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout> &f, const T *p, unsigned ldm)
{
    static_assert(std::is_same<Layout, row_major>::value || std::is_same<Layout, col_major>::value,
                  "operand fragments carry their layout");
    load_tile(f, p, ldm, std::is_same<Layout, row_major>::value);
}

template <int M, int N, int K, class T>
void load_matrix_sync(fragment<accumulator, M, N, K, T, void> &f, const T *p, unsigned ldm, layout_t layout)
{
    load_tile(f, p, ldm, layout == mem_row_major);
}

template <int M, int N, int K, class T>
KVZ_SIM_PLAIN void store_matrix_sync(T *p, const fragment<accumulator, M, N, K, T, void> &f, unsigned ldm,
                                     layout_t layout)
{
    typedef fragment<accumulator, M, N, K, T, void> Frag;
    const bool row_major_memory = layout == mem_row_major;
    kvz_sim::wmma_check_tile(p, ldm, sizeof(T), "wmma::store_matrix_sync");
    __syncwarp();
    /* each element written by one lane, as on the GPU (lane i writes line i
     * here; another lane there: for the race check what matters is one) */
    const int i = kvz_sim::lane(), run = tile_run<Frag>(row_major_memory);
    if (i < tile_lines<Frag>(row_major_memory)) {
        kvz_sim::race_write(p + (size_t)i * ldm, run * sizeof(T));
        for (int j = 0; j < run; j++) {
            const int r = row_major_memory ? i : j, c = row_major_memory ? j : i;
            tile_element(p, ldm, r, c, row_major_memory) = f.x[r * f.cols + c];
        }
    }
    kvz_sim::warp_converge();
}

/* d = a·b + c, products of the inputs accumulated in f32. Every lane holds the
 * same operands, so lane 0 multiplies and the others copy its result. */
template <int M, int N, int K, class TA, class LA, class LB>
KVZ_SIM_PLAIN void mma_sync(fragment<accumulator, M, N, K, float, void> &d,
                            const fragment<matrix_a, M, N, K, TA, LA> &a, const fragment<matrix_b, M, N, K, TA, LB> &b,
                            const fragment<accumulator, M, N, K, float, void> &c)
{
    static_assert(M * N * sizeof(float) <= 1024, "a warp's scratch holds one tile");
    float *out = (float *)kvz_sim::warp_scratch();
    kvz_sim::warp_converge();
    if (kvz_sim::lane() == 0) {
        float fa[M * K], fb[K * N];
        for (int i = 0; i < M * K; i++)
            fa[i] = (float)a.x[i];
        for (int i = 0; i < K * N; i++)
            fb[i] = (float)b.x[i];
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float s = c.x[i * N + j];
                for (int k = 0; k < K; k++)
                    s += fa[i * K + k] * fb[k * N + j];
                out[i * N + j] = s;
            }
    }
    kvz_sim::warp_converge();
    for (int i = 0; i < M * N; i++) /* lane 0 wrote the scratch uninstrumented: no race to see */
        d.x[i] = out[i];
    kvz_sim::warp_converge();
}
} // namespace wmma
} // namespace nvcuda
#endif
