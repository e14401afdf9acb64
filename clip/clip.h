// The CLIP library API: load a model from any supported checkpoint, tokenize, preprocess,
// encode images and texts, and score them. The `clip` tool uses only this; it includes the
// shared vocabulary (core/) and the model's descriptions (clip/config.h, image.h,
// tokenizer.h), never the engine or the weights readers, which stay behind Model.
//
//   clip::ModelOptions opts;
//   opts.vocab_path = "bpe_simple_vocab_16e6.txt.gz";
//   auto m = clip::Model::load("ViT-B-32.pt", opts);
//   auto img = m->encode_image_files({"cat.jpg"});      // [1, E], not normalized
//   auto txt = m->encode_texts({"a photo of a cat"});    // [1, E]
//   auto logits = m->logits(img, txt);                   // [1, 1] = logit_scale * cos
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "clip/config.h"
#include "clip/image.h"
#include "clip/tokenizer.h"
#include "core/base.h"
#include "core/profile.h"
#include "core/tensor.h"

namespace clip {

struct ModelOptions {
  Device device = Device::cpu;
  DType dtype = DType::f32;           // compute dtype: f32 or bf16 on CPU (bf16: the linear
                                      // layers multiply in bf16, see engine/cpu_gemm.h);
                                      // f32, f16 or bf16 on CUDA
  std::string vocab_path;             // tokenizer for checkpoints that carry none
  std::optional<Act> activation;      // override the activation inferred from the checkpoint
  int max_batch = 64;                 // encode_* split larger inputs into chunks of this size
                                      // (the tool passes default_batch_size(device))
  bool trim_text = true;              // run texts only up to the batch's last end-of-text
  size_t memory_limit = 0;            // activation arena limit in bytes (0: none); over it, or
                                      // out of GPU memory, a batch is split and retried
};

// Items per batch when none is given: 64 on the CPU, 256 on CUDA (the tool's --batch-size
// default, the pipeline's batch size).
int default_batch_size(Device device);

// "auto" device: CUDA when a GPU is present. "auto" dtype: f32 on CPU, f16 on CUDA.
Device parse_device(const std::string& s);
DType parse_compute_dtype(const std::string& s, Device device);

struct Weights;  // clip/checkpoint.h: a checkpoint read and made canonical

// A model on one device: the weights converted once, graphs compiled per batch shape and
// kept. The implementation (clip/model.cpp) is behind this interface.
class Model {
 public:
  static std::unique_ptr<Model> load(const std::string& path, const ModelOptions& opts = {});
  // A named architecture (clip/arch.h's names: "ViT-B-32", "RN50", ...) with deterministic
  // random weights, made directly in the dtype the graphs use: no download.
  static std::unique_ptr<Model> random(const std::string& arch, uint64_t seed, const ModelOptions& opts = {});
  // A model from weights already in memory (e.g. clip/arch.h's random_weights).
  static std::unique_ptr<Model> from_weights(Weights&& weights, const ModelOptions& opts = {});
  virtual ~Model() = default;

  virtual const ModelConfig& config() const = 0;
  // What loading assumed because the checkpoint and the configs beside it do not say (a head
  // count, the activation): one line each, naming the config field or flag that settles it.
  // The clip tool prints them to stderr as it loads.
  virtual const std::vector<std::string>& notes() const = 0;
  virtual const PreprocessConfig& preprocess_config() const = 0;
  virtual Device device() const = 0;
  virtual DType dtype() const = 0;
  int embed_dim() const { return config().embed_dim; }
  // exp(logit_scale), clamped at 100 as the reference clamps it (SigLIP's: not clamped).
  virtual float logit_scale() const = 0;
  // SigLIP: its learned logit bias (logits = logit_scale * cos + logit_bias), and its pairs
  // score sigmoid(logit) each on its own rather than a softmax over the texts.
  bool sigmoid_scores() const { return config().logit_bias; }
  virtual float logit_bias() const = 0;  // 0 for a softmax model
  // Writes the weights as our native file in `dtype` (f16, bf16 or f32).
  virtual void save_native(const std::string& path, DType dtype) const = 0;

  virtual bool has_tokenizer() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;  // throws when the checkpoint carried no vocabulary

