// libFuzzer entry point of the model target; the body is FuzzModelFile (tests/fuzz/fuzz_targets.h).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fmps::fuzz::FuzzModelFile(data, size);
}
