// ReserveHugeFloats (common/base/huge_pages.h): capacity, what it keeps and drops, and the
// huge-page advice on the grown buffer (read back from /proc/self/smaps).
#include "common/base/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fmps {
namespace {

// The VmFlags line of the mapping of /proc/self/smaps that holds address a ("" if none).
std::string VmFlagsAt(std::uintptr_t a) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= a && a < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

TEST(HugePagesTest, GrowsWithSlackAndAdvisesHugePages) {
  std::vector<float> b;
  const std::size_t n = 3 * kHugePageBytes / sizeof(float);  // 6 MiB: whole huge pages inside
  ReserveHugeFloats(&b, n);
  EXPECT_TRUE(b.empty());
  EXPECT_GE(b.capacity(), n + n / 8);
  const auto begin = reinterpret_cast<std::uintptr_t>(b.data());
  const std::uintptr_t inner = (begin + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  ASSERT_LT(inner + kHugePageBytes, begin + b.capacity() * sizeof(float));
  EXPECT_NE(VmFlagsAt(inner).find(" hg"), std::string::npos) << VmFlagsAt(inner);
}

TEST(HugePagesTest, KeepsABufferThatIsLargeEnoughAndDropsOneThatGrows) {
  std::vector<float> b(1000, 2.0f);
  const float* data = b.data();
  ReserveHugeFloats(&b, 1000);
  EXPECT_EQ(b.data(), data);
  ASSERT_EQ(b.size(), 1000u);
  EXPECT_EQ(b[999], 2.0f);
  ReserveHugeFloats(&b, 5000);  // grows: the old contents are not copied
  EXPECT_TRUE(b.empty());
  EXPECT_GE(b.capacity(), 5000u);
}

}  // namespace
}  // namespace fmps
