// Embedding many inputs: the runtime's batching, shared by `clip embed`, `clip bench` and the
// server. Items (image paths and texts, in any order) come back in input order, batch by
// batch, each as an embedding row or an error string; a failed item does not stop the run.
//
//   clip::EmbedPipeline p(*model);                     // batches of default_batch_size()
//   p.run(items, [&](const clip::EmbedBatch& b) {      // items[b.first + j] -> b.results[j]
//     for (auto& r : b.results) write(r);
//     return !stop_requested;                          // false: stop between batches
//   });
//
// Images are decoded on a pool of threads ahead of the model through a bounded queue: at most
// batches_ahead + 1 batches of decoded pixels exist at once (the one the model runs and those
// decoding behind it). Texts are tokenized (an invalid one gets its error) and run
// text_batches batches at a time, which the model batches by length (Model::encode_tokens).
#pragma once
#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "clip/clip.h"
#include "clip/thread_pool.h"

namespace clip {

struct EmbedItem {
  bool image = false;
  std::string source;  // an image path, or the text
  // An image already in memory (a member of a tar shard): its encoded bytes, decoded as
  // Model::preprocess_bytes does, with source naming it in errors. Null: source is a path.
  std::shared_ptr<const std::string> bytes = nullptr;
};

struct EmbedResult {
  std::vector<float> embedding;  // [E]; empty when the item failed
  std::string error;             // "" when embedded
};

// Consecutive items [first, first + results.size()) of the input list.
struct EmbedBatch {
  size_t first = 0;
  std::vector<EmbedResult> results;
};

struct PipelineOptions {
  int batch_size = 0;      // images per batch (0: default_batch_size(model.device()))
  int text_batches = 8;    // texts go batch_size * text_batches at a time, batched by length
  int batches_ahead = 1;   // image batches decoded ahead of the one the model runs
  int decode_threads = 0;  // 0: one per hardware thread
  bool normalize = false;  // L2-normalize each embedding (Model's encode_* do not)
};

class EmbedPipeline {
 public:
  explicit EmbedPipeline(Model& model, const PipelineOptions& opts = {});
  ~EmbedPipeline();

  // Embeds items in order, calling on_batch once per batch, in order; a batch holds items of
  // one kind. Stops between batches when on_batch returns false. Returns how many items were
  // delivered. Errors that are not an item's own (no tokenizer, the model failing) throw.
  size_t run(const std::vector<EmbedItem>& items, const std::function<bool(const EmbedBatch&)>& on_batch);

  int batch_size() const { return batch_size_; }
  // The most image batches whose decoded pixels existed at one time (over every run so far).
  size_t peak_decoded_batches() const { return peak_decoded_; }
  // Seconds the model waited for image batches to finish decoding (over every run so far):
  // where decoding, not the model, set the pace.
  double decode_wait_seconds() const { return decode_wait_s_; }

 private:
  struct Decoding;
  std::shared_ptr<Decoding> decode(const std::vector<EmbedItem>& items, size_t begin, size_t end);
  void embed_images(Decoding& d, std::vector<EmbedResult>& out);
  void embed_texts(const std::vector<EmbedItem>& items, size_t begin, size_t end, std::vector<EmbedResult>& out);

  Model& model_;
  PipelineOptions opts_;
  int batch_size_;
  ThreadPool pool_;
  std::atomic<size_t> decoded_{0}, peak_decoded_{0};
  double decode_wait_s_ = 0;
};

// Each image item preprocessed on the pool's threads (preprocess_file, or preprocess_bytes
// for one in memory): px gets one [R, R, 3] slot per item and per item its error ("" when it
// decoded). Wait on the returned job before reading px; items and px must outlive it.
std::shared_ptr<ThreadPool::Job> preprocess_images_async(ThreadPool& pool, const Model& model,
                                                         const std::vector<EmbedItem>& items, Model::Pixels& px);

}  // namespace clip
