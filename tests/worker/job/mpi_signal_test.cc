// SIGTERM and SIGINT in MPI mode (1 server + 2 workers, bsp), through mpirun: the signal
// reaches every rank (as SLURM's --signal or srun deliver it), no rank dies on it, the root
// worker prints one line and mpirun exits with 128 + signal; with checkpoint.dir set
// SIGTERM first writes a final checkpoint that `--resume` under mpirun continues from
// without losing anything (the same model as an uninterrupted run).
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <string>

#include "common/model/model_file.h"
#include "worker/job/interrupt.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

namespace fs = std::filesystem;
using testing::FmpsBinary;
using testing::JsonNumber;
using testing::Lines;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;

constexpr int kRows = 200000;

std::string Mpirun() {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 "
         "-np 3 " +
         FmpsBinary();
}

class MpiSignalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string out;
    ASSERT_EQ(RunCommand(FmpsBinary() + " synth --out " + dir_.File("data") + " --rows " +
                             std::to_string(kRows) + " --test-rows 1000 --vocab 5000 --seed 9",
                         &out),
              0)
        << out;
  }
  // A bsp job of 2 epochs (1 server) writing into dir/`run`, checkpoints in dir/ckpt if `ckpt`.
  std::string Config(const std::string& run, bool ckpt) const {
    std::string yaml = "data:\n  train: " + dir_.File("data/train.libsvm") +
                       "\n  format: libsvm\nmodel:\n  k: 4\ntrain:\n  epochs: 2\n"
                       "  batch_size: 128\n  consistency: bsp\n  progress_seconds: 0.05\n"
                       "cluster:\n  servers: 1\noutput:\n  dir: " +
                       dir_.File(run) + "\n";
    if (ckpt) yaml += "checkpoint:\n  dir: " + dir_.File("ckpt") + "\n  every_seconds: 1000\n";
    return dir_.Write(run + ".yaml", yaml);
  }
  // Starts `mpirun fmps train cfg`, sends `signal` to every rank (mpirun's children) once
  // the first progress line is out, and returns mpirun's exit status; stderr goes to
  // dir/stderr.txt.
  int TrainAndSignal(const std::string& cfg, const std::string& signal) const {
    const std::string err = dir_.File("stderr.txt");
    std::string cmd = "(";
    cmd += Mpirun();
    cmd += " train " + cfg + " >/dev/null 2>" + err;
    cmd += " & pid=$!; i=0; while ! grep -q 'epoch 1/' " + err;
    cmd += " 2>/dev/null && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done; pkill -";
    cmd += signal + " -P $pid; wait $pid; echo status $?)";
    std::string out;
    RunCommand(cmd, &out);
    const std::size_t at = out.rfind("status ");
    return at == std::string::npos ? -1 : std::stoi(out.substr(at + 7));
  }
  // No temp file anywhere under `path`, and every checkpoint has its MANIFEST.
  static void ExpectNothingIncomplete(const std::string& path) {
    for (const auto& e : fs::recursive_directory_iterator(path)) {
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
      if (e.is_directory() && e.path().filename().string().rfind("ckpt-", 0) == 0) {
        EXPECT_TRUE(fs::exists(e.path() / "MANIFEST")) << e.path();
      }
    }
  }
  int CountStderrLines(const std::string& prefix, std::string* last) const {
    int count = 0;
    for (const std::string& l : Lines(ReadFile(dir_.File("stderr.txt")))) {
      if (l.rfind(prefix, 0) == 0) ++count, *last = l;
    }
    return count;
  }
  TempDir dir_;
};

TEST_F(MpiSignalTest, SigtermWritesACheckpointAndResumeLosesNothing) {
  const std::string cfg = Config("run", true);
  EXPECT_EQ(TrainAndSignal(cfg, "TERM"), 143) << ReadFile(dir_.File("stderr.txt"));
  std::string line;
  EXPECT_EQ(CountStderrLines("fmps: interrupted by SIGTERM", &line), 1)
      << ReadFile(dir_.File("stderr.txt"));
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
  EXPECT_EQ(TrainAndSignal(Config("run", false), "INT"), 130) << ReadFile(dir_.File("stderr.txt"));
  std::string line;
  EXPECT_EQ(CountStderrLines("fmps: interrupted by SIGINT", &line), 1)
      << ReadFile(dir_.File("stderr.txt"));
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
