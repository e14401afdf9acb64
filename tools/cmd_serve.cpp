// clip serve: an HTTP embedding server (OpenAI's /v1/embeddings; /v1/classify, /v1/score,
// /v1/search; openapi.yaml describes them) with dynamic batching.
//
// cpp-httplib (Debian's libcpp-httplib-dev) does the HTTP: a thread pool of --threads
// connection workers, each reading one request with read/write timeouts, so a stalled client
// holds one worker for at most --io-timeout-s per read. A worker parses the request, tokenizes
// the texts or decodes the images (tools/serve/api.cpp) and queues the items for the one model
// worker (tools/serve/batcher.h), which batches them across requests.
//
// SIGINT / SIGTERM: the listening socket closes, the requests already read are answered
// (new ones on open connections get 503), the queue drains, and the process exits 0.
#include <httplib.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "tools/common.h"
#include "tools/serve/api.h"
#include "tools/serve/batcher.h"

namespace clip::tool {
namespace {

using clip::serve::Api;
using clip::serve::Response;

struct ServeArgs {
  ModelArgs model;
  std::string host = "127.0.0.1", api_key, model_name, log = "requests", index;
  int port = 8080, max_batch = 0, max_wait_ms = 5, threads = 16, io_timeout_s = 5, request_timeout_s = 60;
  size_t max_request_bytes = 16u << 20, max_inputs = 2048, max_queue = 1024;
  int64_t max_image_pixels = 40000000;
};

// Equal without a data-dependent early exit: the time depends only on the lengths.
bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char d = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; i++) {
    const unsigned char x = i < a.size() ? (unsigned char)a[i] : 0, y = i < b.size() ? (unsigned char)b[i] : 0;
    d |= (unsigned char)(x ^ y);
  }
  return d == 0;
}

std::string default_model_name(const std::string& path) {
  std::filesystem::path p(path);
  while (!p.empty() && (p.filename().empty() || p.filename() == "hf")) p = p.parent_path();
  std::string s = p.filename().string();
  return s.empty() ? path : s;
}

// When the request being handled on this thread was read (the pre-routing handler and the
// logger run on the thread that handles the request).
thread_local std::chrono::steady_clock::time_point t_request_start;

// --index EMB.npy and the sources EMB.npy.jsonl names per row (as `clip search` reads them).
serve::SearchIndex load_index(const std::string& path, int64_t dim) {
  NpyArray a = read_npy(path);
  CLIP_CHECK(a.rows > 0, "%s holds no embeddings", path.c_str());
  CLIP_CHECK(a.cols == dim, "%s holds %ld-dim embeddings but the model makes %ld-dim ones", path.c_str(),
             (long)a.cols, (long)dim);
  serve::SearchIndex ix;
  ix.rows = a.rows;
  ix.cols = a.cols;
  ix.data = std::move(a.data);
  ix.sources.assign((size_t)ix.rows, "");
  std::ifstream f(path + ".jsonl", std::ios::binary);
  std::string line;
  while (f && std::getline(f, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("row") || !j["row"].is_number_integer() ||
        !j.contains("source") || !j["source"].is_string())
      continue;
    const int64_t r = j["row"].get<int64_t>();
    if (r >= 0 && r < ix.rows) ix.sources[(size_t)r] = j["source"].get<std::string>();
  }
  return ix;
}

// Debian's cpp-httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled into
// the library), so a burst of connections while the CPU is busy with the model is reset (seen
// with 64 clients on ViT-B/32). listen() again on the bound socket raises it; the socket is
// found as the one listening on our port.
void raise_listen_backlog(int port, int backlog) {
  for (int fd = 3; fd < 1024; fd++) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (getsockname(fd, (sockaddr*)&addr, &alen) != 0) continue;
    int p = addr.ss_family == AF_INET    ? ntohs(((sockaddr_in*)&addr)->sin_port)
            : addr.ss_family == AF_INET6 ? ntohs(((sockaddr_in6*)&addr)->sin6_port)
                                         : -1;
    if (p == port) ::listen(fd, backlog);
  }
}

void send(httplib::Response& res, const Response& r) {
  res.status = r.status;
  for (auto& [k, v] : r.headers) res.set_header(k.c_str(), v);
  res.set_content(r.body, r.content_type.c_str());
}

