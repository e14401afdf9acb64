#include "clip/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>

namespace clip {

int default_batch_size(Device device) { return device == Device::cuda ? 256 : 64; }

std::shared_ptr<ThreadPool::Job> preprocess_images_async(ThreadPool& pool, const Model& model,
                                                         const std::vector<EmbedItem>& items, Model::Pixels& px) {
  const size_t n = (size_t)model.pixels_per_image();
  px.data.resize(items.size() * n);
  px.errors.assign(items.size(), "");
  return pool.submit(items.size(), [&model, &items, &px, n](size_t i) {
    try {
      const EmbedItem& it = items[i];
      if (it.bytes) {
        model.preprocess_bytes((const uint8_t*)it.bytes->data(), it.bytes->size(), it.source, px.data.data() + i * n);
      } else {
        model.preprocess_file(it.source, px.data.data() + i * n);
      }
    } catch (const std::exception& e) {
      px.errors[i] = e.what();
    }
  });
}

// One image batch being decoded: its pixels are counted from here until it is dropped, which
// first stops and waits for the decoding (nothing writes into freed pixels).
struct EmbedPipeline::Decoding {
  size_t begin = 0;
  std::vector<EmbedItem> items;
  Model::Pixels px;
  std::shared_ptr<ThreadPool::Job> job;
  std::atomic<size_t>* live = nullptr;

  ~Decoding() {
    if (job) {
      job->cancel();
      job->wait();  // the decode function catches what preprocess_file throws
    }
    --*live;
  }
};

EmbedPipeline::EmbedPipeline(Model& model, const PipelineOptions& opts)
    : model_(model),
      opts_(opts),
      batch_size_(opts.batch_size > 0 ? opts.batch_size : default_batch_size(model.device())),
      pool_((size_t)std::max(0, opts.decode_threads)) {
  CLIP_CHECK(opts.batch_size >= 0, "pipeline: batch size must not be negative, got %d", opts.batch_size);
  CLIP_CHECK(opts.text_batches >= 1, "pipeline: text_batches must be at least 1, got %d", opts.text_batches);
  CLIP_CHECK(opts.batches_ahead >= 0, "pipeline: batches_ahead must be at least 0, got %d", opts.batches_ahead);
}

EmbedPipeline::~EmbedPipeline() = default;

std::shared_ptr<EmbedPipeline::Decoding> EmbedPipeline::decode(const std::vector<EmbedItem>& items, size_t begin,
                                                               size_t end) {
  auto d = std::make_shared<Decoding>();
  d->live = &decoded_;
  size_t now = ++decoded_;
  for (size_t peak = peak_decoded_; now > peak && !peak_decoded_.compare_exchange_weak(peak, now);) {
  }
  d->begin = begin;
  d->items.assign(items.begin() + (std::ptrdiff_t)begin, items.begin() + (std::ptrdiff_t)end);
  d->job = preprocess_images_async(pool_, model_, d->items, d->px);
  return d;
}

void EmbedPipeline::embed_images(Decoding& d, std::vector<EmbedResult>& out) {
  const auto t0 = std::chrono::steady_clock::now();
  d.job->wait();
  decode_wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // The decoded images move to the front of the buffer, in order, and run as one batch.
  const size_t n = (size_t)model_.pixels_per_image(), nb = d.items.size();
  size_t good = 0;
  for (size_t j = 0; j < nb; j++) {
    if (!d.px.errors[j].empty()) continue;
    if (good != j) std::memmove(d.px.data.data() + good * n, d.px.data.data() + j * n, n);
    good++;
  }
  HostTensor emb;
  if (good) emb = model_.encode_rgb8(d.px.data.data(), (int64_t)good);
  const int64_t E = model_.embed_dim();
  size_t g = 0;
  for (size_t j = 0; j < nb; j++) {
    EmbedResult r;
    r.error = d.px.errors[j];
    if (r.error.empty()) {
      r.embedding.assign(emb.f32() + g * E, emb.f32() + (g + 1) * E);
      g++;
    }
    out.push_back(std::move(r));
  }
}

void EmbedPipeline::embed_texts(const std::vector<EmbedItem>& items, size_t begin, size_t end,
                                std::vector<EmbedResult>& out) {
  const int ctx = model_.config().text.context_length;
  std::vector<int32_t> ids;
  std::vector<std::string> errors(end - begin);
  for (size_t j = 0; j < end - begin; j++) {
    try {
      Encoded e = model_.tokenizer().encode(items[begin + j].source, ctx);
      ids.insert(ids.end(), e.ids.begin(), e.ids.end());
    } catch (const Error& e) {
      if (!model_.has_tokenizer()) throw;  // not this text's fault
      errors[j] = e.what();
    }
  }
  HostTensor emb;
  if (!ids.empty()) emb = model_.encode_tokens(ids.data(), (int64_t)(ids.size() / (size_t)ctx));
  const int64_t E = model_.embed_dim();
  size_t g = 0;
  for (auto& error : errors) {
    EmbedResult r;
    r.error = std::move(error);
    if (r.error.empty()) {
      r.embedding.assign(emb.f32() + g * E, emb.f32() + (g + 1) * E);
      g++;
    }
    out.push_back(std::move(r));
  }
}

size_t EmbedPipeline::run(const std::vector<EmbedItem>& items,
                          const std::function<bool(const EmbedBatch&)>& on_batch) {
  // The batches: runs of one kind, cut at batch_size images or batch_size * text_batches texts.
  struct Span {
    size_t begin, end;
    bool image;
  };
  std::vector<Span> plan;
  const size_t B = (size_t)batch_size_;
  for (size_t i = 0; i < items.size();) {
    const bool image = items[i].image;
    const size_t cap = image ? B : B * (size_t)opts_.text_batches;
    size_t j = i;
    while (j < items.size() && items[j].image == image && j - i < cap) j++;
    plan.push_back({i, j, image});
    i = j;
  }
  // Image batches decoding, in plan order: the one the model runs next first.
  std::deque<std::shared_ptr<Decoding>> decoding;
  size_t next = 0;  // the next span to consider for decoding
  auto fill = [&] {
    while (decoding.size() < (size_t)opts_.batches_ahead + 1) {
      while (next < plan.size() && !plan[next].image) next++;
      if (next == plan.size()) return;
      decoding.push_back(decode(items, plan[next].begin, plan[next].end));
      next++;
    }
  };
  size_t delivered = 0;
  for (const Span& s : plan) {
    EmbedBatch batch;
    batch.first = s.begin;
    fill();
    if (s.image) {
      std::shared_ptr<Decoding> d = std::move(decoding.front());
      decoding.pop_front();
      embed_images(*d, batch.results);
      d.reset();  // its pixels go before the next batch is queued
      fill();
    } else {
      embed_texts(items, s.begin, s.end, batch.results);
    }
    if (opts_.normalize)
      for (EmbedResult& r : batch.results)
        if (!r.embedding.empty())
          l2_normalize_rows(r.embedding.data(), r.embedding.data(), 1, (int64_t)r.embedding.size());
    delivered += batch.results.size();
    if (!on_batch(batch)) break;
  }
  return delivered;
}

}  // namespace clip
