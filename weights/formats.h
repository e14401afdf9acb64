// The checkpoint formats, read without Python and with bounded memory: torch zips (pickle as
// data, never code), safetensors, our native container, and the JSON and file helpers the
// model layer reads side configs with. The result is named raw tensors under the source's own
// names; what the names and shapes mean (the model) is clip/checkpoint.h's business.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/base.h"
#include "core/shape.h"

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

// ---- native container ----
// Our file, made to load in milliseconds by mmap with zero copies:
//
//   offset 0   "CLIPENG\0"                 8-byte magic
//          8   u32 LE version (1)
//         12   u64 LE header length H
//         20   H bytes of JSON: the caller's header object, plus
//              "vocab": null | {"offset": from the data start, "nbytes"}   (the blob)
//              "tensors": [{"name", "dtype": "f16"|"bf16"|"f32", "shape": [...],
//                           "offset": from the data start, "nbytes"}, ...]
//   align64(20 + H)   data section: the blob, then the tensors, each item starting at a
//                     multiple of 64 bytes from the data start.
// What the rest of the header and the blob mean is the model layer's (clip/checkpoint.cpp).
constexpr char kNativeMagic[8] = {'C', 'L', 'I', 'P', 'E', 'N', 'G', '\0'};
constexpr uint32_t kNativeVersion = 1;
constexpr size_t kNativeAlign = 64;

// A named tensor in host memory, in one of the weight dtypes.
struct NamedTensor {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  const void* data = nullptr;
  size_t nbytes() const { return (size_t)shape.numel() * dtype_size(dtype); }
};

struct NativeFile {
  nlohmann::json header;           // the whole header object
  bool has_blob = false;           // "vocab" was not null
  const uint8_t* blob = nullptr;   // into the data section
  size_t blob_size = 0;
  std::vector<NamedTensor> tensors;  // point into `data` (zero copy)
};
// Parses a native file in memory: the preamble, the header JSON, the blob's and every
// tensor's bounds, dtypes and alignment. Throws naming `name` and the field.
NativeFile parse_native_buffer(const void* data, size_t size, const std::string& name);
// Field `key` of the header object o (or of an object in it, `where`: "config", "a tensor");
// throws naming the file, where and the key when o is no object or has no such field.
const nlohmann::json& native_field(const nlohmann::json& o, const char* key, const std::string& file,
                                   const char* where);
// Writes header + "vocab" (the blob's place; null without one) +
// "tensors" (converted to dtype: f16, bf16 or f32) through a temporary file renamed into place.
void write_native_file(const std::string& path, nlohmann::json header, const std::string& blob, bool with_blob,
                       const std::vector<NamedTensor>& tensors, DType dtype);

// ---- files and side configs ----
// A JSON file of at most 64 MiB; throws naming it when it cannot be read or parsed.
nlohmann::json read_json(const std::string& path);
bool file_exists(const std::string& p);
bool dir_exists(const std::string& p);
std::string dirname_of(const std::string& p);  // "." for a bare name
// Reads one checkpoint file (a torch zip or a safetensors file; detected from the content)
// into a RawSet that keeps `m` alive where tensors point into it.
RawSet read_checkpoint_file(const std::string& path, const std::shared_ptr<Mapping>& m);

}  // namespace clip::weights_detail
