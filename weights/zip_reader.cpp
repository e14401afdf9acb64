// Zip archives through libzip, with sizes checked before anything is inflated: a member may
// not declare more than max_member_bytes, nor more than deflate can produce from its
// compressed bytes (1032:1), and reading it must yield exactly the declared size (a member
// that inflates further is rejected, never buffered).
#include <zip.h>

#include <cstring>

#include "weights/formats.h"

namespace clip::weights_detail {

static std::string zip_errstr(zip_error_t* e) {
  const char* s = zip_error_strerror(e);
  return s ? s : "unknown zip error";
}

ZipReader::ZipReader(const void* data, size_t size, const std::string& name) : name_(name) {
  CLIP_CHECK(size >= 22, "%s: not a zip archive (%zu bytes, shorter than a zip end record)",
             name.c_str(), size);
  zip_error_t err;
  zip_error_init(&err);
  zip_source_t* src = zip_source_buffer_create(data, size, 0, &err);
  if (!src) {
    std::string msg = zip_errstr(&err);
    zip_error_fini(&err);
    fail("%s: cannot read zip: %s", name.c_str(), msg.c_str());
  }
  zip_t* za = zip_open_from_source(src, ZIP_RDONLY, &err);
  if (!za) {
    zip_source_free(src);
    std::string msg = zip_errstr(&err);
    zip_error_fini(&err);
    fail("%s: not a readable zip archive: %s", name.c_str(), msg.c_str());
  }
  zip_error_fini(&err);
  zip_ = za;
  zip_int64_t n = zip_get_num_entries(za, 0);
  if (n < 0 || n > (1 << 20)) {
    zip_discard(za);
    zip_ = nullptr;
    fail("%s: zip archive with %lld entries", name.c_str(), (long long)n);
  }
  for (zip_int64_t i = 0; i < n; i++) {
    const char* nm = zip_get_name(za, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
    std::string s = nm ? nm : "";
    names_.push_back(s);
    index_.emplace(s, i);
  }
}

ZipReader::~ZipReader() {
  if (zip_) zip_discard((zip_t*)zip_);
}

bool ZipReader::has(const std::string& member) const { return index_.count(member) != 0; }

int64_t ZipReader::index(const std::string& member) const {
  auto it = index_.find(member);
  CLIP_CHECK(it != index_.end(), "%s: zip member '%s' is missing", name_.c_str(),
             member.c_str());
  return it->second;
}

uint64_t ZipReader::member_size(const std::string& member) const {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index((zip_t*)zip_, (zip_uint64_t)index(member), 0, &st) != 0)
    fail("%s: cannot stat zip member '%s': %s", name_.c_str(), member.c_str(),
         zip_strerror((zip_t*)zip_));
  CLIP_CHECK((st.valid & ZIP_STAT_SIZE) && (st.valid & ZIP_STAT_COMP_SIZE),
             "%s: zip member '%s' has no declared size", name_.c_str(), member.c_str());
  CLIP_CHECK(st.size <= max_member_bytes,
             "%s: zip member '%s' declares %llu bytes uncompressed, over the limit of %llu",
             name_.c_str(), member.c_str(), (unsigned long long)st.size,
             (unsigned long long)max_member_bytes);
  bool stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
  if (stored) {
    CLIP_CHECK(st.size == st.comp_size,
               "%s: stored zip member '%s' declares %llu bytes but holds %llu",
               name_.c_str(), member.c_str(), (unsigned long long)st.size,
               (unsigned long long)st.comp_size);
  } else {
    // deflate cannot expand more than ~1032:1; anything beyond is a bomb or corrupt
    CLIP_CHECK(st.size / 1032 <= st.comp_size + 64,
               "%s: zip member '%s' declares %llu bytes from %llu compressed bytes "
               "(compression ratio too high; refusing to inflate)",
               name_.c_str(), member.c_str(), (unsigned long long)st.size,
               (unsigned long long)st.comp_size);
  }
  return st.size;
}

void ZipReader::read(const std::string& member, void* dst, uint64_t size) const {
  uint64_t declared = member_size(member);
  CLIP_CHECK(declared == size, "%s: zip member '%s' has %llu bytes, expected %llu",
             name_.c_str(), member.c_str(), (unsigned long long)declared,
             (unsigned long long)size);
  zip_file_t* f = zip_fopen_index((zip_t*)zip_, (zip_uint64_t)index(member), 0);
  if (!f)
    fail("%s: cannot open zip member '%s': %s", name_.c_str(), member.c_str(),
         zip_strerror((zip_t*)zip_));
  uint64_t got = 0;
  std::string error;
  while (got < size) {
    zip_int64_t r = zip_fread(f, (uint8_t*)dst + got, size - got);
    if (r < 0) {
      error = zip_file_strerror(f);
      break;
    }
    if (r == 0) break;
    got += (uint64_t)r;
  }
  if (error.empty() && got == size) {
    uint8_t extra[64];
    zip_int64_t r = zip_fread(f, extra, sizeof extra);
    if (r < 0) error = zip_file_strerror(f);
    else if (r > 0) error = "inflates past its declared size";
  }
  zip_fclose(f);
  CLIP_CHECK(error.empty(), "%s: zip member '%s': %s", name_.c_str(), member.c_str(),
             error.c_str());
  CLIP_CHECK(got == size, "%s: zip member '%s' is truncated: %llu of %llu bytes",
             name_.c_str(), member.c_str(), (unsigned long long)got,
             (unsigned long long)size);
}

std::string ZipReader::read_string(const std::string& member) const {
  uint64_t n = member_size(member);
  std::string s(n, '\0');
  if (n) read(member, &s[0], n);
  return s;
}

}  // namespace clip::weights_detail
