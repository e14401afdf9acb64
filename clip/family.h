// Image-tower families: everything the engine knows about one family in one table entry,
// defined in the family's own file (clip/vit.cpp, clip/resnet.cpp). The loader, the model,
// the architectures and `clip info` reach a family only through its entry, so a new family
// is one new file, one entry in vision_families() and its tests.
//
// A checkpoint's family is picked from its tensors' names (detect), then the family reads
// its tower config from the tensors' shapes (infer), lists the tensors that config needs
// (tensors), checks it (check), and builds the tower's graph (build).
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "clip/checkpoint.h"
#include "clip/config.h"
#include "engine/graph.h"

namespace clip {

// The checkpoint's tensors by canonical name (after the HF mapping and `module.` prefixes).
using TensorIndex = std::map<std::string, const weights_detail::RawTensor*>;

// What a side config (open_clip's model config, HF's config.json) says about the model. Heads
// come as a count (HF) or as a head width (open_clip), which only the family turns into a
// count; `expect` holds the sizes the tensors must then show, by key ("vision_cfg.width").
struct SideConfig {
  std::optional<Act> activation;
  std::optional<float> eps;
  std::optional<int> text_heads, vision_heads, vision_head_width;
  std::optional<PreprocessConfig> preprocess;  // open_clip's preprocess_cfg
  // open_clip's vision_cfg no_ln_pre, pool_type, final_ln_after_pool and text_cfg pool_type,
  // no_causal_mask (set: an open_clip config said so or holds the default).
  std::optional<bool> vision_no_ln_pre;
  ViTPool vision_pool = ViTPool::token;
  bool vision_ln_after_pool = false;
  TextPool text_pool = TextPool::argmax;
  bool text_causal = true;
  // CoCa: vision_cfg attentional_pool, attn_pooler_heads; text_cfg embed_cls, pad_id.
  bool vision_attn_pool = false;
  std::optional<int> vision_attn_pool_heads;
  bool text_embed_cls = false;
  int text_pad_id = 0;
  // open_clip's SigLIP configs: a timm SigLIP image tower (vision_cfg.timm_model_name), the
  // logit bias (init_logit_bias), the text projection's kind (proj_type, proj_bias) and the
  // tokenizer (hf_tokenizer_name with tokenizer_kwargs clean 'canonicalize').
  bool timm_siglip = false;
  std::optional<bool> logit_bias, text_proj, text_proj_bias;
  std::string hf_tokenizer_name;
  std::map<std::string, int64_t> expect;
  std::string file;
};

// A folded or restacked f32 tensor the graph reads instead of checkpoint tensors (clip/resnet.h).
struct DerivedTensor {
  std::string name;
  Shape shape;
  std::vector<float> data;
};

using WeightFn = std::function<Value(const std::string&)>;  // canonical name -> graph weight
using Stages = std::vector<std::pair<std::string, Value>>;  // named intermediate outputs

struct VisionFamilyDef {
  VisionFamily id;
  const char* name;  // "ViT", "ResNet", "SigLIP"
  // True when the tensors hold this family's image tower.
  bool (*detect)(const TensorIndex& by);
  // The tower's config and c.image_resolution from the tensors' shapes; throws naming `path`
  // and the tensor. Side-config heads win over the family's default; an assumption made
  // without them goes to `notes` (one line each, naming what settles it).
  void (*infer)(const TensorIndex& by, const SideConfig& sc, ModelConfig& c, const std::string& path,
                std::vector<std::string>& notes);
  // Sane, consistent tower values; throws naming `file`.
  void (*check)(const ModelConfig& c, const std::string& file);
  // The tower's canonical tensors, in OpenAI's state_dict order.
  void (*tensors)(const ModelConfig& c, std::vector<std::pair<std::string, Shape>>& v);
  // The tower's sizes under the side-config keys they may be stated by.
  void (*stated)(const ModelConfig& c, std::map<std::string, int64_t>& got);
  // The "model:" and "vision:" lines of `clip info`, and a one-line summary (`clip bench`).
  std::string (*describe)(const ModelConfig& c);
  std::string (*summary)(const ModelConfig& c);
  // Multiply-add FLOPs of one image (clip/arch.h), and the tokens its attention runs over.
  double (*flops)(const ModelConfig& c);
  int64_t (*tokens)(const ModelConfig& c);
  // Tensors computed once at load that the graph reads instead of the checkpoint's
  // (`consumed` gets those they replace); nullptr when the family reads the checkpoint as is.
  std::vector<DerivedTensor> (*derive)(const Weights& w, std::vector<std::string>& consumed);
  // The tower: pixels [B, 3, R, R] in the graph's dtype -> image embeddings [B, E]. row [B]
  // is the i32 input of the pooled row (0 for every item). With `stages`, named intermediate
  // outputs (a family without them refuses).
  Value (*build)(Graph& g, Value px, Value row, const ModelConfig& c, const WeightFn& W, Stages* stages);
};

const VisionFamilyDef& vit_family();     // clip/vit.cpp
const VisionFamilyDef& resnet_family();  // clip/resnet.cpp
const VisionFamilyDef& siglip_family();  // clip/siglip.cpp
const std::vector<const VisionFamilyDef*>& vision_families();
const VisionFamilyDef& vision_family(VisionFamily f);

// Shared by the families' loaders (clip/checkpoint.cpp): dimension i of tensor `name`, which
// must exist with nd dims (throws naming the file and the tensor); the number of numbered
// blocks under `prefix` ("visual.layer1." -> 1 + the highest index).
int tensor_dim(const TensorIndex& by, const char* name, int i, int nd, const std::string& path);
int layer_count(const TensorIndex& by, const std::string& prefix, const std::string& path);
// The heads of an image tower whose attention is `width` wide: the side config's count, else
// width / its head width, else width / 64 (OpenAI's).
int vision_heads(const SideConfig& sc, int width);
// The patch, width, heads, MLP and layer counts of a ViTConfig in range, the resolution a
// multiple of the patch and the width of the heads (the ViT and SigLIP families); throws naming file.
void check_vit_sizes(const ModelConfig& c, const std::string& file, bool drops_edge = false);
// A weight's values in f32 (for the tensors a family derives at load).
std::vector<float> tensor_f32(const WeightTensor& t);
// The tensors of `layers` residual attention blocks of width w and MLP width m under prefix.
void transformer_tensors(const std::string& prefix, int layers, int64_t w, int64_t m,
                         std::vector<std::pair<std::string, Shape>>& v);

// The residual stream of a transformer (clip/model.cpp): each block's output projections add
// their result onto x inside the GEMM (linear's residual operand).
struct Stream {
  Value x;
};
// One pre-LN residual block, shared by the ViT and the text tower; with pool [B] (the last
// block), only row pool[b] of each item is kept after attention (see clip/family.cpp); with
// cls_keep [B, T] (CoCa's text), the last row's attention sees only the keys it marks.
void transformer_block(Graph& g, Stream& s, const std::string& prefix, const WeightFn& W, int heads, bool causal,
                       float eps, Act act, Value pool = kNoValue, Value cls_keep = kNoValue);

}  // namespace clip