int run_serve(const ServeArgs& a) {
  if (a.port < 0 || a.port > 65535) throw UsageError("serve: --port must be in 0..65535");
  // glibc gives each of the HTTP, decode and model threads an arena of its own (up to 8 per core),
  // and freed request buffers stay spread over them. Under 64 clients (bench/serve_load.py, 150 s,
  // 2 cores) the RSS levels off either way, at 509 MB after 100 s with glibc's 16 arenas and at
  // 479 MB after 75 s with 4, at the same 1,300 rows/s. An explicit MALLOC_ARENA_MAX wins.
  if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 4);
  ModelOptions mo = a.model.options();
  const int max_batch = a.max_batch > 0 ? a.max_batch : mo.max_batch;
  mo.max_batch = std::max(mo.max_batch, max_batch);
  CLIP_CHECK(a.model.model.rfind("hf-hub:", 0) == 0 || std::filesystem::exists(a.model.model), "model not found: %s",
             a.model.model.c_str());
  std::unique_ptr<Model> model = Model::load(a.model.model, mo);
  print_notes(*model);
  install_interrupt_handler();

  serve::BatcherOptions bo;
  bo.max_batch = max_batch;
  bo.max_wait_ms = a.max_wait_ms;
  bo.max_queue = a.max_queue;
  serve::Batcher batcher(*model, bo);
  serve::ApiOptions ao;
  ao.model_name = a.model_name.empty() ? default_model_name(a.model.model) : a.model_name;
  ao.max_inputs = a.max_inputs;
  ao.request_timeout_ms = a.request_timeout_s * 1000;
  ao.image_limits.max_pixels = a.max_image_pixels;
  serve::SearchIndex index;
  if (!a.index.empty()) {
    index = load_index(a.index, model->embed_dim());
    ao.index = &index;
  }
  Api api(*model, batcher, ao);

  httplib::Server svr;
  const size_t threads = (size_t)a.threads;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(a.max_request_bytes);
  svr.set_read_timeout(a.io_timeout_s, 0);
  svr.set_write_timeout(a.io_timeout_s, 0);
  svr.set_keep_alive_timeout(a.io_timeout_s);
  svr.set_keep_alive_max_count(100);
  // cpp-httplib sends a response's headers and body in two writes, and with Nagle's algorithm on
  // (its default) the body waited for the client's delayed ACK: 40 ms on every response, 3x
  // infinity's p50 at one client (bench/RESULTS_CPU.md).
  svr.set_tcp_nodelay(true);

  const std::string bearer = "Bearer " + a.api_key;
  svr.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
    t_request_start = std::chrono::steady_clock::now();
    const bool open = req.path == "/health" || req.path == "/ready";
    if (!a.api_key.empty() && !open && !constant_time_equal(req.get_header_value("Authorization"), bearer)) {
      send(res, serve::error_response(401, "a valid API key is required: Authorization: Bearer KEY",
                                      "invalid_request_error", "", "invalid_api_key"));
      res.set_header("WWW-Authenticate", "Bearer");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  svr.Post("/v1/embeddings", [&](const httplib::Request& req, httplib::Response& res) { send(res, api.embeddings(req.body)); });
  svr.Post("/v1/classify", [&](const httplib::Request& req, httplib::Response& res) { send(res, api.classify(req.body)); });
  svr.Post("/v1/score", [&](const httplib::Request& req, httplib::Response& res) { send(res, api.score(req.body)); });
  svr.Post("/v1/search", [&](const httplib::Request& req, httplib::Response& res) { send(res, api.search(req.body)); });
  svr.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) { send(res, api.models()); });
  svr.Get("/health", [&](const httplib::Request&, httplib::Response& res) { send(res, api.health()); });
  svr.Get("/ready", [&](const httplib::Request&, httplib::Response& res) { send(res, api.ready()); });
  svr.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) { send(res, api.metrics()); });
  // Errors the library answers itself (404, 413, 400 for a malformed request) get an OpenAI body.
  // A known path asked with another method (404 from the router; 400 for the methods cpp-httplib
  // does not route: TRACE and CONNECT) is a 405 with the Allow header. A method it does not know
  // (QUERY) stays a 400 "malformed", as the library reads no path then. After a 400 it has not read
  // the request's body, so the response says Connection: close (the server would read that body as
  // the next request on the connection).
  const std::map<std::string, const char*> methods = {
      {"/v1/embeddings", "POST"}, {"/v1/classify", "POST"}, {"/v1/score", "POST"}, {"/v1/search", "POST"},
      {"/v1/models", "GET, HEAD"}, {"/health", "GET, HEAD"}, {"/ready", "GET, HEAD"}, {"/metrics", "GET, HEAD"}};
  svr.set_error_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    static const std::set<std::string> routed = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    const bool unrouted = res.status == 400 && !req.path.empty() && !routed.count(req.method);
    if (res.status == 400) res.set_header("Connection", "close");
    if (res.status == 404 || unrouted) {
      const auto known = methods.find(req.path);
      res.status = known != methods.end() ? 405 : 404;
      if (res.status == 405) res.set_header("Allow", known->second);
    }
    std::string msg = "error", type = "invalid_request_error";
    switch (res.status) {
      case 404: msg = "no such endpoint: " + req.method + " " + req.path; break;
      case 405:
        msg = "method " + req.method + " is not allowed on " + req.path + " (" + res.get_header_value("Allow") + ")";
        break;
      case 413:
        // cpp-httplib caps form-encoded bodies at 8 KB (what curl -d sends without -H).
        msg = req.get_header_value("Content-Type") == "application/x-www-form-urlencoded"
                  ? "a form-encoded body is limited to 8192 bytes: send Content-Type: application/json"
                  : "the request body is over --max-request-bytes (" + std::to_string(a.max_request_bytes) + ")";
        break;
      case 414: msg = "the request URI is too long"; break;
      case 400: msg = "malformed HTTP request"; break;
      default:
        if (res.status >= 500) type = "server_error";
        msg = "HTTP status " + std::to_string(res.status);
    }
    Response r = serve::error_response(res.status, msg, type);
    res.set_content(r.body, r.content_type.c_str());
  });
  svr.set_exception_handler([&](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string msg = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      msg = e.what();
    } catch (...) {
    }
    send(res, serve::error_response(500, msg, "server_error"));
  });
  const bool log = a.log == "requests";
  svr.set_logger([&](const httplib::Request& req, const httplib::Response& res) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_request_start).count();
    static const char* known[] = {"/v1/embeddings", "/v1/classify", "/v1/score", "/v1/search",
                                  "/v1/models",     "/health",      "/ready",    "/metrics"};
    std::string endpoint = "other";
    for (const char* k : known)
      if (req.path == k) endpoint = k;
    api.record(endpoint, res.status, secs);
    if (log)
      fprintf(stderr, "clip serve: %s %s %s %d %zu bytes in %zu out %.1f ms\n", req.remote_addr.c_str(),
              req.method.c_str(), req.path.c_str(), res.status, req.body.size(), res.body.size(), secs * 1e3);
  });

  const int port = a.port == 0 ? svr.bind_to_any_port(a.host) : (svr.bind_to_port(a.host, a.port) ? a.port : -1);
  CLIP_CHECK(port > 0, "serve: cannot listen on %s:%d", a.host.c_str(), a.port);
  raise_listen_backlog(port, 1024);
  fprintf(stderr, "clip serve: %s on %s, max batch %d, max wait %d ms; listening on http://%s:%d\n",
          ao.model_name.c_str(), device_name(model->device()), max_batch, a.max_wait_ms, a.host.c_str(), port);
  fflush(stderr);

  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done && !interrupted()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (interrupted()) {
      fprintf(stderr, "clip serve: stopping: answering the requests already read\n");
      api.set_draining();
      svr.stop();
    }
  });
  const bool ok = svr.listen_after_bind();  // returns once stopped and every worker has finished
  done = true;
  watcher.join();
  batcher.stop();
  fprintf(stderr, "clip serve: stopped\n");
  return ok || interrupted() ? kExitOk : kExitError;
}

