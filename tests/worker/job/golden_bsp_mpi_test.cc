// Golden per-epoch test losses of a fixed bsp job under mpirun, 2 servers + 2 workers
// (see golden_bsp.h): the same values as in single-node mode.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/util/test_util.h"
#include "tests/worker/job/golden_bsp.h"

namespace fmps {
namespace {

using testing::TempDir;

TEST(GoldenBspMpiTest, TwoServersTwoWorkersMatchTheGoldenLosses) {
  TempDir dir;
  const SynthResult data = golden::MakeData(dir.File("synth"));
  for (const char* optimizer : {"sgd", "adagrad"}) {
    TempDir out;
    const std::string config =
        dir.Write(std::string(optimizer) + ".yaml", golden::ConfigYaml(data, optimizer));
    std::string log;
    const int rc = testing::RunCommand(
        "timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none "
        "--mca mpi_yield_when_idle 1 -np 4 " +
            testing::FmpsBinary() + " train " + config + " --set output.dir=" + out.path(),
        &log);
    ASSERT_EQ(rc, 0) << log;
    golden::ExpectGolden(golden::EpochLoglosses(out.File("metrics.jsonl")),
                         optimizer[0] == 's' ? golden::kSgdLoglosses : golden::kAdagradLoglosses,
                         optimizer);
  }
}

}  // namespace
}  // namespace fmps
