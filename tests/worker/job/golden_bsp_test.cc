// Golden per-epoch test losses of a fixed bsp job in single-node mode (see golden_bsp.h).
#include "tests/worker/job/golden_bsp.h"

#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::TempDir;

class GoldenBspTest : public golden::GoldenFixture {
 protected:
  // Trains single-node and returns the per-epoch test loglosses.
  static std::vector<double> Run(const std::string& optimizer, const std::string& sets = "") {
    TempDir out;
    Train(0, optimizer, out.path(), sets);
    return golden::EpochLoglosses(out.File("metrics.jsonl"));
  }
};

TEST_F(GoldenBspTest, SgdMatchesTheGoldenLosses) {
  golden::ExpectGolden(Run("sgd"), golden::kSgdLoglosses, "sgd");
}

TEST_F(GoldenBspTest, AdagradMatchesTheGoldenLosses) {
  golden::ExpectGolden(Run("adagrad"), golden::kAdagradLoglosses, "adagrad");
}

// The number of servers changes no bit of a bsp model (the number of workers would: it
// changes the batches): one server gives exactly the losses of two in the same build, and
// both match the golden values (within kRelTolerance: another build's floating-point code
// may round the last digit differently).
TEST_F(GoldenBspTest, OneServerGivesTheSameLosses) {
  const std::vector<double> one = Run("adagrad", "--set cluster.local_servers=1");
  const std::vector<double> two = Run("adagrad");
  EXPECT_EQ(one, two);
  golden::ExpectGolden(one, golden::kAdagradLoglosses, "adagrad, one server");
}

// Prints the constants for golden_bsp.h (see there).
TEST_F(GoldenBspTest, DISABLED_PrintGolden) {
  for (const char* opt : {"sgd", "adagrad"}) {
    std::string line = std::string("k") + (opt[0] == 's' ? "Sgd" : "Adagrad") + "Loglosses = {";
    const std::vector<double> l = Run(opt);
    for (std::size_t e = 0; e < l.size(); ++e) line += (e ? ", " : "") + golden::G9(l[e]);
    std::cout << line << "};\n";
  }
}

}  // namespace
}  // namespace fmps
