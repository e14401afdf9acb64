// The CLIP model on the engine: both towers built from one transformer-block builder,
// compiled per (tower, batch size, tokens) and cached.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <thread>

#include <omp.h>

#include "clip/arch.h"
#include "clip/checkpoint.h"
#include "clip/clip.h"
#include "clip/family.h"
#include "clip/pipeline.h"
#include "clip/thread_pool.h"
#include "engine/graph.h"
#include "engine/tensor.h"
#include "engine/cpu_gemm.h"
#include "engine/cpu_isa.h"

namespace clip {

Device parse_device(const std::string& s) {
  if (s == "auto") return cuda_available() ? Device::cuda : Device::cpu;
  if (s == "cpu") return Device::cpu;
  if (s == "cuda") {
#ifndef CLIP_HAVE_CUDA
    fail("--device cuda: this build has no CUDA support");
#endif
    CLIP_CHECK(cuda_available(), "--device cuda: no CUDA GPU is available on this machine");
    return Device::cuda;
  }
  fail("unknown device '%s' (expected auto, cpu or cuda)", s.c_str());
}

DType parse_compute_dtype(const std::string& s, Device device) {
  if (s == "auto") return device == Device::cuda ? DType::f16 : DType::f32;
  DType t = dtype_from_name(s);
  CLIP_CHECK(t != DType::i32 && t != DType::u8, "compute dtype must be f32, f16 or bf16, not %s", s.c_str());
  CLIP_CHECK(device == Device::cuda || t != DType::f16,
             "the CPU backend computes in f32 or bf16; --dtype f16 needs --device cuda");
  return t;
}

namespace {

class ModelImpl final : public Model {
 public:
  ModelImpl(Weights&& weights, const ModelOptions& opts);
  ~ModelImpl() override;

  const ModelConfig& config() const override { return weights_.config; }
  const std::vector<std::string>& notes() const override { return weights_.notes; }
  const PreprocessConfig& preprocess_config() const override { return weights_.preprocess; }
  Device device() const override { return opts_.device; }
  DType dtype() const override { return opts_.dtype; }
  float logit_scale() const override;
  float logit_bias() const override { return weights_.config.logit_bias ? weights_.logit_bias : 0.0f; }
  void save_native(const std::string& path, DType dtype) const override { clip::save_native(weights_, path, dtype); }
  bool has_tokenizer() const override { return tokenizer_ != nullptr; }
  const Tokenizer& tokenizer() const override;
  HostTensor encode_tokens(const int32_t* tokens, int64_t B) override;
  HostTensor encode_texts(const std::vector<std::string>& texts) override;
  HostTensor encode_rgb8(const uint8_t* rgb, int64_t B) override;
  HostTensor encode_pixels(const float* pixels, int64_t B) override;
  HostTensor encode_image_files(const std::vector<std::string>& paths) override;
  std::vector<std::pair<std::string, HostTensor>> encode_pixels_staged(const float* pixels, int64_t B) override;
  void preprocess_file(const std::string& path, uint8_t* out) const override;
  void preprocess_bytes(const uint8_t* data, size_t size, const std::string& name, uint8_t* out) const override;
  Pixels preprocess_files(const std::vector<std::string>& paths) const override;
  HostTensor logits(const HostTensor& image_emb, const HostTensor& text_emb) const override;
  void set_profile(OpProfile* p) override;
  double device_seconds() const override { return device_seconds_; }
  std::vector<std::tuple<std::string, int64_t, int64_t, size_t>> compiled_graphs() const override;

