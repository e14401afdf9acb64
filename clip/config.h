// Model, preprocessing and vocabulary descriptions shared by the weights readers, the
// tokenizer, image preprocessing and the model.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/cpu_ops.h"  // Act

namespace clip {

// Hyperparameters of one CLIP model, as inferred from a checkpoint (names follow OpenAI's
// CLIP() arguments). MLP widths are stored, not assumed to be 4x.
struct ModelConfig {
  int embed_dim = 0;
  // vision tower
  int image_resolution = 0;
  int vision_patch_size = 0;
  int vision_width = 0;
  int vision_layers = 0;
  int vision_heads = 0;
  int vision_mlp = 0;
  // text tower
  int context_length = 0;
  int vocab_size = 0;
  int text_width = 0;
  int text_layers = 0;
  int text_heads = 0;
  int text_mlp = 0;
  float layer_norm_eps = 1e-5f;
  Act activation = Act::quick_gelu;
};

// Image preprocessing constants (OpenAI's by default).
struct PreprocessConfig {
  int resolution = 224;
  float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  std::string interpolation = "bicubic";
};

// A byte-level BPE vocabulary: tokens in id order (49408 for CLIP, the special tokens
// included) and the merges in rank order.
struct BpeVocab {
  std::vector<std::string> tokens;
  std::vector<std::pair<std::string, std::string>> merges;
};

// Reads a vocabulary from OpenAI's bpe_simple_vocab_16e6.txt.gz, from a vocab.json with
// merges.txt beside it, or from a directory holding vocab.json + merges.txt.
// Throws clip::Error naming the file on anything malformed. (clip/tokenizer.cpp)
BpeVocab load_bpe_vocab(const std::string& path);

}  // namespace clip
