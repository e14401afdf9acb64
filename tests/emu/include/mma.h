// mma.h (nvcuda::wmma) of the CUDA emulator: 16x16x16 fragments of f16/bf16 operands and f32
// accumulators. As on the GPU, a fragment is spread over the warp: here lane l holds the 8
// elements l*8 .. l*8+7 of the tile in row-major order (the real mapping is unspecified, so
// code may not depend on it). load, store and mma are warp collectives.
#pragma once
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator has 16x16x16 fragments only");
  static constexpr int num_elements = 8;
  T x[8];
};

namespace detail {
inline int lane() { return emu::lane_id(); }
// (row, column) in the 16x16 tile of element j of this lane.
inline int row(int j) { return (lane() * 8 + j) / 16; }
inline int col(int j) { return (lane() * 8 + j) % 16; }
inline void sync(const char* what) { emu::collective<char, char, emu::no_combine>(what, 0xffffffffu, 0); }

template <typename T> struct MmaIn {
  T a[8], b[8];
  float c[8];
};
struct MmaOut {
  float d[8];
};
template <typename T> void mma_combine(const MmaIn<T>* in, MmaOut* out, unsigned) {
  float A[16][16], B[16][16], C[16][16];
  for (int l = 0; l < 32; l++)
    for (int j = 0; j < 8; j++) {
      const int e = l * 8 + j;
      A[e / 16][e % 16] = emu::to_f32(in[l].a[j]);
      B[e / 16][e % 16] = emu::to_f32(in[l].b[j]);
      C[e / 16][e % 16] = in[l].c[j];
    }
  for (int l = 0; l < 32; l++)
    for (int j = 0; j < 8; j++) {
      const int e = l * 8 + j, r = e / 16, n = e % 16;
      float s = 0.0f;
      for (int k = 0; k < 16; k++) s += A[r][k] * B[k][n];
      out[l].d[j] = C[r][n] + s;
    }
}
}  // namespace detail

namespace detail {
// The CUDA rules: the pointer 256-bit aligned, ldm a multiple of 16 bytes.
template <typename T> void check_tile(const char* what, const T* p, unsigned ldm) {
  if ((uintptr_t)p % 32) emu::kernel_error("%s: pointer %p is not 32-byte aligned", what, (const void*)p);
  if (ldm * sizeof(T) % 16) emu::kernel_error("%s: ldm %u is not a multiple of 16 bytes", what, ldm);
}
}  // namespace detail

template <typename Use, typename T, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
  detail::check_tile("wmma::load_matrix_sync", p, ldm);
  detail::sync("wmma::load_matrix_sync");
  for (int j = 0; j < 8; j++) {
    const int r = detail::row(j), c = detail::col(j);
    f.x[j] = std::is_same_v<Layout, row_major> ? p[r * ldm + c] : p[c * ldm + r];
  }
}

template <typename T>
void store_matrix_sync(T* p, const fragment<accumulator, 16, 16, 16, T>& f, unsigned ldm, layout_t layout) {
  detail::check_tile("wmma::store_matrix_sync", p, ldm);
  detail::sync("wmma::store_matrix_sync");
  for (int j = 0; j < 8; j++) {
    const int r = detail::row(j), c = detail::col(j);
    p[layout == mem_row_major ? r * ldm + c : c * ldm + r] = f.x[j];
  }
}

template <typename Use, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, const V& v) {
  for (int j = 0; j < 8; j++) f.x[j] = v;
}

template <typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
  detail::MmaIn<T> in;
  for (int j = 0; j < 8; j++) {
    in.a[j] = a.x[j];
    in.b[j] = b.x[j];
    in.c[j] = c.x[j];
  }
  const detail::MmaOut o =
      emu::collective<detail::MmaIn<T>, detail::MmaOut, detail::mma_combine<T>>("wmma::mma_sync", 0xffffffffu, in);
  for (int j = 0; j < 8; j++) d.x[j] = o.d[j];
}

}  // namespace wmma
}  // namespace nvcuda