 private:
  void prepare_weights();
  // The dtype of the graphs' weights and activations: the compute dtype on CUDA; f32 on the
  // CPU, whose bf16 mode rounds only the operands of the linear layers (CpuContext).
  DType graph_dtype() const { return opts_.device == Device::cpu ? DType::f32 : opts_.dtype; }
  Tensor w(const std::string& name) const;  // prepared weight (device, dtype)
  Graph build_vision(int64_t B, bool rgb8, bool staged = false) const;
  Graph build_text(int64_t B, int64_t T) const;
  // Texts run only up to their batch's last pooled position (causal attention, no CoCa class
  // row after the context).
  bool trims_text() const {
    return opts_.trim_text && weights_.config.text.causal && !weights_.config.text.embed_cls;
  }
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
  // B zeros (i32, on the model's device) per batch size: the class token's row of each image,
  // a constant of the vision graphs rather than an input copied in on every run.
  mutable std::map<int64_t, Buffer> class_rows_;
  Tensor class_rows(int64_t B) const;
  std::vector<DerivedTensor> derived_;        // the family's derived tensors (clip/family.h), f32; the CPU reads them in place
  std::shared_ptr<CudaContext> cuda_;  // engine/graph.h make_cuda_context
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

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path, const ModelOptions& opts) {
  LoadOptions lo;
  lo.activation = opts.activation;
  return from_weights(load_weights(path, opts.vocab_path, lo), opts);
}

std::unique_ptr<Model> Model::random(const std::string& arch, uint64_t seed, const ModelOptions& opts) {
  // On the CPU the graphs read f32; on CUDA the compute dtype.
  const DType wt = opts.device == Device::cpu ? DType::f32 : opts.dtype;
  return from_weights(random_weights(arch_config(arch), seed, wt), opts);
}

std::unique_ptr<Model> Model::from_weights(Weights&& weights, const ModelOptions& opts) {
  return std::make_unique<ModelImpl>(std::move(weights), opts);
}

ModelImpl::ModelImpl(Weights&& weights, const ModelOptions& opts) : opts_(opts), weights_(std::move(weights)) {
  CLIP_CHECK(opts.max_batch >= 1, "max batch must be at least 1, got %d", opts.max_batch);
  if (opts.device == Device::cpu)
    CLIP_CHECK(opts.dtype == DType::f32 || opts.dtype == DType::bf16,
               "the CPU backend computes in f32 or bf16, not %s", dtype_name(opts.dtype));
  batch_limit_ = opts.max_batch;
  if (opts.activation) weights_.config.activation = *opts.activation;
  if (weights_.has_vocab) tokenizer_ = std::make_unique<Tokenizer>(weights_.vocab);
  else if (weights_.has_sp) tokenizer_ = std::make_unique<Tokenizer>(weights_.sp);
#ifdef CLIP_HAVE_CUDA
  if (opts.device == Device::cuda) cuda_ = make_cuda_context(0);
#else
  CLIP_CHECK(opts.device == Device::cpu, "this build has no CUDA support");
#endif
  if (opts.device == Device::cpu) {
    cpu_ = std::make_unique<CpuContext>(opts.dtype);
    // A packed weight is never read from the file again: its mapped pages leave the
    // resident set (ViT-B/32 f32: ~340 MB of the file's 600).
    const Weights& w = weights_;
    cpu_->set_on_packed([&w](const float* p, size_t n) { w.release_file_pages(p, n); });
  }
  prepare_weights();
}

ModelImpl::~ModelImpl() {
  executors_.clear();  // executors reference the CUDA context and prepared weights
}

// OpenAI's and open_clip's softmax models clamp the scale at 100; SigLIP's use it as learned.
float ModelImpl::logit_scale() const {
  const float s = std::exp(weights_.logit_scale);
  return weights_.config.logit_bias ? s : std::min(s, 100.0f);
}

const Tokenizer& ModelImpl::tokenizer() const {
  if (tokenizer_) return *tokenizer_;
  const Weights& w = weights_;
  if (!w.open_clip_tokenizer.empty())
    fail("%s carries no tokenizer: open_clip tokenizes it with transformers' AutoTokenizer '%s'; put that "
         "tokenizer's spiece.model beside the weights", w.path.c_str(), w.open_clip_tokenizer.c_str());
  if (w.config.vision_family == VisionFamily::siglip)
    fail("%s carries no tokenizer: a SigLIP model tokenizes with its SentencePiece model (spiece.model or "
         "tokenizer.model, with tokenizer_config.json, in its directory)", w.path.c_str());
  fail("%s carries no tokenizer vocabulary: pass --vocab (bpe_simple_vocab_16e6.txt.gz or vocab.json)", w.path.c_str());
}

// Every weight is converted once to the compute dtype and placed on the device; the two
// projections are transposed so every matrix product is a linear (x wᵀ). On the CPU, f32
// tensors of the checkpoint (a mapped native file) are used in place; the rest share one
// allocation, which on CUDA is uploaded in one copy.
void ModelImpl::prepare_weights() {
  DType dt = graph_dtype();
  struct Item { std::string name; Shape shape; const WeightTensor* src; bool transpose; size_t off; };
  std::vector<Item> items;
  size_t total = 0;
  // Tensors the family derives at load (a ResNet's convolutions with their BatchNorms folded
  // in, clip/resnet.cpp) are read by the graph instead of the checkpoint's.
  std::vector<std::string> consumed;
  std::vector<WeightTensor> derived_views;
  const VisionFamilyDef& fam = vision_family(weights_.config.vision_family);
  if (fam.derive) derived_ = fam.derive(weights_, consumed);
  const TextConfig& tc = weights_.config.text;
  if (tc.embed_cls) {
    // CoCa's class row, appended after the tokens, is looked up as one more token: id vocab_size
    // of the table with it as the last row.
    const WeightTensor& tok = weights_.get("token_embedding.weight");
    std::vector<float> table = tensor_f32(tok), cls = tensor_f32(weights_.get("cls_emb"));
    table.insert(table.end(), cls.begin(), cls.end());
    derived_.push_back({"token_embedding.weight+cls", Shape{tok.shape[0] + 1, tok.shape[1]}, std::move(table)});
    consumed.push_back("token_embedding.weight");
    consumed.push_back("cls_emb");
  }
  {
    for (const DerivedTensor& d : derived_) {
      WeightTensor v;
      v.name = d.name;
      v.dtype = DType::f32;
      v.shape = d.shape;
      v.data = d.data.data();
      derived_views.push_back(v);
    }
  }
  std::set<std::string> skip(consumed.begin(), consumed.end());
  std::vector<const WeightTensor*> sources;
  for (const auto& t : weights_.tensors)
    if (!skip.count(t.name)) sources.push_back(&t);
  for (const auto& t : derived_views) sources.push_back(&t);
  for (const WeightTensor* tp : sources) {
    const WeightTensor& t = *tp;
    if (t.name == "logit_scale" || t.name == "logit_bias") continue;
    bool tr = t.name == "visual.proj" || t.name == "text_projection";
    if (opts_.device == Device::cpu && !tr && t.dtype == dt) {
      prepared_[t.name] = Tensor(const_cast<void*>(t.data), dt, t.shape, Device::cpu);
      continue;
    }
    Shape s = tr ? Shape{t.shape[1], t.shape[0]} : t.shape;
    items.push_back({tr ? t.name + ".T" : t.name, s, &t, tr, total});
    total += ((size_t)s.numel() * dtype_size(dt) + 255) / 256 * 256;
  }
  Buffer host(total, Device::cpu);
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < items.size(); i++) {
    const auto& it = items[i];
    uint8_t* dst = (uint8_t*)host.data() + it.off;
    int64_t n = it.shape.numel();
    if (!it.transpose) {
      convert_cpu(dst, dt, it.src->data, it.src->dtype, n);
    } else {
      std::vector<float> f((size_t)n), tr((size_t)n);
      convert_cpu(f.data(), DType::f32, it.src->data, it.src->dtype, n);
      int64_t R = it.src->shape[0], C = it.src->shape[1];
      for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) tr[(size_t)(c * R + r)] = f[(size_t)(r * C + c)];
      convert_cpu(dst, dt, tr.data(), DType::f32, n);
    }
  }
  uint8_t* base = (uint8_t*)host.data();
  if (opts_.device == Device::cuda) {
    Buffer dev(total, Device::cuda);
    copy_bytes(dev.data(), Device::cuda, host.data(), Device::cpu, total);
    base = (uint8_t*)dev.data();
    storage_.push_back(std::move(dev));
    // Everything now lives on the GPU: the file's pages and the folded host copies can go.
    for (const auto& [p, n] : weights_.file_regions) weights_.release_file_pages(p, n);
    derived_.clear();
  } else {
    storage_.push_back(std::move(host));
  }
  for (const auto& it : items) prepared_[it.name] = Tensor(base + it.off, dt, it.shape, opts_.device);
}

