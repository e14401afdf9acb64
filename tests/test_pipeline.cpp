// The embedding pipeline (clip/pipeline.h) on the golden tiny ViT: results in input order
// with per-item errors, batch boundaries, stopping between batches, embeddings bitwise those
// of Model::encode_image_files / encode_texts (batch invariance on the CPU), and the bound
// on decoded batches in flight. Also the thread pool under it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <unistd.h>

#include "clip/clip.h"
#include "clip/pipeline.h"
#include "clip/thread_pool.h"
#include "tests/test_util.h"

using namespace clip;
namespace fs = std::filesystem;

namespace {

TEST(ThreadPool, RunsEveryIndexOnceInOrderOfJobs) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(1000);
  auto a = pool.submit(600, [&](size_t i) { hits[i]++; });
  auto b = pool.submit(400, [&](size_t i) { hits[600 + i]++; });
  auto empty = pool.submit(0, [](size_t) { FAIL(); });
  b->wait();
  a->wait();
  empty->wait();
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ThreadPool, CancelSkipsWhatHasNotStartedAndErrorsReachWait) {
  ThreadPool pool(1);
  std::atomic<int> ran{0};
  std::atomic<bool> release{false};
  auto blocker = pool.submit(1, [&](size_t) {
    while (!release) std::this_thread::yield();
  });
  auto job = pool.submit(100, [&](size_t) { ran++; });
  job->cancel();
  release = true;
  job->wait();
  blocker->wait();
  EXPECT_EQ(ran.load(), 0);
  auto bad = pool.submit(4, [](size_t i) {
    if (i == 2) throw Error("index 2 failed");
  });
  EXPECT_THROW(bad->wait(), Error);
}

class Pipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (test::golden_dir().empty()) return;
    model_ = Model::load(test::golden_dir() + "/tiny-vit/hf").release();
    for (auto& e : fs::directory_iterator(test::golden_dir() + "/images"))
      if (is_image_path(e.path().string())) images_.push_back(e.path().string());
    std::sort(images_.begin(), images_.end());
    bad_image_ = (fs::temp_directory_path() / ("clip_pipeline_bad_" + std::to_string(getpid()) + ".jpg")).string();
    std::ofstream(bad_image_, std::ios::binary) << "this is not an image\n";
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
    if (!bad_image_.empty()) fs::remove(bad_image_);
  }
  void SetUp() override {
    CLIP_REQUIRE_GOLDEN();
    ASSERT_TRUE(model_);
    ASSERT_GE(images_.size(), 6u);
  }

  // Images and texts mixed, with a bad image file, a missing one and an invalid UTF-8 text;
  // then a run of 10 texts (more than one text chunk at batch size 1).
  std::vector<EmbedItem> mixed_items() const {
    std::vector<EmbedItem> v = {{true, images_[0]}, {true, images_[1]}, {false, "a photo of a cat"},
                                {true, bad_image_}, {true, images_[2]}, {false, "bad \xff\xfe text"},
                                {false, "a diagram"}};
    for (size_t i = 3; i < images_.size(); i++) v.push_back({true, images_[i]});
    v.push_back({true, "/nonexistent/clip_pipeline.png"});
    for (int i = 0; i < 10; i++) v.push_back({false, "caption number " + std::to_string(i) + std::string(i, '!')});
    return v;
  }
  static bool bad(const EmbedItem& it) {
    return it.source == bad_image_ || it.source.find("nonexistent") != std::string::npos ||
           it.source.find('\xff') != std::string::npos;
  }
  // Each good item's embedding from the Model's own calls, all images in one call and all
  // texts in another.
  std::vector<std::vector<float>> reference(const std::vector<EmbedItem>& items) const {
    std::vector<std::string> paths, texts;
    for (auto& it : items)
      if (!bad(it)) (it.image ? paths : texts).push_back(it.source);
    HostTensor img = model_->encode_image_files(paths), txt = model_->encode_texts(texts);
    const int64_t E = model_->embed_dim();
    std::vector<std::vector<float>> ref(items.size());
    size_t pi = 0, ti = 0;
    for (size_t i = 0; i < items.size(); i++) {
      if (bad(items[i])) continue;
      const float* row = items[i].image ? img.f32() + pi++ * E : txt.f32() + ti++ * E;
      ref[i].assign(row, row + E);
    }
    return ref;
  }

  static Model* model_;
  static std::vector<std::string> images_;
  static std::string bad_image_;
};
Model* Pipeline::model_ = nullptr;
std::vector<std::string> Pipeline::images_;
std::string Pipeline::bad_image_;

class PipelineBatch : public Pipeline, public ::testing::WithParamInterface<int> {};

