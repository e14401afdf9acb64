#include "clip/webdataset.h"

#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "clip/pipeline.h"

namespace clip {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// ---- shard names ----------------------------------------------------------------------

static bool all_digits(const std::string& s, size_t from = 0) {
  if (s.size() <= from) return false;
  for (size_t i = from; i < s.size(); i++)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

static constexpr size_t kMaxShardNames = 10000000;

static void expand_into(const std::string& pattern, const std::string& s, std::vector<std::string>& out) {
  const size_t open = s.find('{');
  const size_t stray = s.find('}');
  CLIP_CHECK(stray == std::string::npos || (open != std::string::npos && open < stray),
             "shard pattern %s: '}' without its '{' (quote the pattern so the shell leaves it alone)", pattern.c_str());
  if (open == std::string::npos) {
    CLIP_CHECK(out.size() < kMaxShardNames, "shard pattern %s: more than %zu names", pattern.c_str(), kMaxShardNames);
    out.push_back(s);
    return;
  }
  const size_t close = s.find('}', open);
  CLIP_CHECK(close != std::string::npos, "shard pattern %s: '{' without its '}' (quote the pattern so the shell leaves it alone)",
             pattern.c_str());
  const std::string body = s.substr(open + 1, close - open - 1);
  CLIP_CHECK(body.find('{') == std::string::npos, "shard pattern %s: nested braces are not supported", pattern.c_str());
  const std::string head = s.substr(0, open), tail = s.substr(close + 1);
  std::vector<std::string> alts;
  const size_t dots = body.find("..");
  if (dots != std::string::npos) {
    const std::string a = body.substr(0, dots), b = body.substr(dots + 2);
    CLIP_CHECK(all_digits(a) && all_digits(b), "shard pattern %s: {%s} is not a range of whole numbers {A..B}",
               pattern.c_str(), body.c_str());
    CLIP_CHECK(a.size() <= 12 && b.size() <= 12, "shard pattern %s: range {%s} too long", pattern.c_str(), body.c_str());
    const long long lo = std::atoll(a.c_str()), hi = std::atoll(b.c_str());
    CLIP_CHECK(lo <= hi, "shard pattern %s: range {%s} goes down", pattern.c_str(), body.c_str());
    CLIP_CHECK(hi - lo < (long long)kMaxShardNames, "shard pattern %s: range {%s} has more than %zu names", pattern.c_str(),
               body.c_str(), kMaxShardNames);
    const bool padded = (a.size() > 1 && a[0] == '0') || (b.size() > 1 && b[0] == '0');
    const int width = padded ? (int)std::max(a.size(), b.size()) : 0;
    for (long long v = lo; v <= hi; v++) alts.push_back(strprintf("%0*lld", width, v));
  } else {
    CLIP_CHECK(body.find(',') != std::string::npos, "shard pattern %s: {%s} is neither a range {A..B} nor a list {x,y}",
               pattern.c_str(), body.c_str());
    size_t from = 0;
    for (size_t comma; (comma = body.find(',', from)) != std::string::npos; from = comma + 1)
      alts.push_back(body.substr(from, comma - from));
    alts.push_back(body.substr(from));
  }
  for (const std::string& alt : alts) expand_into(pattern, head + alt + tail, out);
}

std::vector<std::string> expand_shard_pattern(const std::string& pattern) {
  CLIP_CHECK(!pattern.empty(), "empty shard pattern");
  CLIP_CHECK(pattern.find_first_of("*?[]") == std::string::npos,
             "shard pattern %s: glob characters are not expanded (a shell leaves them when nothing matches): quote the "
             "pattern and name the shards with a brace range such as shards/{00000..00099}.tar",
             pattern.c_str());
  std::vector<std::string> out;
  expand_into(pattern, pattern, out);
  return out;
}

std::vector<std::string> expand_shard_patterns(const std::vector<std::string>& patterns) {
  std::vector<std::string> all;
  std::set<std::string> seen;
  for (const std::string& p : patterns) {
    std::vector<std::string> names = expand_shard_pattern(p);
    std::vector<std::string> missing;
    for (const std::string& n : names) {
      CLIP_CHECK(seen.insert(n).second, "shard %s is named twice (pattern %s)", n.c_str(), p.c_str());
      std::error_code ec;
      if (!fs::is_regular_file(n, ec)) missing.push_back(n);
    }
    CLIP_CHECK(missing.size() < names.size(), "shard pattern %s matches no file (%s does not exist)%s", p.c_str(),
               names[0].c_str(),
               names.size() == 1 && p.find('{') == std::string::npos && patterns.size() > 1
                   ? "; if the shell split or expanded the pattern, quote it"
                   : "");
    if (!missing.empty()) {
      std::string list;
      for (size_t i = 0; i < missing.size() && i < 3; i++) list += (i ? ", " : "") + missing[i];
      CLIP_CHECK(false, "%zu of the %zu shards of %s do not exist: %s%s", missing.size(), names.size(), p.c_str(),
                 list.c_str(), missing.size() > 3 ? ", ..." : "");
    }
    all.insert(all.end(), names.begin(), names.end());
  }
  return all;
}

static std::optional<long> env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  std::string s = v;
  CLIP_CHECK(all_digits(s) && s.size() < 10, "%s=%s is not a whole number", name, v);
  return std::atol(v);
}

ShardSelection resolve_shard_selection(int index, int count) {
  ShardSelection s;
  if (index >= 0 || count >= 0) {
    CLIP_CHECK(index >= 0 && count >= 1, "--shard-index and --shard-count go together (got %d and %d)", index, count);
    s = {index, count, "flags"};
  } else if (auto id = env_int("SLURM_ARRAY_TASK_ID")) {
    auto n = env_int("SLURM_ARRAY_TASK_COUNT");
    CLIP_CHECK(n && *n >= 1, "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: give --shard-index and "
               "--shard-count");
    const long lo = env_int("SLURM_ARRAY_TASK_MIN").value_or(0), step = env_int("SLURM_ARRAY_TASK_STEP").value_or(1);
    CLIP_CHECK(step >= 1 && *id >= lo && (*id - lo) % step == 0, "SLURM_ARRAY_TASK_ID=%ld is not on the array's "
               "steps (SLURM_ARRAY_TASK_MIN=%ld, SLURM_ARRAY_TASK_STEP=%ld)", *id, lo, step);
    s = {(int)((*id - lo) / step), (int)*n, "SLURM_ARRAY_TASK_ID"};
  } else {
    s = {0, 1, "all"};
  }
  CLIP_CHECK(s.index < s.count, "shard index %d is not below the shard count %d (%s)", s.index, s.count,
             s.source.c_str());
  return s;
}

std::vector<size_t> select_shards(size_t n_shards, const ShardSelection& s) {
  std::vector<size_t> out;
  for (size_t i = (size_t)s.index; i < n_shards; i += (size_t)s.count) out.push_back(i);
  return out;
}

std::string part_name(size_t index, size_t count) {
  const size_t digits = std::to_string(std::max<size_t>(count, 1)).size();  // int(log10(count)) + 1
  std::string n = std::to_string(index);
  return std::string(n.size() < digits ? digits - n.size() : 0, '0') + n;
}

static std::string img_path(const std::string& out, const std::string& part) {
  return out + "/img_emb/img_emb_" + part + ".npy";
}
static std::string text_path(const std::string& out, const std::string& part) {
  return out + "/text_emb/text_emb_" + part + ".npy";
}
static std::string meta_path(const std::string& out, const std::string& part, const char* ext) {
  return out + "/metadata/metadata_" + part + ext;
}
static std::string stats_path(const std::string& out, const std::string& part) {
  return out + "/stats/stats_" + part + ".json";
}

bool part_complete(const std::string& out_dir, const std::string& part) {
  std::error_code ec;
  return fs::exists(img_path(out_dir, part), ec) && fs::exists(text_path(out_dir, part), ec) &&
         (fs::exists(meta_path(out_dir, part, ".jsonl"), ec) || fs::exists(meta_path(out_dir, part, ".parquet"), ec));
}

// ---- reading a shard ------------------------------------------------------------------

namespace {

struct Sample {
  std::string key;
  std::string image_member;                   // "" when the sample has no image member
  std::shared_ptr<const std::string> image;   // null when there is none to decode
  std::optional<std::string> caption;
  bool caption_member = false;
  ojson meta = ojson::object();
  std::set<std::string> exts;
  std::vector<std::string> errors;
  bool cut = false;  // the shard ended inside one of its members
};

bool is_image_ext(const std::string& ext) {
  return ext.find('.') == std::string::npos && is_image_path("x." + ext);
}

// webdataset's base_plus_ext: ^((?:.*/|)[^.]+)[.]([^/]*)$
bool split_key(const std::string& name, std::string& key, std::string& ext) {
  const size_t slash = name.rfind('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  const size_t dot = name.find('.', base);
  if (dot == std::string::npos || dot == base) return false;
  key = name.substr(0, dot);
  ext = name.substr(dot + 1);
  for (char& c : ext) c = (char)std::tolower((unsigned char)c);
  return true;
}

// webdataset's meta files: __NAME__ at the top level.
bool is_meta_member(const std::string& name) {
  return name.find('/') == std::string::npos && name.size() >= 4 && name.compare(0, 2, "__") == 0 &&
         name.compare(name.size() - 2, 2, "__") == 0;
}

// pandas.json_normalize's flattening of one object: nested objects become "a.b" columns.
void flatten_into(ojson& out, const ojson& obj, const std::string& prefix) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string name = prefix + it.key();
    if (it.value().is_object() && !it.value().empty()) {
      flatten_into(out, it.value(), name + ".");
    } else {
      out[name] = it.value();
    }
  }
}

class ShardReader {
 public:
  explicit ShardReader(const std::string& path) : path_(path), a_(archive_read_new()) {
    archive_read_support_filter_gzip(a_);
    archive_read_support_format_tar(a_);
    if (archive_read_open_filename(a_, path.c_str(), 1 << 16) != ARCHIVE_OK) fail();
  }
  ~ShardReader() { archive_read_free(a_); }