CommandRun setup(CLI::App* sub) {
  auto a = std::make_shared<ServeArgs>();
  a->model.add(sub);
  sub->add_option("--host", a->host, "Address to listen on (default 127.0.0.1: loopback only)");
  sub->add_option("--port", a->port, "Port (0: any free port; the one taken is logged)");
  sub->add_option("--max-batch", a->max_batch, "Items per model batch (default: --batch-size's default)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--max-wait-ms", a->max_wait_ms, "A batch closes this long after its first item (default 5)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--index", a->index, "Embeddings from `clip embed -o EMB.npy` for /v1/search");
  sub->add_option("--api-key", a->api_key, "Require Authorization: Bearer KEY on /v1/* and /metrics");
  sub->add_option("--max-request-bytes", a->max_request_bytes, "Largest request body (default 16 MiB; over it: 413)");
  sub->add_option("--max-inputs", a->max_inputs, "Most inputs in one request (default 2048)")->check(CLI::PositiveNumber);
  sub->add_option("--max-queue", a->max_queue, "Most items queued or running (default 1024; over it: 429)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--max-image-pixels", a->max_image_pixels, "Largest decoded image in pixels (default 40,000,000)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--threads", a->threads, "HTTP connection workers, which also decode images (default 16)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--io-timeout-s", a->io_timeout_s, "Read/write/keep-alive timeout per socket operation (default 5)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--request-timeout-s", a->request_timeout_s, "A request's wait for its embeddings (default 60; then 504)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--served-model-name", a->model_name, "The model id in responses (default: the model's file name)");
  sub->add_option("--log", a->log, "requests: one line per request on stderr; none")
      ->check(CLI::IsMember({"requests", "none"}));
  return [a] { return run_serve(*a); };
}

Register reg("serve", "HTTP embedding server (OpenAI /v1/embeddings) with dynamic batching", setup);

}  // namespace
}  // namespace clip::tool
