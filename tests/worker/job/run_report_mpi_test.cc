// The MPI twin of run_report_test's first case: under mpirun (1 server + 2 workers, async
// adam) the final test metric is that of the model file the job wrote.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "tests/util/test_util.h"
#include "tests/worker/job/run_report_util.h"

namespace fmps {
namespace {

using testing::FmpsBinary;
using testing::RunCommand;
using testing::TempDir;

TEST(RunReportMpiTest, FinalTestMetricIsTheWrittenModels) {
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0) GTEST_SKIP() << "no mpirun";
  TempDir dir;
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " synth --out " + dir.File("data") +
                           " --rows 60000 --test-rows 20000 --vocab 20000 --seed 3",
                       &out),
            0)
      << out;
  const std::string cfg = dir.Write(
      "exp.yaml", "data:\n  train: " + dir.File("data/train.libsvm") +
                      "\n  test: " + dir.File("data/test.libsvm") +
                      "\n  format: libsvm\nmodel:\n  k: 4\noptimizer:\n  name: adam\n  lr: 0.002\n"
                      "train:\n  epochs: 3\n  consistency: async\n  max_delay: 8\n"
                      "cluster:\n  servers: 1\noutput:\n  dir: " +
                      dir.File("run") + "\n");
  const std::string cmd =
      "timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none --mca "
      "mpi_yield_when_idle 1 -np 3 " +
      FmpsBinary() + " train " + cfg + " 2>/dev/null";
  ASSERT_EQ(RunCommand(cmd, &out), 0) << out;
  testing::ExpectSummaryMetricIsTheModels(dir);
}

}  // namespace
}  // namespace fmps
