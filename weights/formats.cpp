// The formats' shared pieces: raw types, file mappings, byte counts, JSON files, and the
// detection of a checkpoint file's format from its content.
#include "weights/formats.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace clip {

using json = nlohmann::json;
using namespace weights_detail;

// ---------------------------------------------------------------------------------------
// small shared helpers

namespace weights_detail {

size_t raw_size(RawType t) {
  switch (t) {
    case RawType::f64: case RawType::i64: return 8;
    case RawType::f32: case RawType::i32: return 4;
    case RawType::f16: case RawType::bf16: case RawType::i16: return 2;
    case RawType::i8: case RawType::u8: case RawType::boolean: return 1;
  }
  return 1;
}

const char* raw_name(RawType t) {
  switch (t) {
    case RawType::f32: return "f32";
    case RawType::f16: return "f16";
    case RawType::bf16: return "bf16";
    case RawType::f64: return "f64";
    case RawType::i64: return "i64";
    case RawType::i32: return "i32";
    case RawType::i16: return "i16";
    case RawType::i8: return "i8";
    case RawType::u8: return "u8";
    case RawType::boolean: return "bool";
  }
  return "?";
}

bool raw_is_weight(RawType t) {
  return t == RawType::f32 || t == RawType::f16 || t == RawType::bf16;
}

DType raw_to_dtype(RawType t) {
  if (t == RawType::f16) return DType::f16;
  if (t == RawType::bf16) return DType::bf16;
  return DType::f32;
}

uint8_t* Holder::alloc(size_t n) {
  bufs.emplace_back(new uint8_t[n ? n : 1]);
  return bufs.back().get();
}

Mapping::~Mapping() {
  if (data) munmap((void*)data, size);
}

std::shared_ptr<Mapping> map_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  CLIP_CHECK(fd >= 0, "%s: cannot open: %s", path.c_str(), strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    fail("%s: not a regular file", path.c_str());
  }
  auto m = std::make_shared<Mapping>();
  m->size = (size_t)st.st_size;
  if (m->size) {
    void* p = mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      close(fd);
      fail("%s: cannot map %zu bytes: %s", path.c_str(), m->size, strerror(e));
    }
    m->data = (const uint8_t*)p;
  }
  close(fd);
  return m;
}

int64_t checked_nbytes(const std::vector<int64_t>& shape, size_t elem_size,
                       const std::string& what) {
  int64_t n = (int64_t)elem_size;
  for (int64_t d : shape) {
    CLIP_CHECK(d >= 0, "%s: negative dimension %lld", what.c_str(), (long long)d);
    if (d == 0) return 0;
  }
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n) || n > (int64_t(1) << 62))
      fail("%s: shape %s is too large (element count overflows)", what.c_str(),
           shape_str(shape).c_str());
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

json read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CLIP_CHECK(f.good(), "%s: cannot open", path.c_str());
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  CLIP_CHECK(s.size() < (size_t(64) << 20), "%s: config file too large", path.c_str());
  try {
    return json::parse(s);
  } catch (const json::exception& e) {
    fail("%s: not valid JSON: %s", path.c_str(), e.what());
  }
}

bool file_exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool dir_exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
std::string dirname_of(const std::string& p) {
  size_t s = p.find_last_of('/');
  if (s == std::string::npos) return ".";
  return s == 0 ? "/" : p.substr(0, s);
}

namespace {
bool is_zip(const uint8_t* p, size_t n) {
  return n >= 4 && p[0] == 'P' && p[1] == 'K' &&
         ((p[2] == 3 && p[3] == 4) || (p[2] == 5 && p[3] == 6));
}

}  // namespace

RawSet read_checkpoint_file(const std::string& path, const std::shared_ptr<Mapping>& m) {
  const uint8_t* p = m->data;
  size_t n = m->size;
  CLIP_CHECK(n > 0, "%s: the file is empty", path.c_str());
  if (is_zip(p, n)) {
    RawSet s = parse_torch_zip_buffer(p, n, path);
    return s;  // copies out of the zip; the mapping is not needed afterwards
  }
  if (p[0] == 0x80 && n >= 2 && p[1] <= 5)
    fail("%s: a legacy (pre-1.6, non-zip) torch file; re-save it with torch.save(...) from "
         "torch >= 1.6", path.c_str());
  if (n >= 9 && p[8] == '{') {
    RawSet s;
    RawSet r = parse_safetensors_buffer(p, n, path, *s.holder);
    r.holder = s.holder;
    r.holder->parts.push_back(m);  // zero-copy tensors point into the mapping
    r.file_regions.emplace_back(p, n);
    return r;
  }
  fail("%s: unrecognised file format (not a native, torch zip or safetensors file)",
       path.c_str());
}

}  // namespace weights_detail

}  // namespace clip
