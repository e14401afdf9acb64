// The CLIP library API: load a model from any supported checkpoint, tokenize, preprocess,
// encode images and texts, and score them. The `clip` tool and the tests use only this.
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
#include "engine/graph.h"
#include "engine/tensor.h"
#include "weights/weights.h"

namespace clip {

struct ModelOptions {
  Device device = Device::cpu;
  DType dtype = DType::f32;           // compute dtype: f32 or bf16 on CPU (bf16: the linear
                                      // layers multiply in bf16, see engine/cpu_gemm.h);
                                      // f32, f16 or bf16 on CUDA
  std::string vocab_path;             // tokenizer for checkpoints that carry none
  std::optional<Act> activation;      // override the activation inferred from the checkpoint
  int max_batch = 64;                 // encode_* split larger inputs into chunks of this size
  bool trim_text = true;              // run texts only up to the batch's last end-of-text
  size_t memory_limit = 0;            // activation arena limit in bytes (0: none); over it, or
                                      // out of GPU memory, a batch is split and retried
};

// "auto" device: CUDA when a GPU is present. "auto" dtype: f32 on CPU, f16 on CUDA.
Device parse_device(const std::string& s);
DType parse_compute_dtype(const std::string& s, Device device);

class CudaContext;
class CpuContext;
struct DerivedTensor;  // clip/resnet.h

class Model {
 public:
  static std::unique_ptr<Model> load(const std::string& path, const ModelOptions& opts = {});
  // A model from weights already in memory (e.g. random weights of a named architecture).
  static std::unique_ptr<Model> from_weights(Weights weights, const ModelOptions& opts = {});
  ~Model();

  const ModelConfig& config() const { return weights_.config; }
  const PreprocessConfig& preprocess_config() const { return weights_.preprocess; }
  const Weights& weights() const { return weights_; }
  Device device() const { return opts_.device; }
  DType dtype() const { return opts_.dtype; }
  int embed_dim() const { return weights_.config.embed_dim; }
  // exp(logit_scale), clamped at 100 as the reference clamps it.
  float logit_scale() const;

  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  const Tokenizer& tokenizer() const;  // throws when the checkpoint carried no vocabulary

  // Tokens [B, context_length] -> text embeddings [B, E] (not normalized). Each batch runs
  // only up to its longest end-of-text position: exact under the causal mask. More texts than
  // one batch are batched by length (rows still come back in input order).
  HostTensor encode_tokens(const int32_t* tokens, int64_t B);
  HostTensor encode_texts(const std::vector<std::string>& texts);
  // Image bytes [B, R, R, 3] (RGB, resized and cropped: what preprocess_file writes) -> image
  // embeddings [B, E] (not normalized). The model normalizes them (ToTensor + Normalize) on its
  // device, so a GPU gets a quarter of the bytes that f32 pixels would be.
  HostTensor encode_rgb8(const uint8_t* rgb, int64_t B);
  // Pixels [B, 3, R, R] (already normalized, as the reference's preprocess returns them) ->
  // image embeddings [B, E] (not normalized).
  HostTensor encode_pixels(const float* pixels, int64_t B);
  HostTensor encode_image_files(const std::vector<std::string>& paths);  // throws on the first bad file
  // A ResNet tower's intermediate outputs for pixels [B, 3, R, R]: ("embedding", [B, E]), then
  // "stem" and "layer1" .. "layer4" as [B, H, W, C] (channels last). Throws for a ViT.
  std::vector<std::pair<std::string, HostTensor>> encode_pixels_staged(const float* pixels, int64_t B);
  // Decodes, resizes and center-crops one image file into out [R, R, 3] RGB bytes.
  void preprocess_file(const std::string& path, uint8_t* out) const;
  // preprocess_file on a pool of threads: one [R, R, 3] slot per path, and per path the error
  // ("" when it decoded).
  struct Pixels {
    std::vector<uint8_t> data;
    std::vector<std::string> errors;
  };
  Pixels preprocess_files(const std::vector<std::string>& paths) const;
  int64_t pixels_per_image() const;  // 3 R R: floats of encode_pixels, bytes of encode_rgb8

  // logit_scale * cos(image_i, text_j): [I, T].
  HostTensor logits(const HostTensor& image_emb, const HostTensor& text_emb) const;

  // From now on every encoder pass adds its per-op times to p (nullptr: stop).
  void set_profile(OpProfile* p);
  // Device seconds of all encoder passes so far: on CUDA, from each pass's first kernel to
  // its last, without the input and output copies (what a caller whose inputs were already
  // on the GPU would wait); 0 on the CPU.
  double device_seconds() const { return device_seconds_; }

  // Graphs compiled and kept (tower, batch size, tokens) and their planned arena bytes.
  std::vector<std::tuple<std::string, int64_t, int64_t, size_t>> compiled_graphs() const;

 private:
  Model() = default;
  void prepare_weights();
  // The dtype of the graphs' weights and activations: the compute dtype on CUDA; f32 on the
  // CPU, whose bf16 mode rounds only the operands of the linear layers (CpuContext).
  DType graph_dtype() const { return opts_.device == Device::cpu ? DType::f32 : opts_.dtype; }
  Tensor w(const std::string& name) const;  // prepared weight (device, dtype)
  Graph build_vision(int64_t B, bool rgb8, bool staged = false) const;
  Graph build_text(int64_t B, int64_t T) const;
  Executor& executor(const std::string& tower, int64_t B, int64_t T);
  HostTensor encode_tokens_chunk(const int32_t* tokens, int64_t B);
  HostTensor encode_image_chunk(const void* data, bool rgb8, int64_t B);
  // Runs chunk(b0, nb) over [0, B) in batches of at most batch_limit_; a batch that runs out
  // of memory is retried at half the size, which then stays the limit.
  HostTensor in_batches(int64_t B, const std::function<HostTensor(int64_t, int64_t)>& chunk);
  int64_t batch_limit_ = 0;

  ModelOptions opts_;
  Weights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::map<std::string, Tensor> prepared_;    // canonical name (+ ".T" for transposed) -> tensor
  std::vector<Buffer> storage_;               // owns prepared_ data
  std::vector<DerivedTensor> derived_;        // folded ResNet weights (clip/resnet.h), f32; the CPU reads them in place
  std::unique_ptr<CudaContext> cuda_;
  std::unique_ptr<CpuContext> cpu_;  // linear weights packed once for the CPU backend
  struct Compiled {
    std::unique_ptr<Executor> ex;
    uint64_t last_use = 0;
  };
  static constexpr size_t kMaxExecutors = 8;  // compiled graphs kept (least recently used go)
  std::map<std::tuple<std::string, int64_t, int64_t>, Compiled> executors_;
  uint64_t uses_ = 0;
  OpProfile* profile_ = nullptr;
  double device_seconds_ = 0;
};

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

// What the CPU backend runs on this machine, as (key, value) pairs in print order: the CPU's
// features, the instruction set of the engine's own loops (and whether CLIP_CPU_ISA capped
// it), and what runs the linear layers in f32 and bf16.
std::vector<std::pair<std::string, std::string>> cpu_backend_info();

}  // namespace clip
