// OpenAI's ModifiedResNet image tower on the engine (the family's graph and its weights;
// its tensors and config inference are in clip/checkpoint.cpp, its FLOPs in clip/arch.cpp).
//
// Layout: channels last (NHWC) from the stem to the attention pool, so every convolution is a
// GEMM over output pixels (1x1: straight on the activation; 3x3: on im2col rows) and the
// pool's tokens are the final feature map's rows as they lie.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "clip/config.h"
#include "engine/graph.h"
#include "clip/checkpoint.h"

namespace clip {

// The derived f32 tensors the graph reads instead of the checkpoint's convolutions, BatchNorms
// and attention-pool projections, computed once at load:
//   <conv>.weight.nhwc [Co, k, k, Ci] and <conv>.bias.folded [Co]: each convolution with its
//     BatchNorm folded in (eval mode, eps 1e-5): scale = gamma / sqrt(running_var + eps),
//     w' = w scale, b' = beta - running_mean scale, computed in double and rounded once to
//     f32. The folded f32 values are what every compute dtype starts from.
//   visual.attnpool.in_proj_weight [3D, D], in_proj_bias [3D]: q, k, v stacked (in that order,
//     the layout the attention op reads).
// `consumed` gets the checkpoint tensors these replace.
struct DerivedTensor {
  std::string name;
  Shape shape;
  std::vector<float> data;
};
std::vector<DerivedTensor> resnet_derived_tensors(const Weights& w, std::vector<std::string>& consumed);

// The tower: pixels [B, 3, R, R] (in the graph's dtype) -> image embeddings [B, E]. row0 is an
// i32 input [B] of zeros (the pooled token's row). With `stages`, the output of the stem and
// of each stage ([B, H, W, C]) is listed under its name ("stem", "layer1" .. "layer4").
Value build_resnet(Graph& g, Value px, Value row0, const ModelConfig& c,
                   const std::function<Value(const std::string&)>& W,
                   std::vector<std::pair<std::string, Value>>* stages = nullptr);

}  // namespace clip
