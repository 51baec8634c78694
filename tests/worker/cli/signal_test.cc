// SIGTERM and SIGINT in single-node mode, through the binary: the job stops with one line
// and the exit status 128 + signal, leaves no incomplete checkpoint or output file, and
// with checkpoint.dir set SIGTERM first writes a checkpoint that `--resume` continues from
// without losing anything (bsp: the same model as an uninterrupted run).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/model/model_file.h"
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

constexpr int kRows = 300000;

class SignalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string out;
    ASSERT_EQ(RunCommand(FmpsBinary() + " synth --out " + dir_.File("data") + " --rows " +
                             std::to_string(kRows) + " --test-rows 1000 --vocab 5000 --seed 9",
                         &out),
              0)
        << out;
  }
  // A bsp job of 3 epochs writing into dir/`run`, with checkpoints in dir/ckpt if `ckpt`.
  std::string Config(const std::string& run, bool ckpt) const {
    std::string yaml = "data:\n  train: " + dir_.File("data/train.libsvm") +
                       "\n  format: libsvm\nmodel:\n  k: 4\ntrain:\n  epochs: 3\n"
                       "  batch_size: 128\n  consistency: bsp\n  progress_seconds: 0.05\n"
                       "cluster:\n  local_workers: 2\noutput:\n  dir: " +
                       dir_.File(run) + "\n";
    if (ckpt) yaml += "checkpoint:\n  dir: " + dir_.File("ckpt") + "\n  every_seconds: 1000\n";
    return dir_.Write(run + ".yaml", yaml);
  }
  // Starts `fmps train cfg`, sends `signal` once the first progress line is out, and
  // returns the exit status; stderr goes to dir/stderr.txt.
  int TrainAndSignal(const std::string& cfg, const std::string& signal) const {
    const std::string err = dir_.File("stderr.txt");
    const std::string cmd = "(" + FmpsBinary() + " train " + cfg + " >/dev/null 2>" + err +
                            " & pid=$!; i=0; while ! grep -q 'epoch 1/' " + err +
                            " 2>/dev/null && [ $i -lt 400 ]; do sleep 0.02; i=$((i+1)); done; "
                            "kill -" + signal + " $pid; wait $pid; echo status $?)";
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
  std::string StderrLines(const std::string& prefix, int* count) const {
    std::string last;
    *count = 0;
    for (const std::string& l : Lines(ReadFile(dir_.File("stderr.txt")))) {
      if (l.rfind(prefix, 0) == 0) ++*count, last = l;
    }
    return last;
  }
  TempDir dir_;
};

TEST_F(SignalTest, SigtermWritesACheckpointAndResumeLosesNothing) {
  const std::string cfg = Config("run", true);
  EXPECT_EQ(TrainAndSignal(cfg, "TERM"), 143) << ReadFile(dir_.File("stderr.txt"));
  int lines = 0;
  const std::string line = StderrLines("fmps: interrupted by SIGTERM", &lines);
  EXPECT_EQ(lines, 1) << ReadFile(dir_.File("stderr.txt"));
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
  EXPECT_EQ(TrainAndSignal(Config("run", false), "INT"), 130) << ReadFile(dir_.File("stderr.txt"));
  int lines = 0;
  StderrLines("fmps: interrupted by SIGINT", &lines);
  EXPECT_EQ(lines, 1) << ReadFile(dir_.File("stderr.txt"));
  EXPECT_FALSE(fs::exists(dir_.File("run/model.fmps")));
  ExpectNothingIncomplete(dir_.path());
}

}  // namespace
}  // namespace fmps
