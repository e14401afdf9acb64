// CLIP checkpoints in every format people have, read without Python (the formats are
// weights/formats.h), made canonical and checked against the model they describe, and our
// own fast-loading native file.
//
// Formats read by load_weights (detected from the content, not the name):
//   native               our file (see save_native): mmapped, zero copy
//   openai-torchscript   OpenAI's released .pt (a TorchScript zip: data.pkl + data/<key>)
//   state-dict           torch.save(state_dict) zip, incl. {"state_dict": ...} wrappers and
//                        `module.` prefixes (open_clip checkpoints); pytorch_model.bin
//   safetensors          one .safetensors file, OpenAI or Hugging Face names
//   hf                   a Hugging Face CLIPModel directory: config.json, model.safetensors
//                        (or sharded model-0000N-of-0000M.safetensors + index, or
//                        pytorch_model.bin), preprocessor_config.json, vocab.json, merges.txt
//
// Whatever the source, the result holds the canonical tensors: OpenAI's state_dict names and
// layouts (HF q/k/v concatenated into in_proj, HF projections transposed back to [W, E]),
// in OpenAI's key order, in the source dtype, bit-identical across formats. The three int
// buffers of OpenAI's files (input_resolution, context_length, vocab_size) are dropped.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "clip/config.h"
#include "core/base.h"
#include "core/shape.h"
#include "weights/formats.h"

namespace clip {

// A canonical tensor: OpenAI's name, host memory owned by Weights::storage.
using WeightTensor = weights_detail::NamedTensor;

struct Weights {
  std::string path;    // what was loaded
  std::string format;  // "native", "openai-torchscript", "state-dict", "safetensors", "hf"
  ModelConfig config;
  PreprocessConfig preprocess;
  bool has_vocab = false;
  BpeVocab vocab;
  bool has_sp = false;  // a SentencePiece tokenizer (SigLIP) instead of a BPE vocabulary
  SpVocab sp;
  // open_clip's text_cfg.hf_tokenizer_name: the tokenizer is that SentencePiece model (its
  // spiece.model beside the weights), cleaned as open_clip's 'canonicalize'.
  std::string open_clip_tokenizer;
  float logit_scale = 0;  // the raw parameter (log scale), as stored
  float logit_bias = 0;   // config.logit_bias: SigLIP's, as stored
  // What the loader assumed because neither the file nor a config beside it says (a head
  // count, the activation), one line each naming what settles it; the tools print them.
  std::vector<std::string> notes;
  // Tensors of the file the embeddings do not use and that were left unread (CoCa's decoder).
  std::vector<std::string> skipped;
  std::vector<WeightTensor> tensors;  // canonical names, canonical order
  std::shared_ptr<void> storage;      // keeps the mmap / extracted buffers alive
  // The read-only file mappings tensors may point into (zero-copy formats). Their pages can
  // be dropped from memory at any time (release_file_pages) and are read again on access.
  std::vector<std::pair<const void*, size_t>> file_regions;

  // Drops the resident pages that lie wholly inside [p, p + n) and inside a file region from
  // this process's memory (the file is not changed; a later read pages them in again).
  // Memory outside the file regions is left alone. Returns the bytes released.
  size_t release_file_pages(const void* p, size_t n) const;
  const WeightTensor& get(const std::string& name) const;  // throws clip::Error
  const WeightTensor* find(const std::string& name) const;
  size_t total_bytes() const;
};

struct LoadOptions {
  // Overrides the activation from the file / config files. State dicts carry no activation;
  // without a config beside them they are read as quick_gelu (OpenAI's models).
  std::optional<Act> activation;
  // Reads config.json / open_clip_config.json beside a state dict or .safetensors file.
  bool use_side_config = true;
};

// path: a file, a directory, or hf-hub:ORG/NAME[@REV] (resolve_model_path).
Weights load_weights(const std::string& path, const std::string& vocab_path = "");
Weights load_weights(const std::string& path, const std::string& vocab_path,
                     const LoadOptions& opts);
// hf-hub:ORG/NAME[@REV]: the snapshot directory in the local Hugging Face cache ($HF_HUB_CACHE,
// $HF_HOME/hub, ~/.cache/huggingface/hub), or an error naming every path tried; any other path
// as given.
std::string resolve_model_path(const std::string& path);

// Writes our native file:
//   "CLIPENG\0" | u32 version | u64 header length | JSON header | pad | tensor data
// The JSON header holds the config (incl. activation and eps), logit scale, preprocessing
// constants, the tokenizer (tokens in id order and merges), and the tensor table (name,
// dtype, shape, offset from the data start, nbytes). The data start and every tensor are
// aligned to 64 bytes. Tensors are converted to `dtype` (f16, bf16 or f32).
void save_native(const Weights& w, const std::string& out_path, DType dtype);

// Text for `clip info`: format, config, tensor count, dtypes, total bytes.
std::string describe(const Weights& w);
// The same as JSON (for `clip info --json`).
std::string describe_json(const Weights& w);

// The canonical tensor names and shapes for a config, in canonical order.
std::vector<std::pair<std::string, Shape>> canonical_tensors(const ModelConfig& c);

namespace checkpoint_detail {  // for the tests and fuzz targets
// Sane, consistent config values; throws naming `file`.
void check_config(const ModelConfig& c, const std::string& file);
// w.tensors are exactly canonical_tensors(w.config), in order; the vocab fits the config.
void check_canonical(const Weights& w);
// HF CLIPModel names -> OpenAI names (q/k/v concatenated, projections transposed).
// Tensors already under OpenAI names pass through. Drops ignorable buffers. (clip/hf_names.cpp)
void map_hf_names(weights_detail::RawSet& set, const std::string& file);
// timm towers of open_clip checkpoints (visual.trunk.*: SigLIP's) -> canonical names, and a
// linear text projection (text_projection.weight) transposed to [W, E]; true when the set held a
// timm tower. (clip/hf_names.cpp)
bool map_timm_names(weights_detail::RawSet& set, const std::string& file);
// HF mapping, `module.` prefixes, config inference and the canonical checks, with no config
// files or options (load_weights adds those). `set` keeps owning the memory.
Weights canonical_weights(weights_detail::RawSet& set, const std::string& path);
// A native file in memory as Weights (tensors point into `data`; storage is not set).
Weights parse_native_weights(const void* data, size_t size, const std::string& name);
}  // namespace checkpoint_detail

}  // namespace clip
