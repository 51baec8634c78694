// SIGTERM and SIGINT in MPI mode (1 server + 2 workers, bsp), through mpirun: the signal
// reaches every rank (as srun and SLURM's --signal deliver it), no rank dies on it, the root
// worker prints one line and mpirun exits with 128 + signal; with checkpoint.dir set
// SIGTERM first writes a final checkpoint that `--resume` under mpirun continues from
// without losing anything (the same model as an uninterrupted run).
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <string>

#include "common/model/model_file.h"
#include "tests/util/signal_job.h"
#include "tests/util/test_util.h"
#include "worker/job/interrupt.h"

namespace fmps {
namespace {

namespace fs = std::filesystem;
using testing::FmpsBinary;
using testing::JsonNumber;
using testing::ReadFile;
using testing::RunCommand;

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
  // Sends `signal` to every rank: mpirun's children.
  int TrainAndSignal(const std::string& cfg, const std::string& signal) const {
    return SignalJobTest::TrainAndSignal(Mpirun() + " train " + cfg,
                                         "pkill -" + signal + " -P $pid");
  }
};

TEST_F(MpiSignalTest, SigtermWritesACheckpointAndResumeLosesNothing) {
  const std::string cfg = Config("run", true);
  EXPECT_EQ(TrainAndSignal(cfg, "TERM"), 143) << Stderr();
  std::string line;
  EXPECT_EQ(CountStderrLines("fmps: interrupted by SIGTERM", &line), 1) << Stderr();
  EXPECT_NE(line.find("a final checkpoint was written"), std::string::npos) << line;
  EXPECT_FALSE(fs::exists(dir_.File("run/model.fmps")));
  ExpectNothingIncomplete(dir_.path());
  int checkpoints = 0;
  for (const auto& e : fs::directory_iterator(dir_.File("ckpt"))) checkpoints += e.is_directory();
  EXPECT_GE(checkpoints, 1);
  std::string out;
  ASSERT_EQ(RunCommand(Mpirun() + " train " + cfg + " --resume", &out), 0) << out;
  EXPECT_EQ(JsonNumber(ReadFile(dir_.File("run/summary.json")), "rows_trained"), 2.0 * kRows);
  ASSERT_EQ(RunCommand(Mpirun() + " train " + Config("plain", false), &out), 0) << out;
  EXPECT_LE(testing::MaxAbsDiff(Model::Load(dir_.File("plain/model.fmps")),
                                Model::Load(dir_.File("run/model.fmps"))),
            1e-5);
}

TEST_F(MpiSignalTest, SigintWithoutCheckpointsLeavesNoOutput) {
  EXPECT_EQ(TrainAndSignal(Config("run", false), "INT"), 130) << Stderr();
  std::string line;
  EXPECT_EQ(CountStderrLines("fmps: interrupted by SIGINT", &line), 1) << Stderr();
  EXPECT_FALSE(fs::exists(dir_.File("run/model.fmps")));
  ExpectNothingIncomplete(dir_.path());
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
