#include "tools/serve/api.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

namespace clip::serve {
namespace {

using json = nlohmann::json;

// Latency histogram buckets (seconds) of /metrics.
const double kBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
constexpr size_t kNumBuckets = sizeof(kBuckets) / sizeof(kBuckets[0]);

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Response bad_request(const std::string& message, const std::string& param = "") {
  return error_response(400, message, "invalid_request_error", param);
}

void append_float(std::string& s, float x) {
  if (!std::isfinite(x)) {
    s += "null";
    return;
  }
  char buf[32];
  snprintf(buf, sizeof buf, "%.9g", x);  // as `clip embed` prints them: round-trips float32
  s += buf;
}

const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

Response error_response(int status, const std::string& message, const std::string& type, const std::string& param,
                        const std::string& code) {
  json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  Response r;
  r.status = status;
  r.body = dump(json{{"error", e}});
  return r;
}

std::string base64_encode(const uint8_t* d, size_t n) {
  std::string s;
  s.reserve((n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
    s += kB64[v >> 18];
    s += kB64[(v >> 12) & 63];
    s += kB64[(v >> 6) & 63];
    s += kB64[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)d[i] << 16;
    s += kB64[v >> 18];
    s += kB64[(v >> 12) & 63];
    s += "==";
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8;
    s += kB64[v >> 18];
    s += kB64[(v >> 12) & 63];
    s += kB64[(v >> 6) & 63];
    s += '=';
  }
  return s;
}

bool base64_decode(const char* s, size_t n, std::vector<uint8_t>& out) {
  if (n % 4 != 0) return false;
  int8_t val[256];
  std::memset(val, -1, sizeof val);
  for (int i = 0; i < 64; i++) val[(uint8_t)kB64[i]] = (int8_t)i;
  out.clear();
  out.reserve(n / 4 * 3);
  for (size_t i = 0; i < n; i += 4) {
    const bool last = i + 4 == n;
    int pad = 0;
    uint32_t v = 0;
    for (size_t j = 0; j < 4; j++) {
      const uint8_t c = (uint8_t)s[i + j];
      if (c == '=' && last && j >= 2) {
        if (j == 2 && s[i + 3] != '=') return false;
        pad++;
        v <<= 6;
        continue;
      }
      if (val[c] < 0 || pad) return false;
      v = v << 6 | (uint32_t)val[c];
    }
    out.push_back((uint8_t)(v >> 16));
    if (pad < 2) out.push_back((uint8_t)(v >> 8));
    if (pad < 1) out.push_back((uint8_t)v);
  }
  return true;
}

Api::Api(Model& model, Batcher& batcher, const ApiOptions& opts)
    : model_(model), batcher_(batcher), opts_(opts), created_((int64_t)std::time(nullptr)),
      start_(std::chrono::steady_clock::now()) {
  preprocess_ = model.preprocess_config();
  preprocess_.resolution = model.config().image_resolution;
}

// Queue slots held for a request's items; freed unless handed to the batcher.
struct Api::Slots {
  Batcher& b;
  size_t n = 0;
  bool held = false;
  ~Slots() {
    if (held) b.unreserve(n);
  }
};

namespace {

Response busy(int status, const std::string& message, const std::string& code) {
  Response r = error_response(status, message, status == 429 ? "rate_limit_error" : "server_error", "", code);
  r.headers.push_back({"Retry-After", "1"});
  return r;
}

// Strings of a JSON string or array of strings; false (and err) otherwise.
bool strings_of(const json& j, const std::string& param, std::vector<const std::string*>& out, Response& err) {
  if (j.is_string()) {
    out.push_back(j.get_ptr<const std::string*>());
    return true;
  }
  if (!j.is_array() || j.empty()) {
    err = bad_request(param + " must be a string or a non-empty array of strings", param);
    return false;
  }
  for (size_t i = 0; i < j.size(); i++) {
    if (!j[i].is_string()) {
      err = bad_request(param + "[" + std::to_string(i) + "] must be a string", param);
      return false;
    }
    out.push_back(j[i].get_ptr<const std::string*>());
  }
  return true;
}

// The 80 prompt templates of OpenAI's ImageNet zero-shot evaluation (CLIP's notebook
// "Prompt_Engineering_for_ImageNet"), by the name "openai_imagenet".
const std::vector<std::string> kImagenetTemplates = {
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.",
    "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.",
    "a photo of a hard to see {}.", "a bright photo of a {}.", "a photo of a clean {}.",
    "a photo of a dirty {}.", "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.",
    "the plastic {}.", "a photo of the cool {}.", "a close-up photo of a {}.",
    "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
    "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.", "a photo of the {}.",
    "a good photo of the {}.", "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.",
    "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
    "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.", "a photo of the clean {}.",
    "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.", "a photo of a weird {}.",
    "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
    "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.",
    "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.",
    "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
};
// `clip classify`'s default: 12 of them.
const std::vector<std::string> kDefaultTemplates = {
    "a photo of a {}.",         "a bad photo of a {}.",     "a photo of many {}.",        "a photo of the large {}.",
    "a photo of the small {}.", "a close-up photo of a {}.", "a bright photo of a {}.",    "a cropped photo of the {}.",
    "a good photo of a {}.",    "a rendering of a {}.",     "art of the {}.",             "a photo of one {}.",
};

std::string fill(const std::string& tmpl, const std::string& label) {
  auto p = tmpl.find("{}");
  if (p == std::string::npos) return tmpl + " " + label;
  return tmpl.substr(0, p) + label + tmpl.substr(p + 2);
}

std::vector<float> softmax_or_sigmoid(const float* x, int64_t n, bool sigmoid) {
  std::vector<float> p((size_t)n);
  if (sigmoid)
    for (int64_t i = 0; i < n; i++) p[(size_t)i] = 1.0f / (1.0f + std::exp(-x[i]));
  else if (n)
    softmax_rows(p.data(), x, 1, n);
  return p;
}

HostTensor to_tensor(const std::vector<std::vector<float>>& rows, int64_t E) {
  HostTensor t(DType::f32, {(int64_t)rows.size(), E});
  for (size_t i = 0; i < rows.size(); i++) std::memcpy(t.f32() + (int64_t)i * E, rows[i].data(), (size_t)E * 4);
  return t;
}

}  // namespace

bool Api::image_items(const std::vector<const std::string*>& in, const std::string& param,
                      std::vector<BatchItem>& out, Response& err) const {
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i < in.size(); i++) {
    const std::string& s = *in[i];
    const std::string name = param + "[" + std::to_string(i) + "]";
    if (s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0) {
      err = bad_request(name + ": URLs are not fetched; send the image as a data:image/...;base64, URI", param);
      return false;
    }
    const size_t comma = s.find(',');
    if (s.rfind("data:image/", 0) != 0 || comma == std::string::npos || comma < 7 ||
        s.compare(comma - 7, 7, ";base64") != 0) {
      err = bad_request(name + ": an image must be a data:image/...;base64, URI", param);
      return false;
    }
    if (!base64_decode(s.data() + comma + 1, s.size() - comma - 1, bytes)) {
      err = bad_request(name + ": invalid base64", param);
      return false;
    }
    BatchItem it;
    it.image = true;
    try {
      it.rgb = preprocess_image_bytes_rgb8(bytes.data(), bytes.size(), name, preprocess_, opts_.image_limits);
    } catch (const std::exception& e) {
      err = bad_request(name + ": the image does not decode: " + e.what(), param);
      return false;
    }
    out.push_back(std::move(it));
  }
  return true;
}

bool Api::text_items(const std::vector<const std::string*>& in, const std::string& param, std::vector<BatchItem>& out,
                     int64_t& tokens, Response& err) const {
  if (!model_.has_tokenizer()) {
    err = bad_request("this model has no tokenizer: texts cannot be embedded", param);
    return false;
  }
  const int ctx = model_.config().text.context_length;
  for (size_t i = 0; i < in.size(); i++) {
    const std::string name = param + "[" + std::to_string(i) + "]";
    if (in[i]->empty()) {
      err = bad_request(name + " is an empty string", param);
      return false;
    }
    BatchItem it;
    try {
      Encoded e = model_.tokenizer().encode(*in[i], ctx);
      tokens += e.eot_pos + 1;
      it.tokens = std::move(e.ids);
    } catch (const Error& e) {
      err = bad_request(name + ": " + e.what(), param);
      return false;
    }
    out.push_back(std::move(it));
  }
  return true;
}

bool Api::run(Slots& slots, std::vector<BatchItem>&& items, std::vector<std::vector<float>>& rows, Response& err) {
  slots.held = false;  // the batcher frees them as the items finish
  std::shared_ptr<Pending> p = batcher_.submit(std::move(items));
  if (!p->wait_for(std::chrono::milliseconds(opts_.request_timeout_ms))) {
    p->cancel();
    err = error_response(504, "the request timed out waiting for the model (--request-timeout-s)", "timeout_error");
    return false;
  }
  if (!p->error.empty()) {
    err = p->error == "the server is shutting down" ? busy(503, p->error, "shutting_down")
                                                     : error_response(500, p->error, "server_error");
    return false;
  }
  rows = std::move(p->rows);
  return true;
}

// Parses the body as a JSON object; on failure returns false with err set.
static bool parse_object(const std::string& body, json& req, Response& err) {
  req = json::parse(body, nullptr, false);
  if (req.is_discarded()) {
    err = bad_request("the body is not valid JSON");
    return false;
  }
  if (!req.is_object()) {
    err = bad_request("the body must be a JSON object");
    return false;
  }
  return true;
}

#define CLIP_SERVE_SLOTS(slots, count)                                                                        \
  if ((count) > batcher_.options().max_queue)                                                                 \
    return bad_request("the request has " + std::to_string(count) + " items; the queue holds at most " +     \
                       std::to_string(batcher_.options().max_queue) + " (--max-queue)");                      \
  if (!batcher_.reserve(count)) return busy(429, "the server's queue is full; retry later", "queue_full");    \
  Slots slots{batcher_, (count), true};

Response Api::embeddings(const std::string& body) {
  if (draining_) return busy(503, "the server is shutting down", "shutting_down");
  json req;
  Response err;
  if (!parse_object(body, req, err)) return err;
  if (req.contains("dimensions") && !req["dimensions"].is_null())
    return bad_request("dimensions is not supported: CLIP embeddings cannot be shortened", "dimensions");
  if (req.contains("model") && !req["model"].is_null() && !req["model"].is_string())
    return bad_request("model must be a string", "model");
  if (req.contains("user") && !req["user"].is_null() && !req["user"].is_string())
    return bad_request("user must be a string", "user");
  bool b64 = false;
  if (req.contains("encoding_format") && !req["encoding_format"].is_null()) {
    const json& f = req["encoding_format"];
    if (!f.is_string() || (f != "float" && f != "base64"))
      return bad_request("encoding_format must be \"float\" or \"base64\"", "encoding_format");
    b64 = f == "base64";
  }
  bool image = false;
  if (req.contains("modality") && !req["modality"].is_null()) {
    const json& m = req["modality"];
    if (!m.is_string() || (m != "text" && m != "image"))
      return bad_request("modality must be \"text\" or \"image\"", "modality");
    image = m == "image";
  }
  if (!req.contains("input")) return bad_request("input is required", "input");
  const json& in = req["input"];
  // The inputs as strings, or as token id lists.
  std::vector<const std::string*> strings;
  std::vector<std::vector<int64_t>> token_lists;
  auto ints = [](const json& a, std::vector<int64_t>& out) {
    for (const json& x : a) {
      if (!x.is_number_integer()) return false;
      out.push_back(x.is_number_unsigned() && x.get<uint64_t>() > (uint64_t)INT64_MAX ? INT64_MAX : x.get<int64_t>());
    }
    return true;
  };
  const std::string kinds = "input must be a string, an array of strings or arrays of token ids";
  if (in.is_string()) {
    strings.push_back(in.get_ptr<const std::string*>());
  } else if (in.is_array()) {
    if (in.empty()) return bad_request("input must not be empty", "input");
    if (in[0].is_string()) {
      if (!strings_of(in, "input", strings, err)) return err;
    } else if (in[0].is_number_integer()) {
      token_lists.emplace_back();
      if (!ints(in, token_lists.back())) return bad_request("input must be an array of integer token ids", "input");
    } else if (in[0].is_array()) {
      for (size_t i = 0; i < in.size(); i++) {
        token_lists.emplace_back();
        if (!in[i].is_array() || in[i].empty() || !ints(in[i], token_lists.back()))
          return bad_request("input[" + std::to_string(i) + "] must be a non-empty array of integer token ids",
                             "input");
      }
    } else {
      return bad_request(kinds, "input");
    }
  } else {
    return bad_request(kinds, "input");
  }
  const size_t n = strings.size() + token_lists.size();
  if (n > opts_.max_inputs)
    return bad_request("input has " + std::to_string(n) + " items; at most " + std::to_string(opts_.max_inputs) +
                           " are allowed (--max-inputs)",
                       "input");
  if (image && !token_lists.empty()) return bad_request("image inputs must be data:image/...;base64 URIs", "input");
  if (!image && !model_.has_tokenizer()) return bad_request("this model has no tokenizer: texts cannot be embedded", "input");

  CLIP_SERVE_SLOTS(slots, n)  // before decoding, so that decoded inputs are bounded by the queue too
  std::vector<BatchItem> items;
  items.reserve(n);
  int64_t tokens = 0;
  if (image) {
    if (!image_items(strings, "input", items, err)) return err;
  } else if (!strings.empty()) {
    if (!text_items(strings, "input", items, tokens, err)) return err;
  } else {
    const Tokenizer& tok = model_.tokenizer();
    if (tok.is_sentencepiece())
      return bad_request("token id inputs are supported for BPE tokenizers only; send the texts", "input");
    const int ctx = model_.config().text.context_length;
    for (size_t i = 0; i < n; i++) {
      const std::vector<int64_t>& ids = token_lists[i];
      for (int64_t id : ids)
        if (id < 0 || id >= (int64_t)tok.vocab_size())
          return bad_request("input[" + std::to_string(i) + "]: token id " + std::to_string(id) +
                                 " is outside the vocabulary [0, " + std::to_string(tok.vocab_size()) + ")",
                             "input");
      // [SOT] + ids + [EOT], truncated as clip.tokenize(truncate=True) truncates, zero padded.
      BatchItem it;
      it.tokens.assign((size_t)ctx, tok.pad_id());
      const size_t keep = std::min(ids.size(), (size_t)ctx - 2);
      it.tokens[0] = tok.sot_id();
      for (size_t j = 0; j < keep; j++) it.tokens[j + 1] = (int32_t)ids[j];
      it.tokens[keep + 1] = tok.eot_id();
      tokens += (int64_t)keep + 2;
      items.push_back(std::move(it));
    }
  }
  std::vector<std::vector<float>> rows;
  if (!run(slots, std::move(items), rows, err)) return err;

  std::string s = "{\"object\":\"list\",\"data\":[";
  for (size_t i = 0; i < n; i++) {
    const std::vector<float>& row = rows[i];
    s += i ? ",{" : "{";
    s += "\"object\":\"embedding\",\"index\":" + std::to_string(i) + ",\"embedding\":";
    if (b64) {
      s += '"' + base64_encode((const uint8_t*)row.data(), row.size() * sizeof(float)) + '"';
    } else {
      s += '[';
      for (size_t j = 0; j < row.size(); j++) {
        if (j) s += ',';
        append_float(s, row[j]);
      }
      s += ']';
    }
    s += '}';
  }
  s += "],\"model\":" + dump(opts_.model_name) + ",\"usage\":{\"prompt_tokens\":" + std::to_string(tokens) +
       ",\"total_tokens\":" + std::to_string(tokens) + "}}";
  Response r;
  r.body = std::move(s);
  return r;
}

Response Api::classify(const std::string& body) {
  if (draining_) return busy(503, "the server is shutting down", "shutting_down");
  json req;
  Response err;
  if (!parse_object(body, req, err)) return err;
  std::vector<const std::string*> images, labels, tmpl_in;
  if (!req.contains("images")) return bad_request("images is required", "images");
  if (!req.contains("labels")) return bad_request("labels is required", "labels");
  if (!strings_of(req["images"], "images", images, err) || !strings_of(req["labels"], "labels", labels, err)) return err;
  std::vector<std::string> templates = kDefaultTemplates;
  if (req.contains("templates") && !req["templates"].is_null()) {
    const json& t = req["templates"];
    if (t.is_string() && t == "openai_imagenet") {
      templates = kImagenetTemplates;
    } else if (t.is_string() && t == "default") {
    } else {
      if (t.is_string()) return bad_request("templates must be \"openai_imagenet\", \"default\" or an array of strings", "templates");
      if (!strings_of(t, "templates", tmpl_in, err)) return err;
      templates.clear();
      for (auto* x : tmpl_in) templates.push_back(*x);
    }
  }
  int64_t k = 5;
  if (req.contains("k") && !req["k"].is_null()) {
    if (!req["k"].is_number_integer() || req["k"].get<int64_t>() < 1) return bad_request("k must be a positive integer", "k");
    k = req["k"].get<int64_t>();
  }
  const int64_t I = (int64_t)images.size(), L = (int64_t)labels.size(), NT = (int64_t)templates.size();
  if ((size_t)I > opts_.max_inputs || (size_t)(L * NT) > opts_.max_inputs * 80)
    return bad_request("too many images, or labels x templates (--max-inputs)");
  std::vector<std::string> prompts;
  for (auto* l : labels)
    for (auto& t : templates) prompts.push_back(fill(t, *l));
  std::vector<const std::string*> prompt_ptrs;
  for (auto& p : prompts) prompt_ptrs.push_back(&p);
  const size_t n = (size_t)(I + L * NT);
  CLIP_SERVE_SLOTS(slots, n)
  std::vector<BatchItem> items;
  int64_t tokens = 0;
  if (!image_items(images, "images", items, err) || !text_items(prompt_ptrs, "labels", items, tokens, err)) return err;
  std::vector<std::vector<float>> rows;
  if (!run(slots, std::move(items), rows, err)) return err;
  // As `clip classify`: each label the mean of its normalized prompt embeddings, renormalized.
  const int64_t E = model_.embed_dim();
  HostTensor cls(DType::f32, {L, E});
  for (int64_t l = 0; l < L; l++)
    for (int64_t d = 0; d < E; d++) {
      float s = 0;
      for (int64_t t = 0; t < NT; t++) s += rows[(size_t)(I + l * NT + t)][(size_t)d];
      cls.f32()[l * E + d] = s / (float)NT;
    }
  cls = normalize_rows(cls);
  rows.resize((size_t)I);
  HostTensor logits = model_.logits(to_tensor(rows, E), cls);
  const bool sig = model_.sigmoid_scores();
  json data = json::array();
  for (int64_t i = 0; i < I; i++) {
    std::vector<float> p = softmax_or_sigmoid(logits.f32() + i * L, L, sig);
    std::vector<int64_t> order((size_t)L);
    for (int64_t l = 0; l < L; l++) order[(size_t)l] = l;
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return p[(size_t)x] > p[(size_t)y]; });
    json top = json::array();
    for (int64_t j = 0; j < std::min(k, L); j++)
      top.push_back({{"label", *labels[(size_t)order[(size_t)j]]}, {"index", order[(size_t)j]},
                     {"probability", p[(size_t)order[(size_t)j]]}});
    data.push_back({{"index", i}, {"labels", top}});
  }
  Response r;
  r.body = dump(json{{"object", "list"}, {"data", data}, {"model", opts_.model_name},
                     {"probability", sig ? "sigmoid" : "softmax"}, {"templates", NT}});
  return r;
}

