// Named CLIP architectures with OpenAI's published hyperparameters, and random weights of
// any architecture, so benchmarks and tests can run a model of the exact shape without a
// download.
//
//   ModelConfig c = clip::arch_config("ViT-B-32");
//   Weights w = clip::random_weights(c, /*seed=*/1, DType::f32);
//   auto m = clip::Model::from_weights(std::move(w));
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "clip/checkpoint.h"
#include "clip/clip.h"
#include "clip/config.h"

namespace clip {

// "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "RN50", "RN101", "RN50x4", "RN50x16",
// "RN50x64" (a '/' may stand for the first '-': "ViT-B/32"). Throws clip::Error naming the known architectures otherwise.
ModelConfig arch_config(const std::string& name);  // arch_names() in clip/clip.h lists them

// Every canonical tensor of `c` filled with deterministic random values (the same for a
// given seed on every machine and thread count): LayerNorm weights ~ 1 + N(0, 0.02²),
// biases ~ N(0, 0.01²), matrices and the patch convolution ~ N(0, 1/fan_in), embeddings
// ~ N(0, 0.02²) (token) or N(0, 0.01²) (positions, class), logit_scale = log(1/0.07).
// (N is approximated by a scaled sum of four uniforms, bounded at 3.46 sigma: see arch.cpp.)
// The storage is owned by the result (Weights::storage); no tokenizer is attached.
Weights random_weights(const ModelConfig& c, uint64_t seed, DType dtype = DType::f32);

// Multiply-add FLOPs (2 per MAC) of one forward pass for one item, counting the matrix
// products (patch embedding, QKV, attention scores and values, output projection, MLP,
// final projection); LayerNorm, softmax and activations are left out.
//   image: G = (R/P)², T = G + 1 tokens, width W, L layers, MLP width M
//     2·G·3P²·W + L·(2·T·(4W² + 2WM) + 4·T²·W) + 2·W·E
//   text of T tokens (causal: query i attends to i + 1 keys, as the kernels compute it):
//     L·(2·T·(4W² + 2WM) + 2·T·(T+1)·W) + 2·W·E
// A ResNet: 2 k² Ci Co per output pixel of every convolution, plus the attention pool (q, k, v
// of all g² + 1 tokens, scores and values as above, the output projection of the pooled row);
// BatchNorm is folded, pools and ReLUs are left out. RN50: 12.0 GFLOP per image at 224 px
// (10.8 of them convolutions).
// ViT-B/32: image 8.8 GFLOP = 4.4 GMAC (the figure open_clip's tables call "GFLOPs").
// These are the model's FLOPs, which FLOP/s figures are quoted in (as model FLOPs utilization
// is). The engine executes fewer: its last block runs the output projection and MLP on the
// pooled row only (ViT-B/32: 8.30 GFLOP per image, 5.53 per 77-token text).
// (image_flops and text_flops are declared in clip/clip.h.)

}  // namespace clip
