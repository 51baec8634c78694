// Files and messages of fmps hold numbers as raw little-endian arrays copied verbatim with
// memcpy (wire frames, checkpoint shards, model chunks). Including this header states, and
// checks at compile time, that this host can do so.
#pragma once

#include <bit>
#include <limits>

#include "common/base/types.h"

namespace fmps {

static_assert(std::endian::native == std::endian::little,
              "fmps copies little-endian arrays verbatim: big-endian hosts are not supported");
static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4,
              "floats travel as IEEE 754 binary32");
static_assert(sizeof(Key) == 8, "keys travel as 64-bit integers");

}  // namespace fmps