Response Api::score(const std::string& body) {
  if (draining_) return busy(503, "the server is shutting down", "shutting_down");
  json req;
  Response err;
  if (!parse_object(body, req, err)) return err;
  std::vector<const std::string*> images, texts;
  if (!req.contains("images")) return bad_request("images is required", "images");
  if (!req.contains("texts")) return bad_request("texts is required", "texts");
  if (!strings_of(req["images"], "images", images, err) || !strings_of(req["texts"], "texts", texts, err)) return err;
  const int64_t I = (int64_t)images.size(), T = (int64_t)texts.size();
  if ((size_t)(I + T) > opts_.max_inputs) return bad_request("too many images and texts (--max-inputs)");
  CLIP_SERVE_SLOTS(slots, (size_t)(I + T))
  std::vector<BatchItem> items;
  int64_t tokens = 0;
  if (!image_items(images, "images", items, err) || !text_items(texts, "texts", items, tokens, err)) return err;
  std::vector<std::vector<float>> rows;
  if (!run(slots, std::move(items), rows, err)) return err;
  const int64_t E = model_.embed_dim();
  std::vector<std::vector<float>> txt(rows.begin() + I, rows.end());
  rows.resize((size_t)I);
  HostTensor logits = model_.logits(to_tensor(rows, E), to_tensor(txt, E));
  const float scale = model_.logit_scale(), bias = model_.logit_bias();
  const bool sig = model_.sigmoid_scores();
  json data = json::array();
  for (int64_t i = 0; i < I; i++) {
    const float* lg = logits.f32() + i * T;
    std::vector<float> p = softmax_or_sigmoid(lg, T, sig);
    json sc = json::array();
    for (int64_t t = 0; t < T; t++)
      sc.push_back({{"index", t}, {"cosine", (lg[t] - bias) / scale}, {"logit", lg[t]}, {"probability", p[(size_t)t]}});
    data.push_back({{"index", i}, {"scores", sc}});
  }
  Response r;
  r.body = dump(json{{"object", "list"}, {"data", data}, {"model", opts_.model_name},
                     {"probability", sig ? "sigmoid" : "softmax"}});
  return r;
}

