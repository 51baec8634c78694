#include "common/base/hash.h"

#include <xxhash.h>

namespace fmps {

std::uint64_t HashToken(std::uint32_t column, std::string_view token) {
  return XXH3_64bits_withSeed(token.data(), token.size(), Mix64(column + 1));
}

}  // namespace fmps