  // Tokens [B, context_length] -> text embeddings [B, E] (not normalized). Each batch runs
  // only up to its longest end-of-text position: exact under the causal mask. More texts than
  // one batch are batched by length (rows still come back in input order).
  virtual HostTensor encode_tokens(const int32_t* tokens, int64_t B) = 0;
  virtual HostTensor encode_texts(const std::vector<std::string>& texts) = 0;
  // Image bytes [B, R, R, 3] (RGB, resized and cropped: what preprocess_file writes) -> image
  // embeddings [B, E] (not normalized). The model normalizes them (ToTensor + Normalize) on its
  // device, so a GPU gets a quarter of the bytes that f32 pixels would be.
  virtual HostTensor encode_rgb8(const uint8_t* rgb, int64_t B) = 0;
  // Pixels [B, 3, R, R] (already normalized, as the reference's preprocess returns them) ->
  // image embeddings [B, E] (not normalized).
  virtual HostTensor encode_pixels(const float* pixels, int64_t B) = 0;
  virtual HostTensor encode_image_files(const std::vector<std::string>& paths) = 0;  // throws on the first bad file
  // A ResNet tower's intermediate outputs for pixels [B, 3, R, R]: ("embedding", [B, E]), then
  // "stem" and "layer1" .. "layer4" as [B, H, W, C] (channels last). Throws for a ViT.
  virtual std::vector<std::pair<std::string, HostTensor>> encode_pixels_staged(const float* pixels, int64_t B) = 0;
  // Decodes, resizes and center-crops one image file into out [R, R, 3] RGB bytes.
  virtual void preprocess_file(const std::string& path, uint8_t* out) const = 0;
  // The same for an image already in memory (name: what errors call it); bitwise what
  // preprocess_file gives for a file holding these bytes.
  virtual void preprocess_bytes(const uint8_t* data, size_t size, const std::string& name, uint8_t* out) const = 0;
  // preprocess_file on a pool of threads: one [R, R, 3] slot per path, and per path the error
  // ("" when it decoded).
  struct Pixels {
    std::vector<uint8_t> data;
    std::vector<std::string> errors;
  };
  virtual Pixels preprocess_files(const std::vector<std::string>& paths) const = 0;
  int64_t pixels_per_image() const {  // 3 R R: floats of encode_pixels, bytes of encode_rgb8
    const int64_t r = config().image_resolution;
    return 3 * r * r;
  }

  // logit_scale * cos(image_i, text_j) + logit_bias: [I, T].
  virtual HostTensor logits(const HostTensor& image_emb, const HostTensor& text_emb) const = 0;

  // From now on every encoder pass adds its per-op times to p (nullptr: stop).
  virtual void set_profile(OpProfile* p) = 0;
  // Device seconds of all encoder passes so far: on CUDA, from each pass's first kernel to
  // its last, without the input and output copies (what a caller whose inputs were already
  // on the GPU would wait); 0 on the CPU.
  virtual double device_seconds() const = 0;