Response Api::search(const std::string& body) {
  if (draining_) return busy(503, "the server is shutting down", "shutting_down");
  if (!opts_.index) return bad_request("the server has no index: start it with --index EMB.npy");
  json req;
  Response err;
  if (!parse_object(body, req, err)) return err;
  if (!req.contains("input") || !req["input"].is_string())
    return bad_request("input must be one string: a text, or with modality \"image\" a data:image URI", "input");
  bool image = false;
  if (req.contains("modality") && !req["modality"].is_null()) {
    const json& m = req["modality"];
    if (!m.is_string() || (m != "text" && m != "image"))
      return bad_request("modality must be \"text\" or \"image\"", "modality");
    image = m == "image";
  }
  int64_t k = 10;
  if (req.contains("k") && !req["k"].is_null()) {
    if (!req["k"].is_number_integer() || req["k"].get<int64_t>() < 1) return bad_request("k must be a positive integer", "k");
    k = std::min<int64_t>(req["k"].get<int64_t>(), opts_.index->rows);
  }
  k = std::min<int64_t>(k, opts_.index->rows);
  std::vector<const std::string*> in = {req["input"].get_ptr<const std::string*>()};
  CLIP_SERVE_SLOTS(slots, (size_t)1)
  std::vector<BatchItem> items;
  int64_t tokens = 0;
  if (!(image ? image_items(in, "input", items, err) : text_items(in, "input", items, tokens, err))) return err;
  std::vector<std::vector<float>> rows;
  if (!run(slots, std::move(items), rows, err)) return err;
  const SearchIndex& ix = *opts_.index;
  std::vector<int32_t> top((size_t)k);
  std::vector<float> sc((size_t)k);
  cosine_topk(top.data(), sc.data(), rows[0].data(), 1, ix.data.data(), ix.rows, ix.cols, k, model_.device());
  json data = json::array();
  for (int64_t i = 0; i < k; i++)
    data.push_back({{"rank", i + 1}, {"row", top[(size_t)i]}, {"score", sc[(size_t)i]},
                    {"source", ix.sources[(size_t)top[(size_t)i]]}});
  Response r;
  r.body = dump(json{{"object", "list"}, {"data", data}, {"model", opts_.model_name}});
  return r;
}