Tensor ModelImpl::class_rows(int64_t B) const {
  auto it = class_rows_.find(B);
  if (it == class_rows_.end()) {
    const std::vector<int32_t> zeros((size_t)B, 0);
    Buffer b(zeros.size() * sizeof(int32_t), opts_.device);
    copy_bytes(b.data(), opts_.device, zeros.data(), Device::cpu, zeros.size() * sizeof(int32_t));
    it = class_rows_.emplace(B, std::move(b)).first;
  }
  return Tensor(it->second.data(), DType::i32, {B}, opts_.device);
}

Tensor ModelImpl::w(const std::string& name) const {
  auto it = prepared_.find(name);
  CLIP_CHECK(it != prepared_.end(), "%s: missing tensor %s", weights_.path.c_str(), name.c_str());
  return it->second;
}

// Vision: pixels [B,3,R,R] (f32, or normalized from bytes [B,R,R,3]) -> the family's tower
// (clip/vit.cpp, clip/resnet.cpp) -> [B,E]; with `staged`, its named intermediates after it.
// From bytes, a tower that starts with the patch embedding (ViT, SigLIP) reads the bytes in it:
// Graph::patch_embed folds the normalization in (patch_embed_rgb8; the same values).
Graph ModelImpl::build_vision(int64_t B, bool rgb8, bool staged) const {
  const ModelConfig& c = weights_.config;
  Graph g(opts_.device, graph_dtype());
  auto W = [&](const std::string& n) { return g.weight(n, w(n)); };
  int64_t R = c.image_resolution;
  Value px;
  if (rgb8) {
    px = g.normalize_rgb8(g.input("rgb", DType::u8, {B, R, R, 3}), weights_.preprocess.mean, weights_.preprocess.std);
  } else {
    px = g.input("pixels", DType::f32, {B, 3, R, R});
    if (graph_dtype() != DType::f32) px = g.cast(px, graph_dtype());
  }
  Value row = g.weight("class_index", class_rows(B));
  Stages stages;
  g.output(vision_family(c.vision_family).build(g, px, row, c, W, staged ? &stages : nullptr));
  for (auto& [name, v] : stages) g.output(v);
  return g;
}

