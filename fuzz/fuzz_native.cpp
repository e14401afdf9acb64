// libFuzzer target: the native weights file parser (header, config, tensor table, bounds).
#include <cstddef>
#include <cstdint>

#include "weights/internal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    clip::weights_detail::parse_native_buffer(data, size, "fuzz.clip");
  } catch (const clip::Error&) {
  }
  return 0;
}
