// The GPU half of a cosine search (clip/search.cpp holds the rest: normalization, the exact
// refinement, the CPU fallback).
#pragma once
#include <cstdint>

namespace clip {

// The kk best rows of index [N, D] for each of M queries [M, D], both given as f16 bits of
// L2-normalized rows, by the fused top-k kernel (kernels/cosine_topk.cu; the M x N scores are
// never written): cand [M, kk] and cand_score [M, kk] (f32 sums of the f16 products), best
// first, host memory. kk <= 32, D <= 4096. Runs on one CUDA context kept for the process.
void cosine_topk_candidates_cuda(int32_t* cand, float* cand_score, const uint16_t* queries_f16, int64_t M,
                                 const uint16_t* index_f16, int64_t N, int64_t D, int64_t kk);

}  // namespace clip
