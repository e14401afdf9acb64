// The CUDA kernels' size limits, as constants: the engine checks a node against them when the
// node is added to a graph (engine/ops.cpp, supports), so a graph the kernels cannot run is
// refused as it is built, naming the op; each launcher asserts the same limit.
#pragma once

namespace clip::cuda {

constexpr int kAttentionMinHeadSize = 24;   // kernels/attention.cu: head sizes that are multiples of 8
constexpr int kAttentionMaxHeadSize = 128;  // in [24, 128] (the zoo's 32 .. 128)
constexpr int kMaxGridYZ = 65535;       // attention's grid: NH heads (y) and B images (z)
constexpr int kLayerNormMaxC = 2048;    // kernels/layernorm.cu: 32 lanes x 64 cached floats
constexpr int kAttentionPoolFloats = 8192;  // kernels/attention_pool.cu: C + T + head size in shared memory
constexpr int kClsAttentionFloats = 8192;   // kernels/cls_attention.cu: head size + T in shared memory

}  // namespace clip::cuda
