// SIGTERM and SIGINT in MPI mode (1 server + 2 workers, bsp), through mpirun: the signal
// reaches every rank (as srun and SLURM's --signal deliver it), no rank dies on it, the root
// worker prints one line and mpirun exits with 128 + signal; with checkpoint.dir set
// SIGTERM first writes a final checkpoint that `--resume` under mpirun continues from
// without losing anything (the same model as an uninterrupted run).
#include <gtest/gtest.h>

#include <csignal>
#include <string>

#include "tests/util/signal_job.h"
#include "tests/util/test_util.h"
#include "worker/job/interrupt.h"

namespace fmps {
namespace {

using testing::FmpsBinary;

constexpr int kRows = 200000;

std::string Mpirun() {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 "
         "-np 3 " +
         FmpsBinary();
}

class MpiSignalTest : public testing::SignalJobTest {
 protected:
  MpiSignalTest() : SignalJobTest(kRows) {}
  // A bsp job of 2 epochs with 1 server rank (and so 2 worker ranks).
  std::string Config(const std::string& run, bool ckpt) const {
    return SignalJobTest::Config(run, ckpt, 2, "  servers: 1\n");
  }
  // The signal goes to every rank: mpirun's children.
  const Launch launch_{Mpirun(), "pkill -", " -P $pid", 2};
};

TEST_F(MpiSignalTest, SigtermWritesACheckpointAndResumeLosesNothing) {
  ExpectSigtermCheckpointsAndResumeLosesNothing(launch_, Config("run", true),
                                                Config("plain", false));
}

TEST_F(MpiSignalTest, SigintWithoutCheckpointsLeavesNoOutput) {
  ExpectSigintLeavesNoOutput(launch_, Config("run", false));
}

// The final checkpoint's time bound: past it the job stops without one and says so.
TEST(InterruptedTest, ATimedOutCutSaysNoFinalCheckpointWasWritten) {
  const Interrupted e(SIGTERM, FinalCheckpoint::kTimedOut);
  EXPECT_EQ(e.exit_status(), 143);
  EXPECT_EQ(std::string(e.what()),
            "interrupted by SIGTERM; no final checkpoint was written (the cut did not complete "
            "within 60 s; --resume continues from the newest complete checkpoint)");
}

}  // namespace
}  // namespace fmps