// Text: ids [B,T] -> token embedding + pos[:T] [B,T,W] -> causal blocks (the last one keeps
//       the row at the end-of-text position, or open_clip's first or last, [B,W]) -> ln_final
//       -> text_projection [B,E]
Graph ModelImpl::build_text(int64_t B, int64_t T) const {
  const ModelConfig& c = weights_.config;
  Graph g(opts_.device, graph_dtype());
  auto W = [&](const std::string& n) { return g.weight(n, w(n)); };
  Value ids = g.input("tokens", DType::i32, {B, T});
  Value eot = g.input("eot_index", DType::i32, {B});
  // CoCa: the last of the T ids is the class row's (clip/model.cpp, prepare_weights), and it
  // attends only to the keys `keep` marks.
  Value keep = c.text.embed_cls ? g.input("cls_keep", DType::i32, {B, T}) : kNoValue;
  Value x = g.embedding(ids, W(c.text.embed_cls ? "token_embedding.weight+cls" : "token_embedding.weight"));
  x = g.add(x, g.weight("positional_embedding[:T]", w("positional_embedding").slice(0, 0, T)));
  Stream s{x};
  for (int l = 0; l < c.text.layers; l++)
    transformer_block(g, s, "transformer.resblocks." + std::to_string(l) + ".", W, c.text.heads, c.text.causal,
                      c.layer_norm_eps, c.activation, l + 1 == c.text.layers ? eot : kNoValue, keep);
  x = s.x;
  if (c.text.layers == 0) x = g.gather_rows(x, eot);
  x = g.layernorm(x, W("ln_final.weight"), W("ln_final.bias"), c.layer_norm_eps);
  if (c.text.proj) x = g.linear(x, W("text_projection.T"), c.text.proj_bias ? W("text_projection.bias") : kNoValue);
  g.output(x);
  return g;
}

