// Replays every saved fuzzer input (tests/fuzz/regressions/<target>/*: inputs that once
// crashed a target or broke one of its checks; for the model and shard targets also small
// real files and crafted ones from tests/fuzz/file_seeds.cc: huge key counts, wrong k,
// truncated chunks) through the same target bodies the fuzzers
// run (tests/fuzz/fuzz_targets.h), and runs the reader targets on the first lines of the
// real data sets under several option bytes. A failing input aborts this test with the
// sanitizer's or the check's report; the input's path is printed first.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_targets.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using fuzz::AllFuzzTargets;
using fuzz::FuzzTarget;

std::vector<std::uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void Replay(const FuzzTarget& target, const std::vector<std::uint8_t>& input,
            const std::string& what) {
  std::fprintf(stderr, "replaying %s on target %s\n", what.c_str(), target.name);
  EXPECT_EQ(target.run(input.data(), input.size()), 0) << what;
}

const FuzzTarget& Target(const std::string& name) {
  for (const FuzzTarget& t : AllFuzzTargets()) {
    if (t.name == name) return t;
  }
  throw std::runtime_error("no fuzz target " + name);
}

TEST(FuzzRegressionsTest, SavedInputsPass) {
  const std::filesystem::path root =
      std::filesystem::path(FMPS_SOURCE_DIR) / "tests/fuzz/regressions";
  int replayed = 0;
  for (const FuzzTarget& target : AllFuzzTargets()) {
    const std::filesystem::path dir = root / target.name;
    if (!std::filesystem::is_directory(dir)) continue;
    std::vector<std::string> files;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      if (e.is_regular_file()) files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    for (const std::string& f : files) {
      Replay(target, ReadBytes(f), f);
      ++replayed;
    }
  }
  std::fprintf(stderr, "%d saved inputs replayed\n", replayed);
}

// The first lines of a real file, behind each of a few option bytes (see FuzzLibsvm).
void RunOnRealData(const std::string& target, const std::string& path, int lines) {
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path;
  std::string text, line;
  for (int i = 0; i < lines && std::getline(in, line); ++i) text += line + "\n";
  for (std::uint8_t option : {0x00, 0x1F, 0x5A, 0xA5, 0xFF}) {
    // (Sized up front: GCC 12 -O3 warns wrongly about inserting after an initializer list.)
    std::vector<std::uint8_t> input(text.size() + 1);
    input[0] = option;
    std::memcpy(input.data() + 1, text.data(), text.size());
    Replay(Target(target), input, path + " with option byte " + std::to_string(option));
  }
}

TEST(FuzzRegressionsTest, ReaderChecksHoldOnRealData) {
  FMPS_REQUIRE_SHARED_DATA(a9a, "a9a/a9a");
  RunOnRealData("libsvm", a9a, 60);
  RunOnRealData("libsvm", testing::SharedData("heart_scale/heart_scale"), 60);
  RunOnRealData("libffm", testing::SharedData("xlearn_criteo/small_train.txt"), 60);
  RunOnRealData("criteo", testing::SharedData("jqsl_pytorchfm_criteo/train.txt"), 60);
  RunOnRealData("csv", testing::SharedData("guestwalk_criteo_tiny/train.tiny.csv"), 60);
  RunOnRealData("csv", testing::SharedData("deepctr_samples/movielens_sample.txt"), 60);
}

}  // namespace
}  // namespace fmps
