// Internals shared by the weights readers (not part of the public API; the fuzz targets and
// tests use them to reach each parser directly).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "weights/weights.h"

namespace clip::weights_detail {

// Element types a checkpoint may hold. Only f32/f16/bf16 may be model weights; the others
// appear as buffers (OpenAI's int64 scalars, HF's position_ids) and are dropped.
enum class RawType : uint8_t { f32, f16, bf16, f64, i64, i32, i16, i8, u8, boolean };
size_t raw_size(RawType t);
const char* raw_name(RawType t);
bool raw_is_weight(RawType t);  // f32, f16 or bf16
DType raw_to_dtype(RawType t);  // only for weight types

// Owns the memory tensors point into: file mappings and heap buffers.
struct Holder {
  std::vector<std::unique_ptr<uint8_t[]>> bufs;
  std::vector<std::shared_ptr<void>> parts;  // mappings, other holders
  uint8_t* alloc(size_t n);
};

// A read-only mapping of a whole file. size 0 is allowed (data is then null).
struct Mapping {
  const uint8_t* data = nullptr;
  size_t size = 0;
  ~Mapping();
};
std::shared_ptr<Mapping> map_file(const std::string& path);

// A tensor under the source's own name, contiguous, in host memory owned by a Holder.
struct RawTensor {
  std::string name;
  RawType type = RawType::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

struct RawSet {
  std::string format;  // "openai-torchscript", "state-dict", "safetensors"
  std::vector<RawTensor> tensors;
  std::shared_ptr<Holder> holder = std::make_shared<Holder>();
  // File mappings held by holder that tensors point into (see Weights::file_regions).
  std::vector<std::pair<const void*, size_t>> file_regions;
};

// Byte count of a tensor: product of dims times elem_size, with overflow checks; throws
// naming `what` on a negative dimension or a product past 2^62.
int64_t checked_nbytes(const std::vector<int64_t>& shape, size_t elem_size,
                      const std::string& what);
std::string shape_str(const std::vector<int64_t>& shape);  // "[77, 512]"

// ---- zip (libzip) ----
// Limits every member to its declared size and to max_member_bytes; reading a member that
// inflates past its declared size, or fails its CRC, throws.
class ZipReader {
 public:
  ZipReader(const void* data, size_t size, const std::string& name);
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;
  const std::vector<std::string>& names() const { return names_; }
  bool has(const std::string& member) const;
  // Declared uncompressed size (throws when missing or over the limit).
  uint64_t member_size(const std::string& member) const;
  // Reads the whole member into dst (exactly member_size bytes).
  void read(const std::string& member, void* dst, uint64_t size) const;
  std::string read_string(const std::string& member) const;
  const std::string& name() const { return name_; }
  uint64_t max_member_bytes = uint64_t(64) << 30;

 private:
  int64_t index(const std::string& member) const;
  std::string name_;
  void* zip_ = nullptr;  // zip_t*
  std::vector<std::string> names_;
  std::map<std::string, int64_t> index_;
};

// ---- pickle + torch zip ----
struct PickleLimits {
  size_t max_stack = 1 << 20;
  size_t max_memo = 1 << 20;
  size_t max_objects = 1 << 22;
  int max_depth = 64;  // nesting of dicts/objects when collecting tensors
};
// Reads a torch zip (torch.save or TorchScript): data.pkl, tensors from <root>/data/<key>.
RawSet read_torch_zip(const ZipReader& zip, const PickleLimits& lim = {});
RawSet parse_torch_zip_buffer(const void* data, size_t size, const std::string& name);
// Runs only the pickle machine over `data` and collects tensors; storages are not read.
// Used by tests and the fuzz target. Returns the tensor names found.
std::vector<std::string> parse_pickle_names(const void* data, size_t size,
                                            const std::string& name,
                                            const PickleLimits& lim = {});

// ---- safetensors ----
// Tensors point into `data`, which the caller keeps alive (copied when misaligned).
RawSet parse_safetensors_buffer(const void* data, size_t size, const std::string& name,
                                Holder& holder);

// ---- native ----
constexpr char kNativeMagic[8] = {'C', 'L', 'I', 'P', 'E', 'N', 'G', '\0'};
constexpr uint32_t kNativeVersion = 1;
constexpr size_t kNativeAlign = 64;
// Parses a native file in memory; tensors point into `data` (zero copy).
Weights parse_native_buffer(const void* data, size_t size, const std::string& name);

// ---- canonical mapping and checks ----
// Sane, consistent config values; throws naming `file`.
void check_config(const ModelConfig& c, const std::string& file);
// w.tensors are exactly canonical_tensors(w.config), in order; the vocab fits the config.
void check_canonical(const Weights& w);
// HF CLIPModel names -> OpenAI names (q/k/v concatenated, projections transposed).
// Tensors already under OpenAI names pass through. Drops ignorable buffers.
void map_hf_names(RawSet& set, const std::string& file);
// HF mapping, `module.` prefixes, config inference and the canonical checks, with no config
// files or options (load_weights adds those). `set` keeps owning the memory.
Weights canonical_weights(RawSet& set, const std::string& path);

// The config as the JSON object the native header and `clip info --json` use.
nlohmann::json config_json(const ModelConfig& c);

}  // namespace clip::weights_detail