Executor& ModelImpl::executor(const std::string& tower, int64_t B, int64_t T) {
  auto key = std::make_tuple(tower, B, T);
  auto it = executors_.find(key);
  if (it != executors_.end()) {
    it->second.last_use = ++uses_;
    return *it->second.ex;
  }
  Graph g = tower == "text" ? build_text(B, T) : build_vision(B, tower == "vision_rgb8", tower == "vision_staged");
  if (opts_.memory_limit) {
    size_t need = plan_memory(g).peak_bytes;
    if (need > opts_.memory_limit)
      throw OutOfMemory(strprintf("the %s graph for batch %lld needs %zu activation bytes, over the limit of %zu",
                                  tower.c_str(), (long long)B, need, opts_.memory_limit));
  }
  // Each graph holds its own activation arena, and texts make one graph per (batch, length):
  // beyond kMaxExecutors the least recently used one goes (rebuilding it costs milliseconds;
  // the packed weights are shared and stay).
  // The entry is made only once compile() has succeeded (it may throw, e.g. out of device
  // memory): an empty one would be found by the next call.
  if (executors_.size() >= kMaxExecutors) erase_least_recent(executors_);
  Compiled c;
  c.ex = compile(g, cuda_.get(), cpu_.get());
  c.ex->set_profile(profile_);
  c.last_use = ++uses_;
  return *executors_.emplace(key, std::move(c)).first->second.ex;
}

void ModelImpl::set_profile(OpProfile* p) {
  profile_ = p;
  for (auto& [key, c] : executors_) c.ex->set_profile(p);
}

std::vector<std::tuple<std::string, int64_t, int64_t, size_t>> ModelImpl::compiled_graphs() const {
  std::vector<std::tuple<std::string, int64_t, int64_t, size_t>> r;
  for (auto& [k, c] : executors_)
    r.emplace_back(std::get<0>(k), std::get<1>(k), std::get<2>(k), c.ex->plan().peak_bytes);
  return r;
}

static HostTensor concat_rows(const std::vector<HostTensor>& parts, int64_t D) {
  int64_t n = 0;
  for (auto& p : parts) n += p.t.shape[0];
  HostTensor out(DType::f32, {n, D});
  int64_t r = 0;
  for (auto& p : parts) {
    std::memcpy(out.f32() + r * D, p.f32(), (size_t)(p.t.shape[0] * D) * sizeof(float));
    r += p.t.shape[0];
  }
  return out;
}

// The position a text is pooled at: OpenAI's argmax(tokens), the first end-of-text (the
// highest id); or open_clip's first or last position of the context.
static int64_t pool_position(const int32_t* row, int64_t ctx, TextPool pool) {
  if (pool == TextPool::first) return 0;
  if (pool == TextPool::last) return ctx - 1;
  int64_t best = 0;
  for (int64_t t = 1; t < ctx; t++)
    if (row[t] > row[best]) best = t;
  return best;
}

HostTensor ModelImpl::encode_tokens_chunk(const int32_t* tokens, int64_t B) {
  const TextConfig& tc = weights_.config.text;
  const int64_t ctx = tc.context_length;
  std::vector<int32_t> eot((size_t)B);
  int64_t T = 1;
  for (int64_t b = 0; b < B; b++) {
    eot[(size_t)b] = (int32_t)pool_position(tokens + b * ctx, ctx, tc.pool);
    T = std::max<int64_t>(T, eot[(size_t)b] + 1);
  }
  // Causal attention: a row sees only the rows before it, so the context can end at the pooled
  // row. Bidirectional: every row sees the padding too.
  if (!trims_text()) T = ctx;
  if (tc.embed_cls) {
    // CoCa: the class row at position ctx after the tokens, pooled there; it sees position 0
    // and each position after a token that is not pad_id (open_clip's build_cls_mask).
    T = ctx + 1;
    std::vector<int32_t> ids((size_t)(B * T)), keep((size_t)(B * T));
    for (int64_t b = 0; b < B; b++) {
      const int32_t* row = tokens + b * ctx;
      std::memcpy(&ids[(size_t)(b * T)], row, (size_t)ctx * sizeof(int32_t));
      ids[(size_t)(b * T + ctx)] = tc.vocab_size;
      for (int64_t j = 0; j < T; j++) keep[(size_t)(b * T + j)] = j == 0 || row[j - 1] != tc.pad_id;
      eot[(size_t)b] = (int32_t)ctx;
    }
    Executor& ex = executor("text", B, T);
    auto out = ex.run({Tensor(ids.data(), DType::i32, {B, T}), Tensor(eot.data(), DType::i32, {B}),
                       Tensor(keep.data(), DType::i32, {B, T})});
    device_seconds_ += ex.last_device_seconds();
    return out[0];
  }
  std::vector<int32_t> ids((size_t)(B * T));
  for (int64_t b = 0; b < B; b++)
    std::memcpy(&ids[(size_t)(b * T)], tokens + b * ctx, (size_t)T * sizeof(int32_t));
  Executor& ex = executor("text", B, T);
  auto out = ex.run({Tensor(ids.data(), DType::i32, {B, T}), Tensor(eot.data(), DType::i32, {B})});
  device_seconds_ += ex.last_device_seconds();
  return out[0];
}

