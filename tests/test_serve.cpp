// End-to-end tests of `clip serve`: the server runs as a child on a free loopback port (--port
// 0; the port is read from its log) against the tiny golden ViT, and is driven over raw
// sockets (and curl where it is installed). Embeddings are compared bitwise with `clip embed`'s
// for texts and images, single, batched and from many threads at once; then the error codes,
// the limits, stalled clients and a SIGTERM with requests in flight.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tests/test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string tmpdir(const std::string& name) {
  static std::atomic<int> count{0};
  std::string d = (fs::temp_directory_path() /
                   ("clip_serve_" + name + "_" + std::to_string(getpid()) + "_" + std::to_string(count++)))
                      .string();
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Runs build/clip with args, stdout to `out`; returns the exit status.
int clip_run(const std::vector<std::string>& args, const std::string& out) {
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open("/dev/null", O_WRONLY);
    dup2(o, 1);
    dup2(e, 2);
    std::vector<std::string> full = {clip::test::binary_dir() + "/clip"};
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    setenv("OMP_NUM_THREADS", "2", 0);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct HttpResponse {
  int status = 0;  // 0: no response
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (sockaddr*)&addr, sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

bool send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += (size_t)n;
  }
  return true;
}

HttpResponse parse_response(const std::string& raw) {
  HttpResponse r;
  size_t end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return r;
  r.status = std::atoi(raw.c_str() + 9);
  std::istringstream hs(raw.substr(0, end));
  std::string line;
  std::getline(hs, line);
  while (std::getline(hs, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t c = line.find(':');
    if (c == std::string::npos) continue;
    std::string k = line.substr(0, c);
    for (char& ch : k) ch = (char)std::tolower((unsigned char)ch);
    size_t v = c + 1;
    while (v < line.size() && line[v] == ' ') v++;
    r.headers[k] = line.substr(v);
  }
  r.body = raw.substr(end + 4);
  return r;
}

// Sends raw bytes and reads until the server closes the connection.
HttpResponse raw_exchange(int port, const std::string& request) {
  int fd = connect_to(port);
  if (fd < 0) return {};
  send_all(fd, request);
  std::string raw;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, (size_t)n);
  }
  close(fd);
  return parse_response(raw);
}

HttpResponse http(int port, const std::string& method, const std::string& path, const std::string& body = "",
                  const std::string& extra_headers = "") {
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_headers;
  if (method == "POST") req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  return raw_exchange(port, req);
}

std::string b64(const std::string& bytes) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string s;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (uint8_t)bytes[i] << 16 | (uint8_t)bytes[i + 1] << 8 | (uint8_t)bytes[i + 2];
    for (int k = 18; k >= 0; k -= 6) s += t[(v >> k) & 63];
  }
  if (bytes.size() - i == 1) {
    uint32_t v = (uint8_t)bytes[i] << 16;
    s += t[v >> 18];
    s += t[(v >> 12) & 63];
    s += "==";
  } else if (bytes.size() - i == 2) {
    uint32_t v = (uint8_t)bytes[i] << 16 | (uint8_t)bytes[i + 1] << 8;
    s += t[v >> 18];
    s += t[(v >> 12) & 63];
    s += t[(v >> 6) & 63];
    s += '=';
  }
  return s;
}

std::vector<float> unb64(const std::string& s) {
  std::vector<uint8_t> out;
  uint32_t v = 0;
  int bits = 0;
  for (char c : s) {
    const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char* p = std::strchr(t, c);
    if (c == '=' || !p) break;
    v = v << 6 | (uint32_t)(p - t);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back((uint8_t)(v >> bits));
    }
  }
  std::vector<float> f(out.size() / 4);
  std::memcpy(f.data(), out.data(), f.size() * 4);
  return f;
}