  // Graphs compiled and kept (tower, batch size, tokens) and their planned arena bytes.
  virtual std::vector<std::tuple<std::string, int64_t, int64_t, size_t>> compiled_graphs() const = 0;
};

// What a checkpoint holds, without running it (`clip info`, `clip convert`, `clip tokenize`).
struct CheckpointOptions {
  std::string vocab_path;         // a tokenizer to attach
  std::optional<Act> activation;  // overrides the activation from the file / config files
};
// Format, config, preprocessing, tokenizer and tensor summary as text, or as JSON with the
// full tensor table.
std::string describe_checkpoint(const std::string& path, const CheckpointOptions& opts = {}, bool json = false);
struct Converted {
  std::string format;  // the source's
  size_t tensors = 0;
  DType dtype = DType::f32;  // written
  bool has_vocab = false;
};
// Reads any supported checkpoint and writes our native file in `dtype` (default: the
// source's weight dtype).
Converted convert_checkpoint(const std::string& src, const std::string& out, const CheckpointOptions& opts = {},
                             std::optional<DType> dtype = std::nullopt);
// The tokenizer vocabulary a checkpoint carries and its context length; nullopt when it
// carries none.
struct CheckpointVocab {
  BpeVocab vocab;
  bool has_sp = false;  // a SentencePiece tokenizer (SigLIP) instead of vocab
  SpVocab sp;
  int context_length = 0;
};
std::optional<CheckpointVocab> checkpoint_vocab(const std::string& path);

// Named architectures (clip/arch.h): their names, and the multiply-add FLOPs of one image or
// one text of `tokens` tokens.
std::vector<std::string> arch_names();
double image_flops(const ModelConfig& c);
double text_flops(const ModelConfig& c, int64_t tokens);
// The tokens the image tower's attention runs over (a ViT's patches and class token, a
// ResNet's final feature vectors and their mean), and the tower in one line.
int64_t image_tokens(const ModelConfig& c);
std::string vision_summary(const ModelConfig& c);

// For each of M queries [M, D], the k rows of index [N, D] with the highest cosine, best
// first, ties to the lower index, as idx [M, k] and score [M, k]; exact either way (f32
// scores; near-ties within the last bit may order differently between the two paths). On
// CUDA (k <= 16, D <= 4096) the fused GPU top-k over f16 copies finds 32 candidates per query, which
// cosine_topk_refine makes exact; otherwise the blocked CPU top-k. Host pointers either way.
void cosine_topk(int32_t* idx, float* score, const float* queries, int64_t M, const float* index, int64_t N,
                 int64_t D, int64_t k, Device device);

// The exact top k of each of M queries from its kk >= k best candidates by an approximate
// score: cand [M, kk] and cand_score [M, kk], best first, where the approximate score of every
// row not in exact_rows is within eps of the exact cosine (an f16 search: rounding moves a
// cosine by up to ~2^-10). The candidates and exact_rows are rescored in f32 and sorted. A
// query is searched on the CPU instead, all such queries in one batch, when its k-th exact
// score does not beat the best any other row could have (its last candidate's approximate
// score + 2 eps), when its candidates are not valid (outside [0, N), or a last score that is
// not finite), or when it has no direction itself. Returns how many queries went to the CPU.
int64_t cosine_topk_refine(int32_t* idx, float* score, const float* queries, int64_t M, const float* index,
                           int64_t N, int64_t D, int64_t k, const int32_t* cand, const float* cand_score, int64_t kk,
                           const std::vector<int32_t>& exact_rows, double eps);

// Rows of x [N, D] that an f16 copy of the normalized rows does not score as the CPU does:
// a norm above 0 but below 1e-12 (which l2_normalize_cpu does not scale to 1), or not finite.
// Zero rows score 0 either way and are not listed.
std::vector<int32_t> rows_without_direction(const float* x, int64_t N, int64_t D);

// Row-wise L2 normalization of a host [N, D] tensor.
HostTensor normalize_rows(const HostTensor& x);
// The same and a row-wise softmax on host floats [N, D] (out may be x): the CPU backend's own
// functions, so the numbers are the ones the model's outputs are normalized with.
void l2_normalize_rows(float* out, const float* x, int64_t N, int64_t D);
void softmax_rows(float* out, const float* x, int64_t N, int64_t D);

// What the CPU backend runs on this machine, as (key, value) pairs in print order: the CPU's
// features, the instruction set of the engine's own loops (and whether CLIP_CPU_ISA capped
// it), and what runs the linear layers in f32 and bf16.
std::vector<std::pair<std::string, std::string>> cpu_backend_info();
// One line: the instruction set of the CPU backend's loops and what runs its linear layers
// in `dtype` ("cpu isa avx512; linear layers: oneDNN ...").
std::string cpu_backend_line(DType dtype);

// The peak FLOP/s a throughput is compared with (`clip bench`), and how it was found: on the
// CPU, f32 measured (every thread running FMA chains for 0.2 s; the nominal cores x clock x
// FMA units x lanes x 2 beside it), bf16 nominal (AMX or AVX512-BF16 where oneDNN runs the
// linear layers in bf16); on CUDA, SM count x clock x dense FLOP per clock per SM (tensor
// cores for f16/bf16: 4096 on sm_90, 2048 on sm_80; FP32 lanes x 2 for f32).
// override_gflops > 0 is used as the peak instead (how: "given"), with nothing measured.
// The memory bandwidth beside it (the roofline of `clip bench --profile`): on the CPU
// measured (every thread copying a buffer larger than the caches for 0.1 s), on CUDA 2 x
// memory clock x bus width.
struct DevicePeak {
  double gflops = 0;
  std::string how, device;
  double gbytes_per_s = 0;
  std::string bandwidth_how;
};
DevicePeak device_peak(Device device, DType dtype, double override_gflops = 0);

}  // namespace clip