TEST_P(PipelineBatch, InputOrderPerItemErrorsAndBitwiseEmbeddings) {
  const int B = GetParam();
  const auto items = mixed_items();
  const auto ref = reference(items);
  PipelineOptions o;
  o.batch_size = B;
  EmbedPipeline p(*model_, o);
  EXPECT_EQ(p.batch_size(), B);
  std::vector<EmbedResult> got;
  size_t batches = 0;
  const size_t n = p.run(items, [&](const EmbedBatch& b) {
    batches++;
    EXPECT_EQ(b.first, got.size()) << "batches arrive in order, without gaps";
    EXPECT_FALSE(b.results.empty());
    // One kind per batch, cut at the cap or where the kind changes.
    const bool image = items[b.first].image;
    const size_t cap = image ? (size_t)B : 8 * (size_t)B, end = b.first + b.results.size();
    EXPECT_LE(b.results.size(), cap);
    for (size_t i = b.first; i < end; i++) EXPECT_EQ(items[i].image, image) << i;
    if (end < items.size() && items[end].image == image) {
      EXPECT_EQ(b.results.size(), cap) << "batch at " << b.first;
    }
    got.insert(got.end(), b.results.begin(), b.results.end());
    return true;
  });
  EXPECT_EQ(n, items.size());
  ASSERT_EQ(got.size(), items.size());
  for (size_t i = 0; i < items.size(); i++) {
    SCOPED_TRACE(items[i].source);
    if (bad(items[i])) {
      EXPECT_TRUE(got[i].embedding.empty());
      EXPECT_FALSE(got[i].error.empty());
      const std::string want = items[i].image ? items[i].source : "UTF-8";
      EXPECT_NE(got[i].error.find(want), std::string::npos) << got[i].error;
    } else {
      EXPECT_EQ(got[i].error, "");
      ASSERT_EQ(got[i].embedding.size(), ref[i].size());
      EXPECT_EQ(std::memcmp(got[i].embedding.data(), ref[i].data(), ref[i].size() * sizeof(float)), 0);
    }
  }
  if (B == 1) {
    // img | img | txt | bad | img | bad txt, txt | (N - 3) img | missing | 8 txt | 2 txt
    EXPECT_EQ(batches, 6 + (images_.size() - 3) + 1 + 2);
  } else if (B > (int)items.size()) {
    EXPECT_EQ(batches, 6u);  // img img | txt | img img | txt txt | img... | txt...
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, PipelineBatch, ::testing::Values(1, 3, 100),
                         [](const ::testing::TestParamInfo<int>& i) { return "B" + std::to_string(i.param); });

TEST_F(Pipeline, NormalizesWhenAsked) {
  const std::vector<EmbedItem> items = {{true, images_[0]}, {false, "a photo of a cat"}};
  const auto ref = reference(items);
  PipelineOptions o;
  o.normalize = true;
  EmbedPipeline p(*model_, o);
  std::vector<EmbedResult> got;
  p.run(items, [&](const EmbedBatch& b) {
    got.insert(got.end(), b.results.begin(), b.results.end());
    return true;
  });
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < 2; i++) {
    std::vector<float> want = ref[i];
    l2_normalize_rows(want.data(), want.data(), 1, (int64_t)want.size());
    EXPECT_EQ(got[i].embedding, want);
  }
}

TEST_F(Pipeline, StopsBetweenBatchesAndRunsAgain) {
  std::vector<EmbedItem> items;
  for (auto& p : images_) items.push_back({true, p});
  PipelineOptions o;
  o.batch_size = 2;
  o.batches_ahead = 3;  // batches decoding when it stops are dropped cleanly
  EmbedPipeline p(*model_, o);
  int calls = 0;
  EXPECT_EQ(p.run(items, [&](const EmbedBatch&) { return ++calls < 2; }), 4u);
  EXPECT_EQ(calls, 2);
  size_t total = 0;
  EXPECT_EQ(p.run(items, [&](const EmbedBatch& b) {
    total += b.results.size();
    return true;
  }), items.size());
  EXPECT_EQ(total, items.size());
}

TEST_F(Pipeline, DecodedBatchesInFlightStayBounded) {
  std::vector<EmbedItem> items;
  for (auto& p : images_) items.push_back({true, p});
  for (int ahead : {0, 1, 3}) {
    PipelineOptions o;
    o.batch_size = 1;
    o.batches_ahead = ahead;
    o.decode_threads = 2;
    EmbedPipeline p(*model_, o);
    size_t n = 0;
    p.run(items, [&](const EmbedBatch& b) {
      n += b.results.size();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a slow consumer
      return true;
    });
    EXPECT_EQ(n, items.size());
    // The batch the model runs and `ahead` behind it: decoding runs ahead, never further.
    EXPECT_EQ(p.peak_decoded_batches(), (size_t)ahead + 1) << "batches_ahead " << ahead;
  }
}

TEST_F(Pipeline, PreprocessFilesMatchesPreprocessFileAndReportsBadOnes) {
  const std::vector<std::string> paths = {images_[0], bad_image_, images_[1]};
  Model::Pixels px = model_->preprocess_files(paths);
  const size_t n = (size_t)model_->pixels_per_image();
  ASSERT_EQ(px.data.size(), 3 * n);
  ASSERT_EQ(px.errors.size(), 3u);
  EXPECT_EQ(px.errors[0], "");
  EXPECT_NE(px.errors[1].find(bad_image_), std::string::npos) << px.errors[1];
  EXPECT_EQ(px.errors[2], "");
  std::vector<uint8_t> one(n);
  for (size_t i : {0, 2}) {
    model_->preprocess_file(paths[i], one.data());
    EXPECT_EQ(std::memcmp(one.data(), px.data.data() + i * n, n), 0) << paths[i];
  }
}

TEST_F(Pipeline, TextsWithoutATokenizerStopTheRun) {
  // openai.pt carries no vocabulary: that is not one text's error, so run throws (with image
  // batches still decoding, which must be dropped safely).
  auto m = Model::load(test::golden_dir() + "/tiny-vit/openai.pt");
  ASSERT_FALSE(m->has_tokenizer());
  std::vector<EmbedItem> items = {{false, "a photo of a cat"}};
  for (auto& p : images_) items.push_back({true, p});
  PipelineOptions o;
  o.batch_size = 1;
  o.batches_ahead = 4;
  EmbedPipeline p(*m, o);
  EXPECT_THROW(p.run(items, [](const EmbedBatch&) { return true; }), Error);
  items.erase(items.begin());
  EXPECT_EQ(p.run(items, [](const EmbedBatch&) { return true; }), images_.size());
}

}  // namespace