// A `clip serve` child on a free loopback port.
class Server {
 public:
  bool start(const std::string& model, const std::vector<std::string>& extra) {
    dir_ = tmpdir("server");
    log_ = dir_ + "/log";
    pid_ = fork();
    if (pid_ == 0) {
      int e = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(e, 2);
      std::vector<std::string> full = {clip::test::binary_dir() + "/clip", "serve", "--device", "cpu", "--model",
                                       model, "--port", "0"};
      full.insert(full.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : full) argv.push_back(a.data());
      argv.push_back(nullptr);
      setenv("OMP_NUM_THREADS", "2", 0);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
      std::string log = clip::test::read_file(log_);
      size_t p = log.find("listening on http://127.0.0.1:");
      if (p != std::string::npos && log.find('\n', p) != std::string::npos) {
        port = std::atoi(log.c_str() + p + std::strlen("listening on http://127.0.0.1:"));
        break;
      }
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    while (port > 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
      if (http(port, "GET", "/ready").status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  // SIGTERM and the exit status.
  int stop() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string log() const { return clip::test::read_file(log_); }
  ~Server() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  int port = -1;

 private:
  pid_t pid_ = -1;
  std::string dir_, log_;
};

bool serve_built() {
  std::string d = tmpdir("help");
  int rc = clip_run({"serve", "--help"}, d + "/out");
  fs::remove_all(d);
  return rc == 0;
}

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    init();
    if (gd.empty()) return;
    server = new Server();
    if (!server->start(model, {"--max-batch", "8", "--max-wait-ms", "5", "--max-request-bytes", "4000000",
                               "--max-inputs", "64", "--io-timeout-s", "1"})) {
      delete server;
      server = nullptr;
    }
  }
  // The references, once for every suite.
  static void init() {
    static bool done = false;
    if (done) return;
    done = true;
    if (clip::test::golden_dir().empty() || !serve_built()) return;
    gd = clip::test::golden_dir();
    model = gd + "/tiny-vit/hf";
    std::ifstream f(gd + "/tiny-vit/golden.json");
    json g = json::parse(f);
    for (auto& t : g["texts"])
      if (!t.get<std::string>().empty()) texts.push_back(t.get<std::string>());
    for (auto& im : g["images"]) images.push_back(gd + "/images/" + im["file"].get<std::string>());
    // The references: `clip embed` over every text and image, in one run, kept beside the
    // binary for the other test processes (ctest runs each test in its own) and made again
    // when the binary changes, or the instruction set the CPU backend is capped at (its
    // results differ in the last bits between them).
    std::string d = tmpdir("ref");
    const std::string bin = clip::test::binary_dir() + "/clip";
    auto env = [](const char* k) {
      const char* v = std::getenv(k);
      return std::string(v ? v : "");
    };
    const std::string ref = clip::test::binary_dir() + "/test_serve_ref_" +
                            std::to_string(fs::last_write_time(bin).time_since_epoch().count()) + "_" +
                            env("CLIP_CPU_ISA") + "_" + env("ONEDNN_MAX_CPU_ISA") + ".jsonl";
    if (!fs::exists(ref)) {
      std::vector<std::string> args = {"embed", "--device", "cpu", "--model", model};
      for (auto& p : images) args.insert(args.end(), {"--image", p});
      for (auto& t : texts) args.insert(args.end(), {"--text", t});
      ASSERT_EQ(clip_run(args, d + "/out.jsonl"), 0);
      fs::copy_file(d + "/out.jsonl", ref + "." + std::to_string(getpid()), fs::copy_options::overwrite_existing);
      fs::rename(ref + "." + std::to_string(getpid()), ref);
    }
    std::ifstream in(ref);
    std::string line;
    std::vector<std::vector<float>> rows;
    while (std::getline(in, line)) {
      json j = json::parse(line);
      std::vector<float> r;
      for (auto& x : j["embedding"]) r.push_back((float)x.get<double>());
      rows.push_back(r);
    }
    ASSERT_EQ(rows.size(), images.size() + texts.size());
    image_ref.assign(rows.begin(), rows.begin() + (std::ptrdiff_t)images.size());
    text_ref.assign(rows.begin() + (std::ptrdiff_t)images.size(), rows.end());
    for (auto& p : images) {
      std::string bytes = clip::test::read_file(p);
      std::string ext = fs::path(p).extension().string().substr(1);
      data_uris.push_back("data:image/" + ext + ";base64," + b64(bytes));
    }
    fs::remove_all(d);
  }
  static void TearDownTestSuite() {
    if (server) {
      EXPECT_EQ(server->stop(), 0);
      delete server;
      server = nullptr;
    }
  }
  void SetUp() override {
    if (clip::test::golden_dir().empty()) GTEST_SKIP() << "golden fixtures not found (../shared/golden)";
    if (gd.empty()) GTEST_SKIP() << "clip was built without `serve` (no cpp-httplib)";
    if (own_server) return;
    ASSERT_TRUE(server) << "the server did not start";
    port = server->port;
  }
  bool own_server = false;

  static json post(int port, const json& body, int expect = 200, const std::string& headers = "") {
    HttpResponse r = http(port, "POST", "/v1/embeddings", body.dump(), headers);
    EXPECT_EQ(r.status, expect) << r.body;
    json j = json::parse(r.body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.body;
    return j;
  }
  // The rows of an embeddings response, from floats or base64.
  static std::vector<std::vector<float>> rows_of(const json& j) {
    std::vector<std::vector<float>> rows;
    for (size_t i = 0; i < j["data"].size(); i++) {
      const json& d = j["data"][i];
      EXPECT_EQ(d["index"], i);
      EXPECT_EQ(d["object"], "embedding");
      if (d["embedding"].is_string()) {
        rows.push_back(unb64(d["embedding"].get<std::string>()));
      } else {
        std::vector<float> r;
        for (auto& x : d["embedding"]) r.push_back((float)x.get<double>());
        rows.push_back(r);
      }
    }
    return rows;
  }
  static void expect_bitwise(const std::vector<float>& got, const std::vector<float>& ref, const std::string& what) {
    ASSERT_EQ(got.size(), ref.size()) << what;
    EXPECT_EQ(std::memcmp(got.data(), ref.data(), ref.size() * 4), 0) << what << " differs from clip embed's";
  }
  static void expect_error(const json& j, const std::string& fragment) {
    ASSERT_TRUE(j.contains("error")) << j.dump();
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_TRUE(j["error"].contains("type") && j["error"].contains("param") && j["error"].contains("code"));
    EXPECT_NE(j["error"]["message"].get<std::string>().find(fragment), std::string::npos) << j.dump();
  }

  static inline std::string gd, model;
  static inline std::vector<std::string> texts, images, data_uris;
  static inline std::vector<std::vector<float>> text_ref, image_ref;
  static inline Server* server = nullptr;
  int port = -1;
};

TEST_F(Serve, HealthReadyModels) {
  HttpResponse h = http(port, "GET", "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(json::parse(h.body)["status"], "ok");
  EXPECT_EQ(http(port, "GET", "/ready").status, 200);
  json m = json::parse(http(port, "GET", "/v1/models").body);
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 1u);
  EXPECT_EQ(m["data"][0]["id"], "tiny-vit");
  HttpResponse nf = http(port, "GET", "/v1/nothing");
  EXPECT_EQ(nf.status, 404);
  expect_error(json::parse(nf.body), "no such endpoint");
  EXPECT_EQ(http(port, "TRACE", "/v1/nothing").status, 404);
  // a known path with another method: 405 and the methods it takes (found by schemathesis)
  for (const auto& [method, path, allow] : std::vector<std::array<std::string, 3>>{
           {"GET", "/v1/embeddings", "POST"}, {"PUT", "/v1/search", "POST"}, {"POST", "/health", "GET, HEAD"},
           {"TRACE", "/ready", "GET, HEAD"}, {"DELETE", "/metrics", "GET, HEAD"}}) {
    HttpResponse r = http(port, method, path, "", method == "POST" ? "" : "Content-Length: 0\r\n");
    EXPECT_EQ(r.status, 405) << method << " " << path;
    EXPECT_EQ(r.headers["allow"], allow) << method << " " << path;
    expect_error(json::parse(r.body), "is not allowed on " + path);
  }
  // a method cpp-httplib does not know: 400, and the connection closed, its body being unread
  HttpResponse q = http(port, "QUERY", "/v1/models", "{}", "Content-Length: 2\r\n");
  EXPECT_EQ(q.status, 400);
  EXPECT_EQ(q.headers["connection"], "close");
}

TEST_F(Serve, TextsBitwiseClipEmbed) {
  // One at a time, as a string.
  for (size_t i = 0; i < texts.size(); i++) {
    json j = post(port, {{"input", texts[i]}, {"model", "tiny-vit"}});
    auto rows = rows_of(j);
    ASSERT_EQ(rows.size(), 1u);
    expect_bitwise(rows[0], text_ref[i], "text " + std::to_string(i));
    EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 2);
    EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"]);
    EXPECT_EQ(j["object"], "list");
  }
  // All in one request, as floats and as base64.
  for (const char* fmt : {"float", "base64"}) {
    json j = post(port, {{"input", texts}, {"encoding_format", fmt}});
    auto rows = rows_of(j);
    ASSERT_EQ(rows.size(), texts.size());
    for (size_t i = 0; i < texts.size(); i++) expect_bitwise(rows[i], text_ref[i], std::string(fmt) + " text " + std::to_string(i));
  }
}

TEST_F(Serve, TokenIdsAsTheirText) {
  // The ids `clip tokenize` gives, without start, end and padding: the text's embedding.
  std::string d = tmpdir("tok");
  ASSERT_EQ(clip_run({"tokenize", "--model", model, "--text", texts[0]}, d + "/out"), 0);
  json t = json::parse(clip::test::read_file(d + "/out"));
  fs::remove_all(d);
  std::vector<int> ids;
  for (size_t i = 1; i < t["ids"].size() && t["ids"][i] != 49407; i++) ids.push_back(t["ids"][i]);
  auto rows = rows_of(post(port, {{"input", ids}}));
  ASSERT_EQ(rows.size(), 1u);
  expect_bitwise(rows[0], text_ref[0], "token ids");
  rows = rows_of(post(port, {{"input", json::array({ids, ids})}}));
  ASSERT_EQ(rows.size(), 2u);
  expect_bitwise(rows[1], text_ref[0], "token ids");
  expect_error(post(port, {{"input", json::array({1, 2, 99999999})}}, 400), "outside the vocabulary");
}

TEST_F(Serve, ImagesBitwiseClipEmbed) {
  for (size_t i = 0; i < images.size(); i++) {
    auto rows = rows_of(post(port, {{"input", data_uris[i]}, {"modality", "image"}}));
    ASSERT_EQ(rows.size(), 1u);
    expect_bitwise(rows[0], image_ref[i], images[i]);
  }
  auto rows = rows_of(post(port, {{"input", data_uris}, {"modality", "image"}, {"encoding_format", "base64"}}));
  ASSERT_EQ(rows.size(), images.size());
  for (size_t i = 0; i < images.size(); i++) expect_bitwise(rows[i], image_ref[i], images[i]);
}

TEST_F(Serve, ConcurrentRequestsBatchAndStayBitwise) {
  // 16 threads x 4 requests of 1-3 texts or images each: batched across requests, every
  // request's rows in its order.
  std::atomic<int> bad{0}, ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; t++)
    threads.emplace_back([&, t] {
      for (int k = 0; k < 4; k++) {
        const bool image = (t + k) % 2 == 0;
        const size_t n = 1 + (size_t)(t + k) % 3;
        json in = json::array();
        std::vector<size_t> which;
        for (size_t j = 0; j < n; j++) {
          size_t w = (size_t)(t * 7 + k * 3 + (int)j) % (image ? images.size() : texts.size());
          which.push_back(w);
          in.push_back(image ? data_uris[w] : texts[w]);
        }
        json body = {{"input", in}, {"encoding_format", k % 2 ? "base64" : "float"}};
        if (image) body["modality"] = "image";
        HttpResponse r = http(port, "POST", "/v1/embeddings", body.dump());
        json j = json::parse(r.body, nullptr, false);
        if (r.status != 200 || j.is_discarded() || j["data"].size() != n) {
          bad++;
          continue;
        }
        auto rows = rows_of(j);
        for (size_t i = 0; i < n; i++) {
          const auto& ref = image ? image_ref[which[i]] : text_ref[which[i]];
          if (rows[i].size() != ref.size() || std::memcmp(rows[i].data(), ref.data(), ref.size() * 4) != 0) bad++;
        }
        ok++;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(ok, 64);
  // The batches formed across requests: /metrics counts fewer batches than items.
  HttpResponse m = http(port, "GET", "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("clip_batch_size_bucket"), std::string::npos);
  EXPECT_NE(m.body.find("clip_requests_total{endpoint=\"/v1/embeddings\",status=\"200\"}"), std::string::npos);
}

TEST_F(Serve, BadRequestsAre400) {
  auto raw = [&](const std::string& body) {
    HttpResponse r = http(port, "POST", "/v1/embeddings", body);
    EXPECT_EQ(r.status, 400) << body;
    return json::parse(r.body, nullptr, false);
  };
  expect_error(raw("{\"input\": "), "not valid JSON");
  expect_error(raw("[1, 2]"), "JSON object");
  expect_error(raw("{}"), "input is required");
  expect_error(post(port, {{"input", json::array()}}, 400), "must not be empty");
  expect_error(post(port, {{"input", ""}}, 400), "empty string");
  expect_error(post(port, {{"input", 12.5}}, 400), "must be a string");
  expect_error(post(port, {{"input", json::array({"a", 3})}}, 400), "input[1] must be a string");
  expect_error(post(port, {{"input", json::array({json::array({1, 2}), json::array()})}}, 400), "input[1]");
  expect_error(post(port, {{"input", "a"}, {"dimensions", 16}}, 400), "dimensions");
  expect_error(post(port, {{"input", "a"}, {"encoding_format", "int8"}}, 400), "encoding_format");
  expect_error(post(port, {{"input", "a"}, {"modality", "audio"}}, 400), "modality");
  expect_error(post(port, {{"input", "a"}, {"model", 3}}, 400), "model");
  expect_error(raw("{\"input\": [\"\xff\"]}"), "not valid JSON");  // not UTF-8
  json many = json::array();
  for (int i = 0; i < 65; i++) many.push_back("x");
  expect_error(post(port, {{"input", many}}, 400), "--max-inputs");
  // Images.
  json img = {{"modality", "image"}};
  img["input"] = "https://example.com/cat.jpg";
  expect_error(post(port, img, 400), "URLs are not fetched");
  img["input"] = "cat.jpg";
  expect_error(post(port, img, 400), "data:image");
  img["input"] = json::array({data_uris[0], "data:image/png;base64,@@@@"});
  expect_error(post(port, img, 400), "input[1]: invalid base64");
  img["input"] = json::array({data_uris[0], data_uris[1], "data:image/png;base64," + b64("not an image at all")});
  expect_error(post(port, img, 400), "input[2]: the image does not decode");
  img["input"] = json::array({1, 2});
  expect_error(post(port, img, 400), "data:image");
  // The server still answers correctly after all that.
  expect_bitwise(rows_of(post(port, {{"input", texts[0]}}))[0], text_ref[0], "after errors");
}

TEST_F(Serve, OverMaxRequestBytesIs413) {
  std::string big = "{\"input\": \"" + std::string(4100000, 'a') + "\"}";
  HttpResponse r = http(port, "POST", "/v1/embeddings", big);
  EXPECT_EQ(r.status, 413);
  expect_error(json::parse(r.body, nullptr, false), "--max-request-bytes");
  // curl -d without a Content-Type sends a form: cpp-httplib caps those at 8 KB; the error says so.
  std::string form = "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9000\r\n\r\n" + std::string(9000, 'a');
  r = raw_exchange(port, form);
  EXPECT_EQ(r.status, 413);
  expect_error(json::parse(r.body, nullptr, false), "Content-Type: application/json");
}

TEST_F(Serve, MalformedHttp) {
  EXPECT_EQ(raw_exchange(port, "GARBAGE\r\n\r\n").status, 400);
  const std::string close = "Connection: close\r\n";
  HttpResponse big = raw_exchange(port, "GET /health HTTP/1.1\r\nHost: x\r\n" + close + "X-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  EXPECT_EQ(big.status, 400);
  // Far more headers than a request needs (cpp-httplib bounds each line, not their count).
  std::string many = "GET /health HTTP/1.1\r\nHost: x\r\n" + close;
  for (int i = 0; i < 2000; i++) many += "X-H" + std::to_string(i) + ": v\r\n";
  EXPECT_NE(raw_exchange(port, many + "\r\n").status, 0);
  // Not HTTP at all, and a bare newline flood.
  EXPECT_EQ(raw_exchange(port, std::string(5000, '\n')).status, 400);
  // A body shorter than its Content-Length: the read times out (--io-timeout-s 1): 400.
  EXPECT_EQ(raw_exchange(port, "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n" + close + "Content-Length: 10\r\n\r\n{\"in").status, 400);
  EXPECT_EQ(http(port, "GET", "/health").status, 200);
}

TEST_F(Serve, Curl) {
  if (system("curl --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "curl not installed";
  std::string d = tmpdir("curl");
  std::string cmd = "curl -s -o " + d + "/out -w '%{http_code}' http://127.0.0.1:" + std::to_string(port) +
                    "/v1/embeddings -H 'Content-Type: application/json' -d '{\"input\": [\"a photo of a cat\"]}' > " +
                    d + "/code";
  ASSERT_EQ(system(cmd.c_str()), 0);
  EXPECT_EQ(clip::test::read_file(d + "/code"), "200");
  auto rows = rows_of(json::parse(clip::test::read_file(d + "/out")));
  fs::remove_all(d);
  ASSERT_EQ(rows.size(), 1u);
  expect_bitwise(rows[0], text_ref[0], "curl");
}

TEST_F(Serve, ScoreAndClassify) {
  HttpResponse r = http(port, "POST", "/v1/score",
                        json({{"images", json::array({data_uris[0], data_uris[3]})}, {"texts", json::array({texts[0], texts[1]})}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  ASSERT_EQ(j["data"].size(), 2u);
  for (int i = 0; i < 2; i++) {
    double psum = 0;
    for (int t = 0; t < 2; t++) {
      const json& sc = j["data"][i]["scores"][t];
      const auto& a = image_ref[i ? 3 : 0];
      const auto& b = text_ref[(size_t)t];
      double dot = 0;
      for (size_t d = 0; d < a.size(); d++) dot += (double)a[d] * b[d];
      EXPECT_NEAR(sc["cosine"].get<double>(), dot, 1e-5);
      psum += sc["probability"].get<double>();
    }
    EXPECT_NEAR(psum, 1.0, 1e-5);
  }
  r = http(port, "POST", "/v1/classify",
           json({{"images", json::array({data_uris[0]})}, {"labels", json::array({"cat", "dog", "rocket"})}, {"k", 2},
                 {"templates", "openai_imagenet"}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  j = json::parse(r.body);
  EXPECT_EQ(j["templates"], 80);
  ASSERT_EQ(j["data"][0]["labels"].size(), 2u);
  EXPECT_GE(j["data"][0]["labels"][0]["probability"].get<double>(), j["data"][0]["labels"][1]["probability"].get<double>());
  EXPECT_EQ(http(port, "POST", "/v1/classify", json({{"images", json::array({data_uris[0]})}}).dump()).status, 400);
  EXPECT_EQ(http(port, "POST", "/v1/search", json({{"input", "a cat"}}).dump()).status, 400);  // no --index
}

// Servers with their own options.
class ServeOwn : public Serve {
 protected:
  static void SetUpTestSuite() { init(); }
  static void TearDownTestSuite() {}
  ServeOwn() { own_server = true; }
};

TEST_F(ServeOwn, ApiKey) {
  Server s;
  ASSERT_TRUE(s.start(model, {"--api-key", "sekret"}));
  json body = {{"input", "a photo of a cat"}};
  expect_error(post(s.port, body, 401), "API key");
  expect_error(post(s.port, body, 401, "Authorization: Bearer sekreT\r\n"), "API key");
  expect_error(post(s.port, body, 401, "Authorization: Bearer sekret2\r\n"), "API key");
  expect_bitwise(rows_of(post(s.port, body, 200, "Authorization: Bearer sekret\r\n"))[0], text_ref[0], "with key");
  EXPECT_EQ(http(s.port, "GET", "/v1/models").status, 401);
  EXPECT_EQ(http(s.port, "GET", "/health").status, 200);
  EXPECT_EQ(s.stop(), 0);
}

TEST_F(ServeOwn, FullQueueIs429WithRetryAfter) {
  // A batch waits 0.8 s for more items: the first request's 3 items hold 3 of the 4 slots.
  Server s;
  ASSERT_TRUE(s.start(model, {"--max-queue", "4", "--max-wait-ms", "800", "--max-batch", "64"}));
  std::thread first([&] {
    json j = post(s.port, {{"input", json::array({texts[0], texts[1], texts[2]})}});
    auto rows = rows_of(j);
    ASSERT_EQ(rows.size(), 3u);
    for (int i = 0; i < 3; i++) expect_bitwise(rows[(size_t)i], text_ref[(size_t)i], "first");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  HttpResponse r = http(s.port, "POST", "/v1/embeddings", json({{"input", json::array({"a", "b"})}}).dump());
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(r.headers["retry-after"], "1");
  first.join();
  // Freed again.
  EXPECT_EQ(http(s.port, "POST", "/v1/embeddings", json({{"input", json::array({"a", "b"})}}).dump()).status, 200);
  EXPECT_EQ(s.stop(), 0);
}

TEST_F(ServeOwn, StalledClientsDoNotHoldTheWorkers) {
  // Two workers, both taken by clients that send half a request and stall: each is dropped
  // after the 1 s read timeout, and a real request is answered.
  Server s;
  ASSERT_TRUE(s.start(model, {"--threads", "2", "--io-timeout-s", "1"}));
  int a = connect_to(s.port), b = connect_to(s.port);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  send_all(a, "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n");
  send_all(b, "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto t0 = std::chrono::steady_clock::now();
  json j = post(s.port, {{"input", texts[0]}});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  expect_bitwise(rows_of(j)[0], text_ref[0], "after stalled clients");
  EXPECT_LT(secs, 5.0);
  close(a);
  close(b);
  EXPECT_EQ(s.stop(), 0);
}

TEST_F(ServeOwn, SearchIndex) {
  std::string d = tmpdir("index");
  std::vector<std::string> args = {"embed", "--device", "cpu", "--model", model, "-o", d + "/emb.npy"};
  for (auto& p : images) args.insert(args.end(), {"--image", p});
  ASSERT_EQ(clip_run(args, d + "/out"), 0);
  Server s;
  ASSERT_TRUE(s.start(model, {"--index", d + "/emb.npy"}));
  // An image's own embedding finds itself first, with cosine 1.
  HttpResponse r = http(s.port, "POST", "/v1/search",
                        json({{"input", data_uris[4]}, {"modality", "image"}, {"k", 3}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  ASSERT_EQ(j["data"].size(), 3u);
  EXPECT_EQ(j["data"][0]["row"], 4);
  EXPECT_NEAR(j["data"][0]["score"].get<double>(), 1.0, 1e-5);
  EXPECT_EQ(j["data"][0]["source"], images[4]);
  r = http(s.port, "POST", "/v1/search", json({{"input", texts[0]}, {"k", 100}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["data"].size(), images.size());
  EXPECT_EQ(s.stop(), 0);
  fs::remove_all(d);
}

TEST_F(ServeOwn, SigtermAnswersAcceptedRequests) {
  // Requests wait in a batch that closes after 1 s; SIGTERM arrives meanwhile: every one is
  // answered with its embedding, then the server exits 0 and no longer listens.
  Server s;
  ASSERT_TRUE(s.start(model, {"--max-wait-ms", "1000"}));
  std::atomic<int> good{0};
  std::vector<std::thread> th;
  for (int i = 0; i < 4; i++)
    th.emplace_back([&, i] {
      HttpResponse r = http(s.port, "POST", "/v1/embeddings", json({{"input", texts[(size_t)i]}}).dump());
      json j = json::parse(r.body, nullptr, false);
      if (r.status == 200 && !j.is_discarded()) {
        auto rows = rows_of(j);
        if (rows.size() == 1 && std::memcmp(rows[0].data(), text_ref[(size_t)i].data(), rows[0].size() * 4) == 0) good++;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int port = s.port;
  EXPECT_EQ(s.stop(), 0);
  for (auto& t : th) t.join();
  EXPECT_EQ(good, 4);
  EXPECT_EQ(http(port, "GET", "/health").status, 0);  // not listening
  EXPECT_NE(s.log().find("POST /v1/embeddings 200"), std::string::npos) << s.log();
}

}  // namespace
