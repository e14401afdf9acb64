// The HTTP API of `clip serve`, apart from the HTTP library: each endpoint takes a request
// body and gives a status, a body and headers (tools/cmd_serve.cpp wires them to cpp-httplib).
//
//   POST /v1/embeddings   OpenAI's embeddings request and response; "modality": "image" with
//                         data:image/...;base64 inputs
//   POST /v1/classify     zero-shot labels for images (as `clip classify`)
//   POST /v1/score        images x texts: cosine, logit, probability (as `clip score`)
//   POST /v1/search       a text or image query against --index (as `clip search`)
//   GET  /v1/models, /health, /ready, /metrics
//
// Errors are OpenAI's body: {"error": {"message", "type", "param", "code"}}.
#pragma once
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "clip/clip.h"
#include "tools/serve/batcher.h"

namespace clip::serve {

// Embeddings from `clip embed -o EMB.npy` and the sources its EMB.npy.jsonl names per row.
struct SearchIndex {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;           // [rows, cols]
  std::vector<std::string> sources;  // [rows]; "" where the .jsonl names none
};

struct ApiOptions {
  std::string model_name;          // the "model" the responses name
  size_t max_inputs = 2048;        // inputs per request
  int request_timeout_ms = 60000;  // from a request's items queued to its response
  ImageLimits image_limits{40000000};  // pixels of one decoded image (before resizing)
  const SearchIndex* index = nullptr;  // /v1/search's (nullptr: 400 there)
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

// An OpenAI-style error response.
Response error_response(int status, const std::string& message, const std::string& type,
                        const std::string& param = "", const std::string& code = "");

// Standard base64 (RFC 4648 with padding); decode returns false on any other character or a
// bad length.
std::string base64_encode(const uint8_t* data, size_t n);
bool base64_decode(const char* s, size_t n, std::vector<uint8_t>& out);

class Api {
 public:
  Api(Model& model, Batcher& batcher, const ApiOptions& opts);

  Response embeddings(const std::string& body);
  Response classify(const std::string& body);
  Response score(const std::string& body);
  Response search(const std::string& body);
  Response models() const;
  Response health() const;
  Response ready() const;
  Response metrics() const;

  // Counts a finished request for /metrics.
  void record(const std::string& endpoint, int status, double seconds);
  void set_draining() { draining_ = true; }
  bool draining() const { return draining_; }

 private:
  struct Slots;
  // Data-URI images into items (preprocessed), or texts (tokenized, their tokens counted); on
  // a bad input, err names it as param[i].
  bool image_items(const std::vector<const std::string*>& in, const std::string& param, std::vector<BatchItem>& out,
                   Response& err) const;
  bool text_items(const std::vector<const std::string*>& in, const std::string& param, std::vector<BatchItem>& out,
                  int64_t& tokens, Response& err) const;
  // Runs items for which slots are held through the batcher: rows, or err.
  bool run(Slots& slots, std::vector<BatchItem>&& items, std::vector<std::vector<float>>& rows, Response& err);
  Model& model_;
  Batcher& batcher_;
  ApiOptions opts_;
  PreprocessConfig preprocess_;
  int64_t created_;
  std::atomic<bool> draining_{false};
  // /metrics
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, std::vector<uint64_t>> latency_;  // per endpoint: counts per bucket, + inf
  std::map<std::string, double> latency_sum_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace clip::serve
