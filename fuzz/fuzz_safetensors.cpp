// libFuzzer target: the safetensors parser, then name mapping, config inference and the
// canonical checks over its result.
#include <cstddef>
#include <cstdint>

#include "clip/checkpoint.h"
#include "weights/formats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace clip::weights_detail;
  try {
    RawSet set;
    RawSet r = parse_safetensors_buffer(data, size, "fuzz.safetensors", *set.holder);
    r.holder = set.holder;
    clip::checkpoint_detail::canonical_weights(r, "fuzz.safetensors");
  } catch (const clip::Error&) {
  }
  return 0;
}
