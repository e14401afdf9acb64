// Dynamic batching for `clip serve`: one model worker; the items of every request queue, texts
// and images apart; a batch closes at max_batch items or max_wait_ms after its first item
// queued, and each request gets its rows back in its own order.
//
//   Batcher b(model, opts);                     // starts the worker (which warms the model up)
//   if (!b.reserve(n)) -> 429                   // slots for n items, taken before decoding
//   auto p = b.submit(std::move(items));        // tokenized texts / preprocessed images
//   if (p->wait_for(timeout)) use p->rows       // [n][E], L2-normalized as `clip embed` does
//
// Memory is bounded by max_queue: at most that many items (a text's ids, an image's R x R x 3
// bytes) are reserved, queued or running at once. The worker runs what `clip embed` runs on
// each item (Model::encode_tokens / encode_rgb8, then l2_normalize_rows on each row), and the
// CPU engine is batch-invariant, so on the CPU a row is bitwise the same whatever batch it ran in.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "clip/clip.h"

namespace clip::serve {

struct BatcherOptions {
  int max_batch = 64;     // items per model call
  int max_wait_ms = 5;    // how long a batch waits for more items after its first
  size_t max_queue = 1024;  // items reserved, queued or running at once
  bool normalize = true;  // L2-normalize each row (as `clip embed` without --no-normalize)
};

struct BatchItem {
  bool image = false;
  std::vector<int32_t> tokens;  // text: context_length ids
  std::vector<uint8_t> rgb;     // image: [R, R, 3]
};

// One request's items in flight. The worker fills rows[i] and counts down; wait_for returns
// once all are done or the request failed.
struct Pending {
  std::vector<std::vector<float>> rows;
  std::string error;  // the model failed (not an input's fault)
  bool wait_for(std::chrono::milliseconds timeout);
  void cancel() { cancelled = true; }

  std::mutex mu;
  std::condition_variable cv;
  size_t remaining = 0;
  std::atomic<bool> cancelled{false};
};

struct BatcherStats {
  uint64_t batches = 0, items = 0, text_batches = 0, image_batches = 0;
  std::vector<uint64_t> batch_size_counts;  // [max_batch + 1]: batches of each size
  size_t queued = 0, reserved = 0;
  double busy_seconds = 0;  // the worker's time in the model
};

class Batcher {
 public:
  Batcher(Model& model, const BatcherOptions& opts);
  ~Batcher();  // stop()

  // Takes n slots of the queue, or none (false) when fewer than n are free.
  bool reserve(size_t n);
  void unreserve(size_t n);
  // Queues items for which reserve(items.size()) succeeded; their slots free as they finish.
  std::shared_ptr<Pending> submit(std::vector<BatchItem>&& items);
  // Runs what is queued, then ends the worker. Later submits fail their requests.
  void stop();

  bool ready() const { return ready_; }  // warmed up
  BatcherStats stats() const;
  const BatcherOptions& options() const { return opts_; }

 private:
  struct Queued {
    std::shared_ptr<Pending> req;
    size_t index;
    BatchItem* item;
    std::shared_ptr<std::vector<BatchItem>> owner;
    std::chrono::steady_clock::time_point at;
  };
  void worker();
  void run_batch(std::vector<Queued>& batch, bool image);

  Model& model_;
  BatcherOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> texts_, images_;
  bool stopping_ = false;
  std::atomic<size_t> reserved_{0};
  std::atomic<bool> ready_{false};
  BatcherStats stats_;
  std::thread thread_;
};

}  // namespace clip::serve
