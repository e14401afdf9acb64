#include "core/act.h"

#include <string>

#include "core/base.h"

namespace clip {

const char* act_name(Act a) {
  switch (a) {
#define CLIP_ACT_NAME(name, f) \
  case Act::name: return #name;
    CLIP_ACTIVATIONS(CLIP_ACT_NAME)
#undef CLIP_ACT_NAME
  }
  return "?";
}

Act act_from_name(const char* s) {
  const std::string n = s;
#define CLIP_ACT_PARSE(name, f) \
  if (n == #name) return Act::name;
  CLIP_ACTIVATIONS(CLIP_ACT_PARSE)
#undef CLIP_ACT_PARSE
  fail("unknown activation '%s' (expected none, gelu, quick_gelu, relu or gelu_tanh)", s);
}

}  // namespace clip