  // Appends the next samples (up to about max_samples, or max_bytes of members read) to out;
  // false once the shard has ended (its last sample is then in out).
  bool read(std::vector<Sample>& out, size_t max_samples, size_t max_bytes) {
    size_t bytes = 0;
    while (!done_) {
      archive_entry* e = nullptr;
      const int r = archive_read_next_header(a_, &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        fail();
        break;
      }
      members_++;
      const std::string name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
      std::string key, ext;
      if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) || is_meta_member(name) ||
          !split_key(name, key, ext)) {
        skipped_++;
        continue;
      }
      if (!cur_ || cur_->key != key) {
        if (cur_) out.push_back(std::move(*cur_));
        cur_.emplace();
        cur_->key = key;
        if (out.size() >= max_samples || bytes >= max_bytes) {
          member(e, name, ext, bytes);
          return true;
        }
      }
      member(e, name, ext, bytes);
    }
    done_ = true;
    if (cur_) out.push_back(std::move(*cur_));
    cur_.reset();
    return false;
  }

  int64_t members() const { return members_; }
  int64_t skipped() const { return skipped_; }
  const std::string& error() const { return error_; }

 private:
  void fail(const std::string& what = "") {
    const char* msg = archive_error_string(a_);
    error_ = path_ + ": " + (what.empty() ? "" : what + ": ") + (msg ? msg : "truncated");
    done_ = true;
  }

  // One member of the current sample: read (when used and under the cap) and filed.
  void member(archive_entry* e, const std::string& name, const std::string& ext, size_t& bytes) {
    Sample& s = *cur_;
    const bool image = is_image_ext(ext), used = image || ext == "txt" || ext == "json";
    if (!s.exts.insert(ext).second) {
      s.errors.push_back(name + ": a second member with this name; left out");
      return;
    }
    if (image && !s.image_member.empty()) {
      s.errors.push_back("two images, " + s.image_member + " and " + name + ": neither embedded");
      s.image.reset();
      return;
    }
    if (image) s.image_member = name;
    if (ext == "txt") s.caption_member = true;
    if (!used) return;  // left to the next header, which skips it
    const la_int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
    if (size < 0 || (uint64_t)size > kMaxMemberBytes) {
      s.errors.push_back(strprintf("%s: %lld bytes, over the %zu MiB cap on a member; not read", name.c_str(),
                                   (long long)size, kMaxMemberBytes >> 20));
      return;
    }
    auto data = std::make_shared<std::string>((size_t)size, '\0');
    size_t got = 0;
    while (got < (size_t)size) {
      const la_ssize_t n = archive_read_data(a_, &(*data)[got], (size_t)size - got);
      if (n <= 0) break;
      got += (size_t)n;
    }
    if (got < (size_t)size) {
      s.errors.push_back(strprintf("%s: the shard ends inside this member (%zu of %lld bytes)", name.c_str(), got,
                                   (long long)size));
      s.cut = true;
      fail("ends inside " + name);
      return;
    }
    bytes += got;
    if (image) {
      s.image = std::move(data);
    } else if (ext == "txt") {
      s.caption = std::move(*data);
    } else {
      // (flattening and writing the fields recurse, so the nesting is bounded: a 64 MiB member
      // could nest millions deep)
      bool too_deep = false;
      ojson j = ojson::parse(*data, [&](int depth, ojson::parse_event_t, ojson&) {
        too_deep = too_deep || depth > kMaxJsonDepth;
        return true;
      }, false);
      if (j.is_discarded() || !j.is_object()) {
        s.errors.push_back(name + ": not a JSON object; its fields left out");
      } else if (too_deep) {
        s.errors.push_back(strprintf("%s: nested deeper than %d levels; its fields left out", name.c_str(), kMaxJsonDepth));
      } else {
        s.meta = std::move(j);
      }
    }
  }

  std::string path_;
  archive* a_;
  std::optional<Sample> cur_;
  bool done_ = false;
  int64_t members_ = 0, skipped_ = 0;
  std::string error_;
};

