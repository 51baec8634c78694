// SIGTERM and SIGINT in single-node mode, through the binary: the job stops with one line
// and the exit status 128 + signal, leaves no incomplete checkpoint or output file, and
// with checkpoint.dir set SIGTERM first writes a checkpoint that `--resume` continues from
// without losing anything (bsp: the same model as an uninterrupted run).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/model/model_file.h"
#include "tests/util/signal_job.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

namespace fs = std::filesystem;
using testing::FmpsBinary;
using testing::JsonNumber;
using testing::ReadFile;
using testing::RunCommand;

constexpr int kRows = 300000;

class SignalTest : public testing::SignalJobTest {
 protected:
  SignalTest() : SignalJobTest(kRows) {}
  // A bsp job of 3 epochs with 2 local workers.
  std::string Config(const std::string& run, bool ckpt) const {
    return SignalJobTest::Config(run, ckpt, 3, "  local_workers: 2\n");
  }
  int TrainAndSignal(const std::string& cfg, const std::string& signal) const {
    return SignalJobTest::TrainAndSignal(FmpsBinary() + " train " + cfg,
                                         "kill -" + signal + " $pid");
  }
};

TEST_F(SignalTest, SigtermWritesACheckpointAndResumeLosesNothing) {
  const std::string cfg = Config("run", true);
  EXPECT_EQ(TrainAndSignal(cfg, "TERM"), 143) << Stderr();
  std::string line;
  EXPECT_EQ(CountStderrLines("fmps: interrupted by SIGTERM", &line), 1) << Stderr();
  EXPECT_NE(line.find("checkpoint"), std::string::npos) << line;
  EXPECT_FALSE(fs::exists(dir_.File("run/model.fmps")));
  ExpectNothingIncomplete(dir_.path());
  int checkpoints = 0;
  for (const auto& e : fs::directory_iterator(dir_.File("ckpt"))) checkpoints += e.is_directory();
  EXPECT_GE(checkpoints, 1);
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " train " + cfg + " --resume", &out), 0) << out;
  EXPECT_EQ(JsonNumber(ReadFile(dir_.File("run/summary.json")), "rows_trained"), 3.0 * kRows);
  ASSERT_EQ(RunCommand(FmpsBinary() + " train " + Config("plain", false), &out), 0) << out;
  EXPECT_LE(testing::MaxAbsDiff(Model::Load(dir_.File("plain/model.fmps")),
                                Model::Load(dir_.File("run/model.fmps"))),
            1e-5);
}

TEST_F(SignalTest, SigintWithoutCheckpointsLeavesNoOutput) {
  EXPECT_EQ(TrainAndSignal(Config("run", false), "INT"), 130) << Stderr();
  std::string line;
  EXPECT_EQ(CountStderrLines("fmps: interrupted by SIGINT", &line), 1) << Stderr();
  EXPECT_FALSE(fs::exists(dir_.File("run/model.fmps")));
  ExpectNothingIncomplete(dir_.path());
}

}  // namespace
}  // namespace fmps