Response Api::models() const {
  json m = {{"id", opts_.model_name}, {"object", "model"}, {"created", created_}, {"owned_by", "clip"}};
  Response r;
  r.body = dump(json{{"object", "list"}, {"data", json::array({m})}});
  return r;
}

Response Api::health() const {
  Response r;
  r.body = R"({"status":"ok"})";
  return r;
}

Response Api::ready() const {
  Response r;
  if (draining_) {
    r.status = 503;
    r.body = R"({"status":"draining"})";
  } else if (!batcher_.ready()) {
    r.status = 503;
    r.body = R"({"status":"loading"})";
  } else {
    r.body = R"({"status":"ready"})";
  }
  return r;
}

void Api::record(const std::string& endpoint, int status, double seconds) {
  std::lock_guard<std::mutex> lk(mu_);
  requests_[{endpoint, status}]++;
  std::vector<uint64_t>& h = latency_[endpoint];
  if (h.empty()) h.assign(kNumBuckets + 1, 0);
  size_t b = 0;
  while (b < kNumBuckets && seconds > kBuckets[b]) b++;
  h[b]++;
  latency_sum_[endpoint] += seconds;
}

Response Api::metrics() const {
  BatcherStats st = batcher_.stats();
  std::string s;
  char buf[1024];
  s += "# HELP clip_requests_total HTTP requests by endpoint and status.\n# TYPE clip_requests_total counter\n";
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& [k, v] : requests_) {
      snprintf(buf, sizeof buf, "clip_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", k.first.c_str(),
               k.second, (unsigned long long)v);
      s += buf;
    }
    s += "# HELP clip_request_seconds Request latency.\n# TYPE clip_request_seconds histogram\n";
    for (auto& [ep, h] : latency_) {
      uint64_t cum = 0;
      for (size_t b = 0; b <= kNumBuckets; b++) {
        cum += h[b];
        if (b < kNumBuckets)
          snprintf(buf, sizeof buf, "clip_request_seconds_bucket{endpoint=\"%s\",le=\"%g\"} %llu\n", ep.c_str(),
                   kBuckets[b], (unsigned long long)cum);
        else
          snprintf(buf, sizeof buf, "clip_request_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} %llu\n", ep.c_str(),
                   (unsigned long long)cum);
        s += buf;
      }
      snprintf(buf, sizeof buf, "clip_request_seconds_sum{endpoint=\"%s\"} %.6f\nclip_request_seconds_count{endpoint=\"%s\"} %llu\n",
               ep.c_str(), latency_sum_.at(ep), ep.c_str(), (unsigned long long)cum);
      s += buf;
    }
  }
  s += "# HELP clip_batch_size Items per model batch.\n# TYPE clip_batch_size histogram\n";
  uint64_t cum = 0, sum = 0;
  for (size_t b = 1; b < st.batch_size_counts.size(); b++) {
    cum += st.batch_size_counts[b];
    sum += b * st.batch_size_counts[b];
    if ((b & (b - 1)) == 0 || b + 1 == st.batch_size_counts.size()) {
      snprintf(buf, sizeof buf, "clip_batch_size_bucket{le=\"%zu\"} %llu\n", b, (unsigned long long)cum);
      s += buf;
    }
  }
  snprintf(buf, sizeof buf, "clip_batch_size_bucket{le=\"+Inf\"} %llu\nclip_batch_size_sum %llu\nclip_batch_size_count %llu\n",
           (unsigned long long)cum, (unsigned long long)sum, (unsigned long long)cum);
  s += buf;
  const double up = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  snprintf(buf, sizeof buf,
           "# HELP clip_queue_items Items queued for the model.\n# TYPE clip_queue_items gauge\nclip_queue_items %zu\n"
           "# HELP clip_queue_reserved_items Items reserved, queued or running.\n# TYPE clip_queue_reserved_items gauge\n"
           "clip_queue_reserved_items %zu\n",
           st.queued, st.reserved);
  s += buf;
  snprintf(buf, sizeof buf,
           "# HELP clip_items_total Items embedded.\n# TYPE clip_items_total counter\nclip_items_total %llu\n"
           "# HELP clip_batches_total Model batches by kind.\n# TYPE clip_batches_total counter\n"
           "clip_batches_total{kind=\"text\"} %llu\nclip_batches_total{kind=\"image\"} %llu\n",
           (unsigned long long)st.items, (unsigned long long)st.text_batches, (unsigned long long)st.image_batches);
  s += buf;
  snprintf(buf, sizeof buf,
           "# HELP clip_items_per_second Items embedded per second since the start.\n# TYPE clip_items_per_second gauge\n"
           "clip_items_per_second %.3f\n# HELP clip_model_busy_seconds_total The worker's time in the model.\n"
           "# TYPE clip_model_busy_seconds_total counter\nclip_model_busy_seconds_total %.6f\n",
           up > 0 ? (double)st.items / up : 0.0, st.busy_seconds);
  s += buf;
  Response r;
  r.body = std::move(s);
  r.content_type = "text/plain; version=0.0.4";
  return r;
}

}  // namespace clip::serve
