// Model, preprocessing and vocabulary descriptions shared by the weights readers, the
// tokenizer, image preprocessing and the model.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/act.h"

namespace clip {

// The image tower's architecture family.
enum class VisionFamily : uint8_t {
  vit,     // VisionTransformer: ViTConfig
  resnet,  // OpenAI's ModifiedResNet: ResNetConfig
  siglip,  // SigLIP's vision transformer (no class token, MAP head): ViTConfig
};
const char* vision_family_name(VisionFamily f);  // "ViT", "ResNet", "SigLIP"

// OpenAI's VisionTransformer: a patch convolution (patch_size, no bias), a class token and
// positions, ln_pre, `layers` pre-LN blocks of `heads` heads and MLP width `mlp`, ln_post on
// the class token, a projection to embed_dim.
//
// open_clip's variants (vision_cfg): no ln_pre (no_ln_pre), and the embedding pooled as the
// mean of the patch tokens (pool_type "avg"; the class token is left out), with ln_post on
// all tokens before the mean or on the mean (final_ln_after_pool). CoCa's attentional pooler
// (attentional_pool): learned queries [attn_pool_queries, pool_width] attend over ln_k of all
// tokens (attn_pool_heads heads, keys and values projected from the width to pool_width), then
// out_proj and ln_post (of pool_width); the embedding is the first query's row, projected.
//
// SigLIP's tower (VisionFamily::siglip, clip/siglip.cpp) reads patch_size, width, layers,
// heads and mlp: a patch convolution with a bias, positions without a class token, the blocks,
// a final LayerNorm and the MAP head (a learned probe attending over all tokens with `heads`
// heads, then probe + MLP(LayerNorm(probe)), MLP width mlp); the embedding is its output, of the
// width (no projection).
enum class ViTPool : uint8_t { token, avg };
struct ViTConfig {
  int patch_size = 0;
  int width = 0;
  int layers = 0;
  int heads = 0;
  int mlp = 0;
  bool ln_pre = true;
  ViTPool pool = ViTPool::token;
  bool ln_after_pool = false;
  int attn_pool_heads = 0;  // 0: no attentional pooler
  int attn_pool_queries = 0, pool_width = 0;
};
const char* vit_pool_name(ViTPool p);  // "tok", "avg" (open_clip's names)

// OpenAI's ModifiedResNet (clip/model.py): a stem of three 3x3 convolutions (width/2,
// width/2, width channels; the first with stride 2) and a 2x2 average pool; four stages of
// Bottleneck blocks, stage i with planes = width 2^i and 4 planes output channels (the first
// block of stages 2-4 downsamples by 2); an attention pool over the (resolution / 32)² + 1
// tokens of width 32 width, with `heads` heads (OpenAI: width 32 / 64), projecting to
// embed_dim.
struct ResNetConfig {
  int width = 0;
  int layers[4] = {0, 0, 0, 0};
  int heads = 0;
  int pool_width() const { return 32 * width; }
};

// The text Transformer: token embedding and positions, `layers` pre-LN causal blocks, ln_final
// at the end-of-text token, a projection to embed_dim.
//
// open_clip's variants (text_cfg): pooled at the first or the last position of the context
// instead of the end-of-text token (pool_type "first", "last"), and bidirectional attention
// (no_causal_mask), which then runs over the whole context, padding included. CoCa's embed_cls:
// a learned class row appended after the context_length tokens (positions context_length + 1),
// which attends only to position 0 and the positions after a token that is not pad_id (open_clip's
// build_cls_mask); the text is pooled there.
enum class TextPool : uint8_t { argmax, first, last };
struct TextConfig {
  int context_length = 0;
  int vocab_size = 0;
  int width = 0;
  int layers = 0;
  int heads = 0;
  int mlp = 0;
  TextPool pool = TextPool::argmax;
  bool causal = true;
  bool embed_cls = false;
  int pad_id = 0;
  // SigLIP: the projection is a linear layer with a bias (open_clip's proj_bias, HF's head), or
  // absent (open_clip's proj_type "none": the embedding is the pooled row).
  bool proj = true, proj_bias = false;
};
const char* text_pool_name(TextPool p);  // "argmax", "first", "last" (open_clip's names)

// Hyperparameters of one CLIP model, as inferred from a checkpoint (names follow OpenAI's
// CLIP() arguments). MLP widths are stored, not assumed to be 4x. The image tower's config
// is the one of its family (the other is all zeros).
struct ModelConfig {
  int embed_dim = 0;
  int image_resolution = 0;
  VisionFamily vision_family = VisionFamily::vit;
  ViTConfig vit;        // vision_family vit
  ResNetConfig resnet;  // vision_family resnet
  TextConfig text;
  float layer_norm_eps = 1e-5f;
  Act activation = Act::quick_gelu;
  // SigLIP: a learned logit bias; pairs score sigmoid(exp(logit_scale) cos + logit_bias), each
  // on its own, instead of a softmax over the texts.
  bool logit_bias = false;
};

// How an image becomes resolution x resolution: shortest (OpenAI's: the short side to the
// resolution, then a center crop), squash (both sides to it, no crop: open_clip's
// resize_mode "squash", e.g. DFN5B's models) or longest (open_clip's: the long side to it,
// keeping the aspect ratio, then centered on a square of the fill colour).
enum class ResizeMode : uint8_t { shortest, squash, longest };
const char* resize_mode_name(ResizeMode m);  // "shortest", "squash", "longest"

// Image preprocessing constants (OpenAI's by default).
struct PreprocessConfig {
  int resolution = 224;
  float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  std::string interpolation = "bicubic";
  ResizeMode resize_mode = ResizeMode::shortest;
  int fill = 0;  // longest: the padding, every channel of the decoded mode (open_clip's fill_color)
  // Hugging Face's image processors (do_convert_rgb): convert("RGB") before the resize, which
  // then runs on RGB (torchvision's transforms resize in the decoded mode and convert after).
  bool convert_first = false;
};

// A byte-level BPE vocabulary: tokens in id order (49408 for CLIP, the special tokens
// included) and the merges in rank order.
struct BpeVocab {
  std::vector<std::string> tokens;
  std::vector<std::pair<std::string, std::string>> merges;
};

// A SentencePiece tokenizer (clip/tokenizer_sp.cpp): the model file's bytes (SigLIP's
// spiece.model, SigLIP 2's Gemma tokenizer.model) and the Hugging Face tokenizer class whose
// ids are reproduced, with the tokenizer_config.json flags that change them.
//   siglip  SiglipTokenizer: lower-cased (do_lower_case), punctuation removed, whitespace
//           collapsed; </s> appended; padded with </s> to the context (truncated to fit)
//   gemma   GemmaTokenizer: no text normalization; <bos> / <eos> as add_bos / add_eos say;
//           padded with <pad> to the context (truncated to fit)
enum class SpStyle : uint8_t { siglip, gemma };
const char* sp_style_name(SpStyle s);  // "siglip", "gemma"
struct SpVocab {
  std::string model;  // the serialized ModelProto: the file's bytes
  SpStyle style = SpStyle::siglip;
  bool lower = true;  // siglip: do_lower_case
  bool add_bos = true, add_eos = false;  // gemma: add_bos_token, add_eos_token
  // siglip: open_clip's HFTokenizer with clean='canonicalize' first (ftfy.fix_text, html.unescape
  // twice, "_" as a space, string.punctuation removed, lower-cased, whitespace collapsed): the
  // tokenizer of open_clip's SigLIP configs.
  bool open_clip_clean = false;
};

// Reads a vocabulary from OpenAI's bpe_simple_vocab_16e6.txt.gz, from a vocab.json with
// merges.txt beside it, or from a directory holding vocab.json + merges.txt.
// Throws clip::Error naming the file on anything malformed. (clip/tokenizer.cpp)
BpeVocab load_bpe_vocab(const std::string& path);

}  // namespace clip
