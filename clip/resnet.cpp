#include "clip/resnet.h"

#include <cmath>

namespace clip {

namespace {

std::vector<float> as_f32(const WeightTensor& t) {
  std::vector<float> v((size_t)t.shape.numel());
  convert_cpu(v.data(), DType::f32, t.data, t.dtype, t.shape.numel());
  return v;
}

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

}  // namespace

std::vector<DerivedTensor> resnet_derived_tensors(const Weights& w, std::vector<std::string>& consumed) {
  const ResNetConfig& r = w.config.resnet;
  std::vector<DerivedTensor> out;
  for (const auto& [conv, bn] : conv_bn_pairs(r)) {
    const WeightTensor& cw = w.get(conv + ".weight");
    const std::vector<float> wt = as_f32(cw), gamma = as_f32(w.get(bn + ".weight")),
                             beta = as_f32(w.get(bn + ".bias")), mean = as_f32(w.get(bn + ".running_mean")),
                             var = as_f32(w.get(bn + ".running_var"));
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
  const int64_t D = r.pool_width();
  DerivedTensor iw{"visual.attnpool.in_proj_weight", Shape{3 * D, D}, {}};
  DerivedTensor ib{"visual.attnpool.in_proj_bias", Shape{3 * D}, {}};
  for (const char* p : {"q_proj", "k_proj", "v_proj"}) {
    const std::string n = std::string("visual.attnpool.") + p;
    std::vector<float> a = as_f32(w.get(n + ".weight")), b = as_f32(w.get(n + ".bias"));
    iw.data.insert(iw.data.end(), a.begin(), a.end());
    ib.data.insert(ib.data.end(), b.begin(), b.end());
    consumed.push_back(n + ".weight");
    consumed.push_back(n + ".bias");
  }
  out.push_back(std::move(iw));
  out.push_back(std::move(ib));
  return out;
}

Value build_resnet(Graph& g, Value px, Value row0, const ModelConfig& c,
                   const std::function<Value(const std::string&)>& W,
                   std::vector<std::pair<std::string, Value>>* stages) {
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
  Value qkv = g.linear(t, W("visual.attnpool.in_proj_weight"), W("visual.attnpool.in_proj_bias"));
  Value a = g.gather_rows(g.attention(qkv, r.heads, false), row0);
  return g.linear(a, W("visual.attnpool.c_proj.weight"), W("visual.attnpool.c_proj.bias"));
}

}  // namespace clip
