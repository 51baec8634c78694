// libFuzzer entry point of the shard target; the body is FuzzShardFile (tests/fuzz/fuzz_targets.h).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fmps::fuzz::FuzzShardFile(data, size);
}
