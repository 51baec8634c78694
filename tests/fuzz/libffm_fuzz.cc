// libFuzzer entry point of the libffm target; the body is FuzzLibffm (tests/fuzz/fuzz_targets.h).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fmps::fuzz::FuzzLibffm(data, size);
}
