// libFuzzer target: torch checkpoint zips (libzip + the restricted pickle reader + storages).
// Inputs that are not zips go straight to the pickle machine, so both layers get exercised.
#include <cstddef>
#include <cstdint>

#include "clip/checkpoint.h"
#include "weights/formats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace clip::weights_detail;
  try {
    if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
      ZipReader zip(data, size, "fuzz.pt");
      zip.max_member_bytes = 64 << 20;
      RawSet set = read_torch_zip(zip);
      clip::checkpoint_detail::canonical_weights(set, "fuzz.pt");
    } else {
      PickleLimits lim;
      lim.max_stack = 1 << 16;
      lim.max_memo = 1 << 16;
      lim.max_objects = 1 << 18;
      parse_pickle_names(data, size, "fuzz.pkl", lim);
    }
  } catch (const clip::Error&) {
  }
  return 0;
}
