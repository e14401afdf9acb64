// OpenAI's ModifiedResNet image tower (clip/model.py), the whole family: its tensors and
// config inference, checks, FLOPs, the BatchNorm folding and the graph.
//
// Layout: channels last (NHWC) from the stem to the attention pool, so every convolution is a
// GEMM over output pixels (1x1: straight on the activation; 3x3: on im2col rows) and the
// pool's tokens are the final feature map's rows as they lie.
//
// The derived f32 tensors the graph reads instead of the checkpoint's convolutions, BatchNorms
// and attention-pool projections, computed once at load:
//   <conv>.weight.nhwc [Co, k, k, Ci] and <conv>.bias.folded [Co]: each convolution with its
//     BatchNorm folded in (eval mode, eps 1e-5): scale = gamma / sqrt(running_var + eps),
//     w' = w scale, b' = beta - running_mean scale, computed in double and rounded once to
//     f32. The folded f32 values are what every compute dtype starts from.
// The attention pool reads the checkpoint's q, k and v projections as they are: only the mean
// token queries, so the graph projects that one token's query and the attention_pool op takes
// the query to the tokens' space through k's weight, and the softmax-weighted token back
// through v's (engine/cpu_ops.h: attention_pool_cpu); k's bias adds the same value to every
// score of a head, which the softmax removes, so it is not read.
#include <algorithm>
#include <cmath>

#include "clip/family.h"

