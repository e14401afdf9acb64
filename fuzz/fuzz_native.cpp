// libFuzzer target: the native weights file parser (container, model header, tensor table, bounds).
#include <cstddef>
#include <cstdint>

#include "clip/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    clip::checkpoint_detail::parse_native_weights(data, size, "fuzz.clip");
  } catch (const clip::Error&) {
  }
  return 0;
}