HostTensor ModelImpl::encode_tokens(const int32_t* tokens, int64_t B) {
  const int64_t ctx = weights_.config.text.context_length;
  for (int64_t i = 0; i < B * ctx; i++)
    CLIP_CHECK(tokens[i] >= 0 && tokens[i] < weights_.config.text.vocab_size,
               "token id %d (text %lld, position %lld) is outside the vocabulary of %d", tokens[i],
               (long long)(i / ctx), (long long)(i % ctx), weights_.config.text.vocab_size);
  if (B <= batch_limit_ || !trims_text())
    return in_batches(B, [&](int64_t b0, int64_t nb) { return encode_tokens_chunk(tokens + b0 * ctx, nb); });
  // More texts than one batch: batches are cut from the texts sorted by length, so each runs
  // only as far as its own longest text instead of the longest of a random mix. Exact: an
  // embedding does not depend on its batch or on where the batch is cut off (tested bitwise
  // on the CPU). Rows come back in input order.
  std::vector<int64_t> order((size_t)B), len((size_t)B);
  for (int64_t b = 0; b < B; b++) {
    order[(size_t)b] = b;
    len[(size_t)b] = pool_position(tokens + b * ctx, ctx, weights_.config.text.pool);
  }
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return len[(size_t)a] < len[(size_t)b]; });
  std::vector<int32_t> sorted((size_t)(B * ctx));
  for (int64_t i = 0; i < B; i++)
    std::memcpy(&sorted[(size_t)(i * ctx)], tokens + order[(size_t)i] * ctx, (size_t)ctx * sizeof(int32_t));
  HostTensor got = in_batches(B, [&](int64_t b0, int64_t nb) { return encode_tokens_chunk(sorted.data() + b0 * ctx, nb); });
  const int64_t E = embed_dim();
  HostTensor out(DType::f32, {B, E});
  for (int64_t i = 0; i < B; i++)
    std::memcpy(out.f32() + order[(size_t)i] * E, got.f32() + i * E, (size_t)E * sizeof(float));
  return out;
}

HostTensor ModelImpl::in_batches(int64_t B, const std::function<HostTensor(int64_t, int64_t)>& chunk) {
  std::vector<HostTensor> parts;
  for (int64_t b0 = 0; b0 < B;) {
    int64_t nb = std::min<int64_t>(batch_limit_, B - b0);
    try {
      parts.push_back(chunk(b0, nb));
    } catch (const OutOfMemory& e) {
      if (nb == 1) throw;
      batch_limit_ = nb / 2;
      executors_.clear();  // frees arenas of the larger batches
      fprintf(stderr, "clip: %s; retrying with batch size %lld\n", e.what(), (long long)batch_limit_);
      continue;
    }
    b0 += nb;
  }
  return concat_rows(parts, embed_dim());
}

HostTensor ModelImpl::encode_texts(const std::vector<std::string>& texts) {
  const Tokenizer& tok = tokenizer();
  const int ctx = weights_.config.text.context_length;
  std::vector<int32_t> ids(texts.size() * (size_t)ctx);
  for (size_t i = 0; i < texts.size(); i++) {
    Encoded e = tok.encode(texts[i], ctx);
    std::copy(e.ids.begin(), e.ids.end(), ids.begin() + (ptrdiff_t)(i * (size_t)ctx));
  }
  return encode_tokens(ids.data(), (int64_t)texts.size());
}

HostTensor ModelImpl::encode_image_chunk(const void* data, bool rgb8, int64_t B) {
  int64_t R = weights_.config.image_resolution;
  Executor& ex = executor(rgb8 ? "vision_rgb8" : "vision", B, 0);
  Tensor in = rgb8 ? Tensor((void*)data, DType::u8, {B, R, R, 3}) : Tensor((void*)data, DType::f32, {B, 3, R, R});
  auto out = ex.run({in});
  device_seconds_ += ex.last_device_seconds();
  return out[0];
}

