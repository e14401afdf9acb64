// clip embed: image and text embeddings as JSON Lines or .npy.
//
// Inputs run in order, images first then texts, through the library's pipeline
// (clip/pipeline.h: images decoded on a pool of threads one batch ahead of the model, texts
// 8 batches at a time, batched by length). A failed input gets an {"error": ...} record in
// its place and the run goes on (exit status 3). Files are written to OUT.tmp and renamed at
// the end, also after SIGINT/SIGTERM (which stop the run after the current batch), so OUT
// always holds a valid prefix of the run; --resume continues from it without duplicates or
// gaps.
//
// --webdataset PATTERN...: tar shards in, clip-retrieval's layout out under -o DIR, one part
// per shard (clip/webdataset.h); complete parts are skipped, --shard-index/--shard-count (or
// a Slurm array's variables) pick this task's shards.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "clip/pipeline.h"
#include "clip/webdataset.h"
#include "tools/common.h"

namespace clip::tool {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Record {
  bool image;
  std::string source;
  std::vector<float> emb;  // empty when failed
  std::string error;
};

std::string quote(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string record_line(const Record& r, bool with_embedding, int64_t row) {
  std::string s = std::string("{\"type\":\"") + (r.image ? "image" : "text") + "\",\"source\":" + quote(r.source);
  if (!r.error.empty()) return s + ",\"error\":" + quote(r.error) + "}";
  if (!with_embedding) return s + ",\"row\":" + std::to_string(row) + "}";
  s += ",\"embedding\":[";
  char buf[32];
  for (size_t i = 0; i < r.emb.size(); i++) {
    snprintf(buf, sizeof buf, "%s%.9g", i ? "," : "", r.emb[i]);
    s += buf;
  }
  return s + "]}";
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Records already in OUT (for --resume).
std::vector<Record> read_existing(const std::string& out, bool npy) {
  std::vector<Record> recs;
  std::string lines_path = npy ? out + ".jsonl" : out;
  if (!fs::exists(lines_path)) return recs;
  NpyArray arr;
  if (npy) arr = read_npy(out);
  std::ifstream f(lines_path, std::ios::binary);
  std::string line;
  int64_t lineno = 0;
  while (std::getline(f, line)) {
    lineno++;
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    CLIP_CHECK(!j.is_discarded() && j.is_object() && j.contains("type") && j.contains("source"),
               "--resume: %s line %ld is not an embed record", lines_path.c_str(), (long)lineno);
    Record r{j["type"] == "image", j["source"].get<std::string>(), {}, ""};
    if (j.contains("error")) {
      r.error = j["error"].get<std::string>();
    } else if (npy) {
      int64_t row = j.value("row", (int64_t)-1);
      CLIP_CHECK(row >= 0 && row < arr.rows, "--resume: %s line %ld names row %ld outside %s",
                 lines_path.c_str(), (long)lineno, (long)row, out.c_str());
      r.emb.assign(arr.data.begin() + row * arr.cols, arr.data.begin() + (row + 1) * arr.cols);
    } else {
      r.emb = j.at("embedding").get<std::vector<float>>();
    }
    recs.push_back(std::move(r));
  }
  return recs;
}

struct EmbedArgs {
  ModelArgs model;
  std::vector<std::string> images, texts;
  std::string image_list, text_file, out;
  bool no_normalize = false, resume = false;
  std::vector<std::string> webdataset;
  int shard_index = -1, shard_count = -1;
};

int run_webdataset(const EmbedArgs& a) {
  if (!a.images.empty() || !a.texts.empty() || !a.image_list.empty() || !a.text_file.empty())
    throw UsageError("embed: --webdataset takes its images and captions from the shards: no --image or --text with it");
  if (a.out.empty()) throw UsageError("embed: --webdataset needs -o DIR, the output folder");
  if (a.no_normalize) throw UsageError("embed: --webdataset writes L2-normalized embeddings (clip-retrieval's): no --no-normalize");
  const std::vector<std::string> shards = expand_shard_patterns(a.webdataset);
  const ShardSelection sel = resolve_shard_selection(a.shard_index, a.shard_count);
  std::vector<size_t> todo;
  size_t complete = 0;
  for (size_t i : select_shards(shards.size(), sel)) {
    if (part_complete(a.out, part_name(i, shards.size()))) {
      complete++;
    } else {
      todo.push_back(i);
    }
  }
  fprintf(stderr, "clip: %zu shards; task %d of %d (%s): %zu, of which %zu complete in %s, %zu to do\n", shards.size(),
          sel.index, sel.count, sel.source.c_str(), todo.size() + complete, complete, a.out.c_str(), todo.size());
  if (todo.empty()) return kExitOk;
  auto model = a.model.load();
  install_interrupt_handler();
  Progress progress("shards", (int64_t)todo.size());
  bool any_failed = false;
  for (size_t i : todo) {
    const std::string part = part_name(i, shards.size());
    ShardOptions so;
    so.batch_size = a.model.batch_size;
    so.stop = interrupted;
    ShardResult r = embed_shard(*model, shards[i], a.out, part, so);
    if (r.stopped) break;
    progress.add(1);
    const double s = r.read_s + r.embed_s + r.write_s;
    if (r.written)
      fprintf(stderr,
              "clip: %s -> part %s: %ld samples, %ld failed, %.1f/s (read %.2fs, decode+embed %.2fs of which waiting "
              "for decoding %.2fs, write %.2fs)\n",
              shards[i].c_str(), part.c_str(), (long)r.samples, (long)r.failed, s > 0 ? r.samples / s : 0.0, r.read_s,
              r.embed_s, r.decode_wait_s, r.write_s);
    if (!r.shard_error.empty())
      fprintf(stderr, "clip: shard error: %s%s\n", r.shard_error.c_str(),
              r.written ? " (the samples before it are in the part)" : " (no part written)");
    any_failed = any_failed || r.failed > 0 || !r.shard_error.empty();
  }
  progress.finish();
  if (interrupted()) {
    fprintf(stderr, "clip: interrupted; the parts written are complete (run again to do the rest)\n");
    return 130;
  }
  return any_failed ? kExitSomeInputsFailed : kExitOk;
}

int run_embed(const EmbedArgs& a) {
  if (!a.webdataset.empty()) return run_webdataset(a);
  if (a.shard_index >= 0 || a.shard_count >= 0) throw UsageError("embed: --shard-index/--shard-count go with --webdataset");
  std::vector<EmbedItem> items;
  for (auto& p : collect_images(a.images, a.image_list)) items.push_back({true, p});
  for (auto& t : collect_texts(a.texts, a.text_file)) items.push_back({false, t});
  if (items.empty()) throw UsageError("embed: no inputs: give --image, --image-list, --text or --text-file");
  const bool to_file = !a.out.empty();
  const bool npy = to_file && ends_with(a.out, ".npy");
  if (to_file && !npy && !ends_with(a.out, ".jsonl"))
    throw UsageError("embed: -o must end in .jsonl or .npy: " + a.out);
  if (a.resume && !to_file) throw UsageError("embed: --resume needs -o OUT");

  std::vector<Record> done;
  if (a.resume) done = read_existing(a.out, npy);
  CLIP_CHECK(done.size() <= items.size(), "--resume: %s holds %zu records but the run has only %zu inputs",
             a.out.c_str(), done.size(), items.size());
  for (size_t i = 0; i < done.size(); i++)
    CLIP_CHECK(done[i].image == items[i].image && done[i].source == items[i].source,
               "--resume: record %zu of %s (%s) does not match input %zu (%s): not the same run",
               i + 1, a.out.c_str(), done[i].source.c_str(), i + 1, items[i].source.c_str());

  auto model = a.model.load();
  const int64_t D = model->embed_dim();
  install_interrupt_handler();

  // Output sinks. Stdout gets lines as they are ready; files are rewritten atomically.
  std::string tmp = a.out + ".tmp";
  std::ofstream lines;
  if (to_file) {
    lines.open(npy ? a.out + ".jsonl.tmp" : tmp, std::ios::binary | std::ios::trunc);
    CLIP_CHECK(lines, "cannot write %s", (npy ? a.out + ".jsonl.tmp" : tmp).c_str());
  }
  std::ofstream npy_out;  // .npy rows are streamed; the header is rewritten at the end
  int64_t nrows = 0;
  if (npy) {
    npy_out.open(tmp, std::ios::binary | std::ios::trunc);
    CLIP_CHECK(npy_out, "cannot write %s", tmp.c_str());
    npy_out << npy_header(DType::f32, 0, D);
  }
  bool any_failed = false;
  auto emit = [&](const Record& r) {
    if (!r.error.empty()) any_failed = true;
    if (npy) {
      if (r.error.empty()) {
        npy_out.write((const char*)r.emb.data(), (std::streamsize)(r.emb.size() * sizeof(float)));
        lines << record_line(r, false, nrows++) << '\n';
      } else {
        lines << record_line(r, false, -1) << '\n';
      }
    } else if (to_file) {
      lines << record_line(r, true, 0) << '\n';
    } else {
      fputs((record_line(r, true, 0) + "\n").c_str(), stdout);
    }
  };
  for (auto& r : done) emit(r);
  auto finalize = [&] {
    if (!to_file) {
      fflush(stdout);
      return;
    }
    lines.close();
    CLIP_CHECK(!lines.fail(), "error writing %s", a.out.c_str());
    if (npy) {
      npy_out.seekp(0);
      npy_out << npy_header(DType::f32, nrows, D);
      npy_out.close();
      CLIP_CHECK(!npy_out.fail(), "error writing %s", tmp.c_str());
      fs::rename(a.out + ".jsonl.tmp", a.out + ".jsonl");
    }
    fs::rename(tmp, a.out);
  };

  Progress progress("embed", (int64_t)items.size());
  progress.add((int64_t)done.size());
  size_t i = done.size();
  const std::vector<EmbedItem> rest(items.begin() + (std::ptrdiff_t)i, items.end());
  if (!rest.empty() && !interrupted()) {
    PipelineOptions po;
    po.batch_size = a.model.batch_size;
    po.normalize = !a.no_normalize;
    EmbedPipeline pipeline(*model, po);
    pipeline.run(rest, [&](const EmbedBatch& b) {
      for (size_t j = 0; j < b.results.size(); j++) {
        const EmbedItem& it = rest[b.first + j];
        emit({it.image, it.source, b.results[j].embedding, b.results[j].error});
      }
      i += b.results.size();
      progress.add((int64_t)b.results.size());
      return !interrupted();
    });
  }
  progress.finish();
  finalize();
  if (interrupted()) {
    fprintf(stderr, "clip: interrupted after %zu of %zu inputs; %s holds them (continue with --resume)\n", i,
            items.size(), to_file ? a.out.c_str() : "stdout");
    return 130;
  }
  return any_failed ? kExitSomeInputsFailed : kExitOk;
}

CommandRun setup(CLI::App* sub) {
  auto a = std::make_shared<EmbedArgs>();
  a->model.add(sub);
  sub->add_option("--image", a->images, "Image file or directory (walked recursively, sorted); repeatable");
  sub->add_option("--image-list", a->image_list, "File with one image path per line");
  sub->add_option("--text", a->texts, "Text to embed; repeatable");
  sub->add_option("--text-file", a->text_file, "File with one text per line");
  sub->add_option("-o,--output", a->out, "Write to OUT.jsonl, or OUT.npy (float32 [N, D]) plus OUT.npy.jsonl; "
                  "with --webdataset, the output folder");
  sub->add_flag("--no-normalize", a->no_normalize, "Do not L2-normalize the embeddings");
  sub->add_flag("--resume", a->resume, "Continue an interrupted run into the same -o OUT");
  sub->add_option("--webdataset", a->webdataset,
                  "WebDataset tar shards (.tar, .tar.gz), quoted patterns such as 'shards/{00000..00999}.tar'; "
                  "writes clip-retrieval's img_emb/, text_emb/, metadata/ into -o DIR, one part per shard, "
                  "skipping complete parts");
  sub->add_option("--shard-index", a->shard_index, "With --webdataset: run shards i with i % COUNT == INDEX "
                  "(default: SLURM_ARRAY_TASK_ID when set)")->check(CLI::NonNegativeNumber);
  sub->add_option("--shard-count", a->shard_count, "With --webdataset: how many tasks share the shards "
                  "(default: SLURM_ARRAY_TASK_COUNT when set)")->check(CLI::PositiveNumber);
  return [a] { return run_embed(*a); };
}

Register reg("embed", "Embed images and texts (JSON Lines or .npy)", setup);

}  // namespace
}  // namespace clip::tool