namespace clip {

namespace {

// Every convolution and the BatchNorm after it, as (conv prefix, bn prefix).
std::vector<std::pair<std::string, std::string>> conv_bn_pairs(const ResNetConfig& r) {
  std::vector<std::pair<std::string, std::string>> v = {
      {"visual.conv1", "visual.bn1"}, {"visual.conv2", "visual.bn2"}, {"visual.conv3", "visual.bn3"}};
  for (int s = 0; s < 4; s++)
    for (int j = 0; j < r.layers[s]; j++) {
      const std::string p = "visual.layer" + std::to_string(s + 1) + "." + std::to_string(j) + ".";
      for (const char* i : {"1", "2", "3"}) v.push_back({p + "conv" + i, p + "bn" + i});
      if (j == 0) v.push_back({p + "downsample.0", p + "downsample.1"});
    }
  return v;
}

std::vector<DerivedTensor> derive(const Weights& w, std::vector<std::string>& consumed) {
  const ResNetConfig& r = w.config.resnet;
  std::vector<DerivedTensor> out;
  for (const auto& [conv, bn] : conv_bn_pairs(r)) {
    const WeightTensor& cw = w.get(conv + ".weight");
    const std::vector<float> wt = tensor_f32(cw), gamma = tensor_f32(w.get(bn + ".weight")),
                             beta = tensor_f32(w.get(bn + ".bias")), mean = tensor_f32(w.get(bn + ".running_mean")),
                             var = tensor_f32(w.get(bn + ".running_var"));
    const int64_t O = cw.shape[0], I = cw.shape[1], K = cw.shape[2];
    DerivedTensor dw{conv + ".weight.nhwc", Shape{O, K, K, I}, std::vector<float>((size_t)cw.shape.numel())};
    DerivedTensor db{conv + ".bias.folded", Shape{O}, std::vector<float>((size_t)O)};
    for (int64_t o = 0; o < O; o++) {
      CLIP_CHECK(var[(size_t)o] >= 0 && std::isfinite(var[(size_t)o]), "%s: %s.running_var[%lld] = %g is not a variance",
                 w.path.c_str(), bn.c_str(), (long long)o, (double)var[(size_t)o]);
      const double scale = (double)gamma[(size_t)o] / std::sqrt((double)var[(size_t)o] + 1e-5);
      db.data[(size_t)o] = (float)((double)beta[(size_t)o] - (double)mean[(size_t)o] * scale);
      for (int64_t i = 0; i < I; i++)
        for (int64_t y = 0; y < K; y++)
          for (int64_t x = 0; x < K; x++)
            dw.data[(size_t)(((o * K + y) * K + x) * I + i)] =
                (float)((double)wt[(size_t)(((o * I + i) * K + y) * K + x)] * scale);
    }
    out.push_back(std::move(dw));
    out.push_back(std::move(db));
    consumed.push_back(conv + ".weight");
    for (const char* s : {".weight", ".bias", ".running_mean", ".running_var"}) consumed.push_back(bn + s);
  }
  consumed.push_back("visual.attnpool.k_proj.bias");  // cancels in the softmax (above)
  return out;
}

Value build(Graph& g, Value px, Value row0, const ModelConfig& c, const WeightFn& W, Stages* stages) {
  const ResNetConfig& r = c.resnet;
  auto conv = [&](Value x, const std::string& name, int stride, int pad, Act act, Value res = kNoValue) {
    return g.conv2d(x, W(name + ".weight.nhwc"), W(name + ".bias.folded"), stride, pad, act, res);
  };
  // Stem: three 3x3 convolutions (the first with stride 2), each with BatchNorm and ReLU,
  // then a 2x2 average pool.
  Value x = g.to_nhwc(px);
  x = conv(x, "visual.conv1", 2, 1, Act::relu);
  x = conv(x, "visual.conv2", 1, 1, Act::relu);
  x = conv(x, "visual.conv3", 1, 1, Act::relu);
  x = g.avgpool2d(x, 2);
  if (stages) stages->push_back({"stem", x});
  // Bottleneck blocks: 1x1, 3x3, (2x2 average pool when the block downsamples), 1x1, each
  // with its BatchNorm; the shortcut of a stage's first block is an average pool (when it
  // downsamples), a 1x1 convolution and a BatchNorm. The sum goes through a ReLU.
  for (int s = 0; s < 4; s++) {
    for (int j = 0; j < r.layers[s]; j++) {
      const std::string p = "visual.layer" + std::to_string(s + 1) + "." + std::to_string(j) + ".";
      const int stride = s > 0 && j == 0 ? 2 : 1;
      Value h = conv(x, p + "conv1", 1, 0, Act::relu);
      h = conv(h, p + "conv2", 1, 1, Act::relu);
      if (stride > 1) h = g.avgpool2d(h, stride);
      Value shortcut = x;
      if (j == 0) shortcut = conv(stride > 1 ? g.avgpool2d(x, stride) : x, p + "downsample.0", 1, 0, Act::none);
      x = conv(h, p + "conv3", 1, 0, Act::relu, shortcut);
    }
    if (stages) stages->push_back({"layer" + std::to_string(s + 1), x});
  }
  // AttentionPool2d: the mean of the feature vectors, then the vectors, each plus its
  // position, as tokens; one multi-head attention in which only the mean token's output is
  // kept; its output projection is the embedding.
  Value t = g.pool_tokens(x, W("visual.attnpool.positional_embedding"));
  Value q = g.linear(g.gather_rows(t, row0), W("visual.attnpool.q_proj.weight"), W("visual.attnpool.q_proj.bias"));
  Value a = g.attention_pool(t, q, W("visual.attnpool.k_proj.weight"), W("visual.attnpool.v_proj.weight"),
                             W("visual.attnpool.v_proj.bias"), r.heads);
  return g.linear(a, W("visual.attnpool.c_proj.weight"), W("visual.attnpool.c_proj.bias"));
}


// The tower's tensors in OpenAI's state_dict order. BatchNorm keeps its four tensors here
// (running statistics included); derive() folds them into the convolutions.
void tensors(const ModelConfig& c, std::vector<std::pair<std::string, Shape>>& v) {
  const ResNetConfig& r = c.resnet;
  const int64_t w = r.width, E = c.embed_dim, D = r.pool_width(), g = c.image_resolution / 32;
  auto conv_bn = [&](const std::string& conv, const std::string& bn, int64_t out, int64_t in, int64_t k) {
    v.push_back({conv + ".weight", {out, in, k, k}});
    for (const char* s : {".weight", ".bias", ".running_mean", ".running_var"}) v.push_back({bn + s, {out}});
  };
  conv_bn("visual.conv1", "visual.bn1", w / 2, 3, 3);
  conv_bn("visual.conv2", "visual.bn2", w / 2, w / 2, 3);
  conv_bn("visual.conv3", "visual.bn3", w, w / 2, 3);
  int64_t in = w;
  for (int s = 0; s < 4; s++) {
    const int64_t planes = w << s;
    for (int j = 0; j < r.layers[s]; j++) {
      const std::string p = "visual.layer" + std::to_string(s + 1) + "." + std::to_string(j) + ".";
      conv_bn(p + "conv1", p + "bn1", planes, in, 1);
      conv_bn(p + "conv2", p + "bn2", planes, planes, 3);
      conv_bn(p + "conv3", p + "bn3", 4 * planes, planes, 1);
      if (j == 0) conv_bn(p + "downsample.0", p + "downsample.1", 4 * planes, in, 1);
      in = 4 * planes;
    }
  }
  v.push_back({"visual.attnpool.positional_embedding", {g * g + 1, D}});
  for (const char* n : {"k_proj", "q_proj", "v_proj"}) {
    v.push_back({std::string("visual.attnpool.") + n + ".weight", {D, D}});
    v.push_back({std::string("visual.attnpool.") + n + ".bias", {D}});
  }
  v.push_back({"visual.attnpool.c_proj.weight", {E, D}});
  v.push_back({"visual.attnpool.c_proj.bias", {E}});
}

bool detect(const TensorIndex& by) {
  return by.count("visual.attnpool.positional_embedding") || by.count("visual.layer1.0.conv1.weight");
}

// OpenAI's build_model: blocks per stage from the names, the width from the first block, the
// resolution from the attention pool's positional rows, heads = width 32 / 64 (open_clip:
// width 32 / head_width).
// Heads are OpenAI's (and open_clip's) rule for a ResNet, 32 width / 64: nothing is assumed.
void infer(const TensorIndex& by, const SideConfig& sc, ModelConfig& c, const std::string& path,
           std::vector<std::string>&) {
  c.vision_family = VisionFamily::resnet;
  ResNetConfig& r = c.resnet;
  for (int s = 0; s < 4; s++) r.layers[s] = layer_count(by, "visual.layer" + std::to_string(s + 1) + ".", path);
  for (auto& [n, t] : by) {
    const bool stage = n.rfind("visual.layer", 0) == 0 && n.size() > 13 && n[13] == '.';
    CLIP_CHECK(!stage || (n[12] >= '1' && n[12] <= '4'), "%s: unexpected tensor '%s' (a ResNet has stages "
               "visual.layer1 to visual.layer4)", path.c_str(), n.c_str());
  }
  for (int s = 0; s < 4; s++)
    CLIP_CHECK(r.layers[s] >= 1, "%s: a ResNet image tower without blocks in stage %d (visual.layer%d.*); the "
               "stage layout (%d, %d, %d, %d) is not one this engine knows", path.c_str(), s + 1, s + 1,
               r.layers[0], r.layers[1], r.layers[2], r.layers[3]);
  r.width = tensor_dim(by, "visual.layer1.0.conv1.weight", 0, 4, path);
  const int pool_rows = tensor_dim(by, "visual.attnpool.positional_embedding", 0, 2, path);
  const int grid = (int)std::lround(std::sqrt((double)std::max(pool_rows - 1, 0)));
  CLIP_CHECK(pool_rows >= 2 && grid * grid + 1 == pool_rows && grid <= 4096,
             "%s: visual.attnpool.positional_embedding has %d rows, not a square grid + 1", path.c_str(), pool_rows);
  c.image_resolution = grid * 32;
  r.heads = vision_heads(sc, r.pool_width());
}

void check(const ModelConfig& c, const std::string& file) {
  const ResNetConfig& r = c.resnet;
  for (auto [v, what] : {std::pair<int, const char*>{r.width, "resnet.width"}, {r.heads, "resnet.heads"}})
    CLIP_CHECK(v > 0 && v <= (1 << 24), "%s: config %s = %d is out of range", file.c_str(), what, v);
  CLIP_CHECK(r.width % 2 == 0 && r.width <= 4096 && r.pool_width() % r.heads == 0,
             "%s: ResNet width %d with %d attention-pool heads (want an even width, and heads dividing 32 width)",
             file.c_str(), r.width, r.heads);
  for (int s = 0; s < 4; s++)
    CLIP_CHECK(r.layers[s] >= 1 && r.layers[s] <= 256, "%s: ResNet stage %d has %d blocks (want 1 to 256)",
               file.c_str(), s + 1, r.layers[s]);
  CLIP_CHECK(c.image_resolution % 32 == 0, "%s: a ResNet's image_resolution %d is not a multiple of 32",
             file.c_str(), c.image_resolution);
}

void stated(const ModelConfig& c, std::map<std::string, int64_t>& got) {
  got["vision_cfg.width"] = c.resnet.width;
  for (int s = 0; s < 4; s++) got["vision_cfg.layers." + std::to_string(s)] = c.resnet.layers[s];
  got["vision_cfg.image_size"] = c.image_resolution;
}

std::string describe(const ModelConfig& c) {
  const ResNetConfig& r = c.resnet;
  return strprintf("model:       ResNet, embed %d, image %dpx\n", c.embed_dim, c.image_resolution) +
         strprintf("vision:      stages (%d, %d, %d, %d) of Bottleneck blocks, width %d, attention pool "
                   "width %d, heads %d\n", r.layers[0], r.layers[1], r.layers[2], r.layers[3], r.width,
                   r.pool_width(), r.heads);
}

std::string summary(const ModelConfig& c) {
  const ResNetConfig& r = c.resnet;
  return strprintf("ResNet %dx%d stages (%d,%d,%d,%d) W %d H %d", c.image_resolution, c.image_resolution,
                   r.layers[0], r.layers[1], r.layers[2], r.layers[3], r.width, r.heads);
}

// Every convolution (2 k² Ci Co per output pixel) and the attention pool as it runs: the mean
// token's query projection, the attention_pool op (2 (2 D² + 2 heads T D), T = g² + 1 tokens)
// and c_proj: 6 D² + 4 heads T D, where projecting every token's q, k and v as open_clip does
// takes 6 T D² (RN50: 1.26 GFLOP of its 12.0 counted that way).
double flops(const ModelConfig& c) {
  const ResNetConfig& r = c.resnet;
  double f = 0;
  auto conv = [&](double hw, double ci, double co, double k) { f += 2 * hw * hw * k * k * ci * co; };
  double hw = c.image_resolution / 2.0, w = r.width;
  conv(hw, 3, w / 2, 3);
  conv(hw, w / 2, w / 2, 3);
  conv(hw, w / 2, w, 3);
  hw /= 2;
  double in = w;
  for (int s = 0; s < 4; s++) {
    const double planes = w * (1 << s);
    for (int j = 0; j < r.layers[s]; j++) {
      const bool down = s > 0 && j == 0;
      conv(hw, in, planes, 1);
      conv(hw, planes, planes, 3);
      const double out_hw = down ? hw / 2 : hw;
      conv(out_hw, planes, 4 * planes, 1);
      if (j == 0) conv(out_hw, in, 4 * planes, 1);
      hw = out_hw;
      in = 4 * planes;
    }
  }
  const double T = hw * hw + 1, D = r.pool_width();
  return f + 2 * D * D + 2 * (2 * D * D + 2 * r.heads * T * D) + 2 * D * c.embed_dim;
}

// The final feature map's (R/32)² vectors and their mean.
int64_t tokens(const ModelConfig& c) {
  const int64_t g = c.image_resolution / 32;
  return g * g + 1;
}

}  // namespace

const VisionFamilyDef& resnet_family() {
  static const VisionFamilyDef d{VisionFamily::resnet, "ResNet", detect, infer, check, tensors, stated,
                                 describe, summary, flops, tokens, derive, build};
  return d;
}

}  // namespace clip