std::vector<std::pair<std::string, HostTensor>> ModelImpl::encode_pixels_staged(const float* pixels, int64_t B) {
  CLIP_CHECK(weights_.config.vision_family == VisionFamily::resnet,
             "staged image outputs are for ResNet towers; this model is a %s",
             vision_family_name(weights_.config.vision_family));
  const int64_t R = weights_.config.image_resolution;
  Executor& ex = executor("vision_staged", B, 0);
  std::vector<HostTensor> out = ex.run({Tensor((void*)pixels, DType::f32, {B, 3, R, R})});
  std::vector<std::pair<std::string, HostTensor>> named = {{"embedding", out[0]}};
  const char* names[] = {"stem", "layer1", "layer2", "layer3", "layer4"};
  for (size_t i = 1; i < out.size() && i <= 5; i++) named.push_back({names[i - 1], out[i]});
  return named;
}

HostTensor ModelImpl::encode_pixels(const float* pixels, int64_t B) {
  const int64_t n = pixels_per_image();
  return in_batches(B, [&](int64_t b0, int64_t nb) { return encode_image_chunk(pixels + b0 * n, false, nb); });
}

HostTensor ModelImpl::encode_rgb8(const uint8_t* rgb, int64_t B) {
  const int64_t n = pixels_per_image();
  return in_batches(B, [&](int64_t b0, int64_t nb) { return encode_image_chunk(rgb + b0 * n, true, nb); });
}

void ModelImpl::preprocess_file(const std::string& path, uint8_t* out) const {
  PreprocessConfig pc = weights_.preprocess;
  pc.resolution = weights_.config.image_resolution;
  std::vector<uint8_t> rgb = preprocess_image_file_rgb8(path, pc);
  std::memcpy(out, rgb.data(), rgb.size());
}

void ModelImpl::preprocess_bytes(const uint8_t* data, size_t size, const std::string& name, uint8_t* out) const {
  PreprocessConfig pc = weights_.preprocess;
  pc.resolution = weights_.config.image_resolution;
  std::vector<uint8_t> rgb = preprocess_image_bytes_rgb8(data, size, name, pc);
  std::memcpy(out, rgb.data(), rgb.size());
}

Model::Pixels ModelImpl::preprocess_files(const std::vector<std::string>& paths) const {
  Pixels p;
  ThreadPool pool(std::clamp<size_t>(paths.size(), 1, std::max(1u, std::thread::hardware_concurrency())));
  std::vector<EmbedItem> items;
  for (const std::string& path : paths) items.push_back({true, path});
  preprocess_images_async(pool, *this, items, p)->wait();
  return p;
}

HostTensor ModelImpl::encode_image_files(const std::vector<std::string>& paths) {
  Pixels px = preprocess_files(paths);
  for (const auto& e : px.errors) CLIP_CHECK(e.empty(), "%s", e.c_str());
  return encode_rgb8(px.data.data(), (int64_t)paths.size());
}

void l2_normalize_rows(float* out, const float* x, int64_t N, int64_t D) { l2_normalize_cpu(out, x, N, D); }

void softmax_rows(float* out, const float* x, int64_t N, int64_t D) { softmax_cpu(out, x, N, D); }

HostTensor normalize_rows(const HostTensor& x) {
  HostTensor y(DType::f32, x.t.shape);
  l2_normalize_cpu(y.f32(), x.f32(), x.t.shape.rows(), x.t.shape.last());
  return y;
}

HostTensor ModelImpl::logits(const HostTensor& img, const HostTensor& txt) const {
  CLIP_CHECK(img.t.shape.nd == 2 && txt.t.shape.nd == 2 && img.t.shape[1] == txt.t.shape[1],
             "logits: image embeddings %s and text embeddings %s do not match",
             img.t.shape.str().c_str(), txt.t.shape.str().c_str());
  int64_t M = img.t.shape[0], N = txt.t.shape[0], D = img.t.shape[1];
  HostTensor out(DType::f32, {M, N});
  if (M && N) cosine_sim_cpu(out.f32(), img.f32(), txt.f32(), M, N, D, logit_scale());
  if (weights_.config.logit_bias)
    for (int64_t i = 0; i < M * N; i++) out.f32()[i] += weights_.logit_bias;
  return out;
}

}  // namespace clip
