#include "tools/serve/batcher.h"

#include <algorithm>
#include <cstring>

namespace clip::serve {

using Clock = std::chrono::steady_clock;

bool Pending::wait_for(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu);
  return cv.wait_for(lk, timeout, [&] { return remaining == 0; });
}

Batcher::Batcher(Model& model, const BatcherOptions& opts) : model_(model), opts_(opts) {
  CLIP_CHECK(opts.max_batch >= 1, "serve: --max-batch must be at least 1, got %d", opts.max_batch);
  CLIP_CHECK(opts.max_wait_ms >= 0, "serve: --max-wait-ms must not be negative, got %d", opts.max_wait_ms);
  CLIP_CHECK(opts.max_queue >= 1, "serve: --max-queue must be at least 1");
  stats_.batch_size_counts.assign((size_t)opts.max_batch + 1, 0);
  thread_ = std::thread([this] { worker(); });
}

Batcher::~Batcher() { stop(); }

bool Batcher::reserve(size_t n) {
  size_t cur = reserved_.load();
  do {
    if (n > opts_.max_queue || cur > opts_.max_queue - n) return false;
  } while (!reserved_.compare_exchange_weak(cur, cur + n));
  return true;
}

void Batcher::unreserve(size_t n) { reserved_ -= n; }

std::shared_ptr<Pending> Batcher::submit(std::vector<BatchItem>&& items) {
  auto p = std::make_shared<Pending>();
  auto owner = std::make_shared<std::vector<BatchItem>>(std::move(items));
  p->rows.resize(owner->size());
  p->remaining = owner->size();
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) {
      unreserve(owner->size());
      p->error = "the server is shutting down";
      p->remaining = 0;
      return p;
    }
    for (size_t i = 0; i < owner->size(); i++) {
      BatchItem* it = &(*owner)[i];
      (it->image ? images_ : texts_).push_back({p, i, it, owner, now});
    }
  }
  cv_.notify_one();
  return p;
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

BatcherStats Batcher::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  BatcherStats s = stats_;
  s.queued = texts_.size() + images_.size();
  s.reserved = reserved_;
  return s;
}

void Batcher::worker() {
  // Warm-up: one text and one image, so the first request does not pay for compiling graphs.
  try {
    if (model_.has_tokenizer()) {
      Encoded e = model_.tokenizer().encode("warm up", model_.config().text.context_length);
      model_.encode_tokens(e.ids.data(), 1);
    }
    std::vector<uint8_t> rgb((size_t)model_.pixels_per_image(), 128);
    model_.encode_rgb8(rgb.data(), 1);
  } catch (const std::exception& e) {
    fprintf(stderr, "clip serve: warm-up failed: %s\n", e.what());
  }
  ready_ = true;
  const auto wait = std::chrono::milliseconds(opts_.max_wait_ms);
  const size_t B = (size_t)opts_.max_batch;
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    cv_.wait(lk, [&] { return stopping_ || !texts_.empty() || !images_.empty(); });
    if (texts_.empty() && images_.empty()) break;  // stopping, nothing left
    // The kind whose oldest item has waited longest goes first.
    const bool image = texts_.empty() || (!images_.empty() && images_.front().at < texts_.front().at);
    std::deque<Queued>& q = image ? images_ : texts_;
    const auto deadline = q.front().at + wait;
    if (q.size() < B && !stopping_ && Clock::now() < deadline) {
      cv_.wait_until(lk, deadline);
      continue;
    }
    std::vector<Queued> batch;
    while (!q.empty() && batch.size() < B) {
      Queued x = std::move(q.front());
      q.pop_front();
      if (x.req->cancelled) {  // timed out: its slot frees without running it
        unreserve(1);
        continue;
      }
      batch.push_back(std::move(x));
    }
    if (batch.empty()) continue;
    lk.unlock();
    const auto t0 = Clock::now();
    run_batch(batch, image);
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    lk.lock();
    stats_.batches++;
    stats_.items += batch.size();
    (image ? stats_.image_batches : stats_.text_batches)++;
    stats_.batch_size_counts[batch.size()]++;
    stats_.busy_seconds += secs;
  }
}

void Batcher::run_batch(std::vector<Queued>& batch, bool image) {
  const int64_t n = (int64_t)batch.size(), E = model_.embed_dim();
  HostTensor emb;
  std::string error;
  try {
    if (image) {
      const size_t px = (size_t)model_.pixels_per_image();
      std::vector<uint8_t> rgb((size_t)n * px);
      for (int64_t i = 0; i < n; i++) std::memcpy(rgb.data() + (size_t)i * px, batch[(size_t)i].item->rgb.data(), px);
      emb = model_.encode_rgb8(rgb.data(), n);
    } else {
      const size_t ctx = (size_t)model_.config().text.context_length;
      std::vector<int32_t> ids((size_t)n * ctx);
      for (int64_t i = 0; i < n; i++)
        std::memcpy(ids.data() + (size_t)i * ctx, batch[(size_t)i].item->tokens.data(), ctx * sizeof(int32_t));
      emb = model_.encode_tokens(ids.data(), n);
    }
  } catch (const std::exception& e) {
    error = std::string("the model failed: ") + e.what();
  }
  // The slots free before any request hears back, so a client that sends again at once finds them.
  unreserve(batch.size());
  for (int64_t i = 0; i < n; i++) {
    Queued& x = batch[(size_t)i];
    std::vector<float> row;
    if (error.empty()) {
      row.assign(emb.f32() + i * E, emb.f32() + (i + 1) * E);
      if (opts_.normalize) l2_normalize_rows(row.data(), row.data(), 1, E);
    }
    // The item's own copy of its input is no longer needed.
    x.item->rgb = {};
    x.item->tokens = {};
    {
      std::lock_guard<std::mutex> lk(x.req->mu);
      if (error.empty())
        x.req->rows[x.index] = std::move(row);
      else
        x.req->error = error;
      x.req->remaining--;
    }
    x.req->cv.notify_all();
  }
}

}  // namespace clip::serve