// ---- writing a part -------------------------------------------------------------------

std::string tmp_suffix() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return strprintf(".tmp-%s-%d", host, (int)getpid());
}

class PartWriter {
 public:
  PartWriter(const std::string& out, const std::string& part, int64_t dim) : dim_(dim) {
    for (const char* sub : {"img_emb", "text_emb", "metadata", "stats"}) fs::create_directories(out + "/" + sub);
    final_ = {img_path(out, part), text_path(out, part), stats_path(out, part), meta_path(out, part, ".jsonl")};
    const std::string suf = tmp_suffix();
    for (size_t i = 0; i < 4; i++) {
      tmp_[i] = final_[i] + suf;
      files_[i].open(tmp_[i], std::ios::binary | std::ios::trunc);
      CLIP_CHECK(files_[i], "cannot write %s", tmp_[i].c_str());
    }
    files_[0] << npy_header(DType::f16, 0, dim);
    files_[1] << npy_header(DType::f16, 0, dim);
  }
  ~PartWriter() {
    if (committed_) return;
    for (size_t i = 0; i < 4; i++) {
      files_[i].close();
      std::error_code ec;
      fs::remove(tmp_[i], ec);
    }
  }

  // n rows of each: the image and text embeddings [n, E] (zero rows for failures) and the
  // metadata lines.
  void rows(const std::vector<float>& img, const std::vector<float>& txt, const std::vector<std::string>& meta_lines) {
    std::vector<uint16_t> h(img.size());
    for (int k = 0; k < 2; k++) {
      const std::vector<float>& src = k == 0 ? img : txt;
      for (size_t i = 0; i < src.size(); i++) h[i] = f32_to_f16(src[i]);
      files_[k].write((const char*)h.data(), (std::streamsize)(h.size() * 2));
    }
    for (const std::string& l : meta_lines) files_[3] << l << '\n';
    rows_ += (int64_t)meta_lines.size();
  }

