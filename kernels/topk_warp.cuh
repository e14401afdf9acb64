// A warp's running top-k: lane r holds the r-th best (score, index), best first, ties to the
// lower index. Shared by the fused cosine top-k (kernels/cosine_topk.cu) and the benchmark's
// top-k over a stored score matrix (bench/bench_kernels.cu), so both scan the same way.
#pragma once

namespace clip::cuda {

__device__ __forceinline__ bool better(float s, int i, float s2, int i2) {
  return s > s2 || (s == s2 && i < i2);
}

// Offers each lane's candidate (s, i) (only where `valid`) to a warp's top-k list held one
// entry per lane (ls, li), sorted best first. Candidates are taken in lane order.
__device__ __forceinline__ void topk_offer(float& ls, int& li, float s, int i, bool valid, int k,
                                           int lane) {
  float ks = __shfl_sync(0xffffffffu, ls, k - 1);
  int ki = __shfl_sync(0xffffffffu, li, k - 1);
  unsigned mask = __ballot_sync(0xffffffffu, valid && better(s, i, ks, ki));
  while (mask) {
    const int src = __ffs(mask) - 1;
    mask &= mask - 1;
    const float cs = __shfl_sync(0xffffffffu, s, src);
    const int ci = __shfl_sync(0xffffffffu, i, src);
    ks = __shfl_sync(0xffffffffu, ls, k - 1);
    ki = __shfl_sync(0xffffffffu, li, k - 1);
    if (!better(cs, ci, ks, ki)) continue;  // uniform: the list moved on
    const int pos = __popc(__ballot_sync(0xffffffffu, lane < k && better(ls, li, cs, ci)));
    const float us = __shfl_up_sync(0xffffffffu, ls, 1);
    const int ui = __shfl_up_sync(0xffffffffu, li, 1);
    if (lane == pos) {
      ls = cs;
      li = ci;
    } else if (lane > pos) {
      ls = us;
      li = ui;
    }
  }
}

}  // namespace clip::cuda
