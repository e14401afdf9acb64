// Bulk embedding of WebDataset shards into clip-retrieval's output layout (`clip embed
// --webdataset`, clip_engine.bulk).
//
// Input: tar shards, plain or gzip-compressed (read by libarchive), named by patterns with
// brace ranges and lists that we expand ourselves. Members are grouped into samples as
// webdataset groups them: a member KEY.EXT joins the sample KEY (KEY: the name up to the
// first '.' of its last path component; EXT: the rest, lower-cased) while consecutive members
// share the key. A sample's image is its one member whose EXT is an image extension the
// decoder reads (jpg jpeg png bmp gif webp tif tiff), its caption KEY.txt, its metadata
// KEY.json (an object). Other members (KEY.cls, KEY.seg.png, ...) are left out; members with
// no key (no '.', a leading '.', webdataset's __meta__ files) and non-regular entries are
// skipped and counted.
//
// Output: one part per input shard, N its position in the expanded list, zero-padded to
// int(log10(shard count)) + 1 digits as clip-retrieval pads its partitions:
//   img_emb/img_emb_N.npy     float16 [n, E], L2-normalized (clip-retrieval's dtype)
//   text_emb/text_emb_N.npy   float16 [n, E], the captions, L2-normalized
//   metadata/metadata_N.jsonl one object per sample, in member order: image_path (the key,
//                             clip-retrieval's column for it), caption (null when missing),
//                             the .json's fields (nested objects flattened to "a.b" as
//                             pandas.json_normalize does; caption and image_path left out,
//                             as clip-retrieval drops them), and error (null, or every
//                             problem of the sample joined with "; ")
//   stats/stats_N.json        the shard, its sample and failure counts, the shard's own error
//                             (a truncated tar), seconds reading, embedding (decoding and the
//                             model, overlapped; decode_wait_s of it the model waiting for
//                             decoded images) and writing
// Row i of each file is sample i of the shard: every sample has its row, also a failed one.
// A sample whose image could not be embedded (missing, not an image, truncated, over the
// member cap) has a zero row in img_emb, one without a caption a zero row in text_emb, and
// says so in its error; a zero row scores 0 against every query. (clip-retrieval leaves
// failed samples out; keeping them in place keeps the rows one to one with the shard.)
//
// Each file is written to a temporary name beside it (NAME.tmp-HOST-PID) and renamed; the
// metadata file last, so a part is complete when its metadata file (.jsonl, or the .parquet
// clip_engine.bulk makes of it) and its two .npy files exist. Complete parts are skipped.
//
// Bounded memory: a member over kMaxMemberBytes is not read (its sample gets the error), nor
// a .json nested deeper than kMaxJsonDepth kept (the same); a shard is read kChunkSamples
// samples (or kChunkBytes of members) at a time, embedded and written before the next.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "clip/clip.h"

namespace clip {

constexpr size_t kMaxMemberBytes = 64u << 20;  // 64 MiB: larger members are not read
constexpr int kMaxJsonDepth = 64;               // a .json nested deeper is not kept
constexpr size_t kChunkSamples = 1024, kChunkBytes = 256u << 20;

// Shard names from one pattern, expanded as Python's braceexpand does: each {A..B} (integers,
// A <= B; zero-padded to the wider end when either end has a leading zero) and {x,y,z} in
// turn, left to right. Throws, naming the pattern, for an unmatched brace, an empty or
// descending range, and for glob characters (* ? [ ]), which a shell leaves in place when
// they match no file: quote the pattern and use a brace range.
std::vector<std::string> expand_shard_pattern(const std::string& pattern);

// The shards of a run: every pattern expanded, in order (a name twice is an error), every
// shard checked to exist (the error names the first ones missing, and the pattern when none
// exists).
std::vector<std::string> expand_shard_patterns(const std::vector<std::string>& patterns);

// Which shards a task runs: --shard-index/--shard-count when given (index >= 0), else
// SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT when set, else all.
// Task `index` of `count` runs shards i with i % count == index (clip-retrieval's Sampler).
struct ShardSelection {
  int index = 0, count = 1;
  std::string source;  // "flags", "SLURM_ARRAY_TASK_ID" or "all"
};
ShardSelection resolve_shard_selection(int index, int count);
std::vector<size_t> select_shards(size_t n_shards, const ShardSelection& s);

// Part N's name for shard `index` of `count`: zero-padded to int(log10(count)) + 1 digits.
std::string part_name(size_t index, size_t count);
// Whether part `part` in `out_dir` is complete (see above).
bool part_complete(const std::string& out_dir, const std::string& part);

struct ShardOptions {
  int batch_size = 0;      // the pipeline's (0: default_batch_size)
  int decode_threads = 0;  // 0: one per hardware thread
  std::function<bool()> stop;                 // polled between batches: true stops the shard
  std::function<void(int64_t)> on_samples;    // samples embedded so far in this shard (progress)
};

struct ShardResult {
  bool written = false;      // the part was written (false: the shard could not be read at all, or stopped)
  bool stopped = false;      // opts.stop asked to stop; nothing of the part is left
  int64_t samples = 0, failed = 0, skipped_members = 0;
  std::string shard_error;   // the tar's own problem ("" when it read to its end)
  double read_s = 0, embed_s = 0, write_s = 0;
  double decode_wait_s = 0;  // of embed_s, the model waiting for images to decode
};

// Embeds one shard into part `part` of out_dir (its folders made as needed). Problems of the
// data (a bad member, a truncated tar) go into the part and the result; an error writing the
// output throws.
ShardResult embed_shard(Model& model, const std::string& shard, const std::string& out_dir, const std::string& part,
                        const ShardOptions& opts = {});

}  // namespace clip