  void commit(const std::string& stats) {
    files_[2] << stats << '\n';
    for (int k = 0; k < 2; k++) {
      files_[k].seekp(0);
      files_[k] << npy_header(DType::f16, rows_, dim_);
    }
    for (size_t i = 0; i < 4; i++) {
      files_[i].close();
      CLIP_CHECK(!files_[i].fail(), "error writing %s", tmp_[i].c_str());
    }
    for (size_t i = 0; i < 4; i++) fs::rename(tmp_[i], final_[i]);  // the metadata last
    committed_ = true;
  }

 private:
  int64_t dim_, rows_ = 0;
  std::array<std::string, 4> final_, tmp_;
  std::ofstream files_[4];
  bool committed_ = false;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

}  // namespace

// ---- one shard ------------------------------------------------------------------------

ShardResult embed_shard(Model& model, const std::string& shard, const std::string& out_dir, const std::string& part,
                        const ShardOptions& opts) {
  using clock = std::chrono::steady_clock;
  ShardResult res;
  const int64_t E = model.embed_dim();
  ShardReader reader(shard);
  std::optional<PartWriter> writer;
  PipelineOptions po;
  po.batch_size = opts.batch_size;
  po.decode_threads = opts.decode_threads;
  po.normalize = true;
  EmbedPipeline pipeline(model, po);
  bool more = true;
  while (more) {
    std::vector<Sample> chunk;
    auto t0 = clock::now();
    more = reader.read(chunk, kChunkSamples, kChunkBytes);
    res.read_s += seconds_since(t0);
    if (!writer) {
      if (reader.members() == 0 && !reader.error().empty()) {  // not a tar we can read at all
        res.shard_error = reader.error();
        return res;
      }
      writer.emplace(out_dir, part, E);
    }
    // The chunk's images, then its captions, through the pipeline.
    std::vector<EmbedItem> items;
    std::vector<size_t> owner;
    for (size_t i = 0; i < chunk.size(); i++)
      if (chunk[i].image) {
        items.push_back({true, chunk[i].image_member, chunk[i].image});
        owner.push_back(i);
      }
    const size_t n_images = items.size();
    for (size_t i = 0; i < chunk.size(); i++)
      if (chunk[i].caption) {
        items.push_back({false, *chunk[i].caption, nullptr});
        owner.push_back(i);
      }
    std::vector<float> img(chunk.size() * (size_t)E, 0.0f), txt(chunk.size() * (size_t)E, 0.0f);
    auto t1 = clock::now();
    bool stopped = false;
    pipeline.run(items, [&](const EmbedBatch& b) {
      for (size_t j = 0; j < b.results.size(); j++) {
        const size_t k = b.first + j, i = owner[k];
        const EmbedResult& r = b.results[j];
        const bool image = k < n_images;
        if (!r.error.empty()) {
          chunk[i].errors.push_back(image ? r.error : chunk[i].key + ".txt: " + r.error);
          continue;
        }
        std::copy(r.embedding.begin(), r.embedding.end(), (image ? img : txt).begin() + (std::ptrdiff_t)(i * E));
      }
      stopped = opts.stop && opts.stop();
      return !stopped;
    });
    res.embed_s += seconds_since(t1);
    if (stopped) {
      res.stopped = true;
      return res;  // the writer removes its temporary files
    }
    auto t2 = clock::now();
    std::vector<std::string> lines;
    for (size_t i = 0; i < chunk.size(); i++) {
      Sample& s = chunk[i];
      if (s.image_member.empty() && !s.cut)
        s.errors.insert(s.errors.begin(), "no image (" + s.key + ".jpg, .png, .webp, ...)");
      if (!s.caption_member && !s.cut) s.errors.push_back("no caption (" + s.key + ".txt)");
      ojson row = ojson::object();
      row["image_path"] = s.key;
      row["caption"] = s.caption ? ojson(*s.caption) : ojson(nullptr);
      ojson flat = ojson::object();
      flatten_into(flat, s.meta, "");
      for (auto it = flat.begin(); it != flat.end(); ++it)
        if (it.key() != "image_path" && it.key() != "caption" && it.key() != "metadata" && it.key() != "error")
          row[it.key()] = it.value();
      std::string error;
      for (const std::string& e : s.errors) error += (error.empty() ? "" : "; ") + e;
      row["error"] = error.empty() ? ojson(nullptr) : ojson(error);
      if (!error.empty()) res.failed++;
      lines.push_back(dump(row));
    }
    writer->rows(img, txt, lines);
    res.samples += (int64_t)chunk.size();
    res.write_s += seconds_since(t2);
    if (opts.on_samples) opts.on_samples(res.samples);
  }
  res.shard_error = reader.error();
  res.skipped_members = reader.skipped();
  res.decode_wait_s = pipeline.decode_wait_seconds();
  auto t3 = clock::now();
  ojson stats = {{"shard", shard},
                 {"part", part},
                 {"samples", res.samples},
                 {"failed", res.failed},
                 {"skipped_members", res.skipped_members},
                 {"shard_error", res.shard_error.empty() ? ojson(nullptr) : ojson(res.shard_error)},
                 {"read_s", res.read_s},
                 {"embed_s", res.embed_s},
                 {"decode_wait_s", res.decode_wait_s},
                 {"write_s", res.write_s}};
  writer->commit(dump(stats));
  res.write_s += seconds_since(t3);
  res.written = true;
  return res;
}

}  // namespace clip
