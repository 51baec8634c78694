// libFuzzer entry point of the libsvm target; the body is FuzzLibsvm (tests/fuzz/fuzz_targets.h).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fmps::fuzz::FuzzLibsvm(data, size);
}
