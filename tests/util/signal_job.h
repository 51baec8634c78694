// Shared fixture of the signal tests (single-node and MPI): synthetic data, a bsp job
// config, a run that is signalled once its first progress line is out, and the checks that
// nothing incomplete is left behind.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/model/model_file.h"
#include "tests/util/test_util.h"

namespace fmps::testing {

class SignalJobTest : public ::testing::Test {
 protected:
  // `rows` training rows are synthesized in SetUp.
  explicit SignalJobTest(int rows) : rows_(rows) {}
  void SetUp() override {
    std::string out;
    ASSERT_EQ(RunCommand(FmpsBinary() + " synth --out " + dir_.File("data") + " --rows " +
                             std::to_string(rows_) + " --test-rows 1000 --vocab 5000 --seed 9",
                         &out),
              0)
        << out;
  }
  // A bsp job of `epochs` epochs writing into dir/`run`, with checkpoints in dir/ckpt if
  // `ckpt`; `cluster` is the YAML of the cluster: section's entries.
  std::string Config(const std::string& run, bool ckpt, int epochs,
                     const std::string& cluster) const {
    std::string yaml =
        "data:\n  train: " + dir_.File("data/train.libsvm") +
        "\n  format: libsvm\nmodel:\n  k: 4\ntrain:\n  epochs: " + std::to_string(epochs) +
        "\n  batch_size: 128\n  consistency: bsp\n  progress_seconds: 0.05\n"
        "cluster:\n" +
        cluster + "output:\n  dir: " + dir_.File(run) + "\n";
    if (ckpt) yaml += "checkpoint:\n  dir: " + dir_.File("ckpt") + "\n  every_seconds: 1000\n";
    return dir_.Write(run + ".yaml", yaml);
  }
  // Runs `train_command` in the background, then `signal_command` (a shell command that may
  // use $pid, the background job's pid) once the first progress line is out; returns the
  // job's exit status. Its stderr goes to dir/stderr.txt.
  int TrainAndSignal(const std::string& train_command, const std::string& signal_command) const {
    const std::string err = dir_.File("stderr.txt");
    std::string cmd = "(";
    cmd += train_command;
    cmd += " >/dev/null 2>" + err;
    cmd += " & pid=$!; i=0; while ! grep -q 'epoch 1/' " + err;
    cmd += " 2>/dev/null && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done; ";
    cmd += signal_command + "; wait $pid; echo status $?)";
    std::string out;
    RunCommand(cmd, &out);
    const std::size_t at = out.rfind("status ");
    return at == std::string::npos ? -1 : std::stoi(out.substr(at + 7));
  }
  // No temp file anywhere under `path`, and every checkpoint has its MANIFEST.
  static void ExpectNothingIncomplete(const std::string& path) {
    namespace fs = std::filesystem;
    for (const auto& e : fs::recursive_directory_iterator(path)) {
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
      if (e.is_directory() && e.path().filename().string().rfind("ckpt-", 0) == 0) {
        EXPECT_TRUE(fs::exists(e.path() / "MANIFEST")) << e.path();
      }
    }
  }
  // The stderr lines starting with `prefix`: their count, and the last one in *last.
  int CountStderrLines(const std::string& prefix, std::string* last) const {
    int count = 0;
    for (const std::string& l : Lines(ReadFile(dir_.File("stderr.txt")))) {
      if (l.rfind(prefix, 0) == 0) ++count, *last = l;
    }
    return count;
  }
  std::string Stderr() const { return ReadFile(dir_.File("stderr.txt")); }

  // The two scenarios, for a job started as `fmps_cmd train CONFIG` (the binary, or mpirun
  // running it) and signalled by `kill_cmd` + signal name + `kill_target` (e.g. "kill -",
  // " $pid"). config(run, ckpt) writes the job's config; it trains `epochs` epochs.
  struct Launch {
    std::string fmps_cmd;
    std::string kill_cmd;
    std::string kill_target;
    int epochs = 1;
  };
  int TrainAndSignal(const Launch& l, const std::string& cfg, const std::string& signal) const {
    return TrainAndSignal(l.fmps_cmd + " train " + cfg, l.kill_cmd + signal + l.kill_target);
  }
  // SIGTERM with checkpoints: exit 143, one line naming the final checkpoint, no model and
  // nothing incomplete; `--resume` then trains every row of every epoch exactly once and
  // ends with the model of an uninterrupted run (`plain_cfg`).
  void ExpectSigtermCheckpointsAndResumeLosesNothing(const Launch& l, const std::string& cfg,
                                                     const std::string& plain_cfg) const {
    namespace fs = std::filesystem;
    EXPECT_EQ(TrainAndSignal(l, cfg, "TERM"), 143) << Stderr();
    std::string line;
    EXPECT_EQ(CountStderrLines("fmps: interrupted by SIGTERM", &line), 1) << Stderr();
    EXPECT_NE(line.find("a final checkpoint was written"), std::string::npos) << line;
    EXPECT_FALSE(fs::exists(dir_.File("run/model.fmps")));
    ExpectNothingIncomplete(dir_.path());
    int checkpoints = 0;
    for (const auto& e : fs::directory_iterator(dir_.File("ckpt"))) checkpoints += e.is_directory();
    EXPECT_GE(checkpoints, 1);
    std::string out;
    ASSERT_EQ(RunCommand(l.fmps_cmd + " train " + cfg + " --resume", &out), 0) << out;
    EXPECT_EQ(JsonNumber(ReadFile(dir_.File("run/summary.json")), "rows_trained"),
              static_cast<double>(l.epochs) * rows_);
    ASSERT_EQ(RunCommand(l.fmps_cmd + " train " + plain_cfg, &out), 0) << out;
    EXPECT_LE(MaxAbsDiff(Model::Load(dir_.File("plain/model.fmps")),
                         Model::Load(dir_.File("run/model.fmps"))),
              1e-5);
  }
  // SIGINT without checkpoints: exit 130, one line, no model.fmps, no temp file.
  void ExpectSigintLeavesNoOutput(const Launch& l, const std::string& cfg) const {
    EXPECT_EQ(TrainAndSignal(l, cfg, "INT"), 130) << Stderr();
    std::string line;
    EXPECT_EQ(CountStderrLines("fmps: interrupted by SIGINT", &line), 1) << Stderr();
    EXPECT_FALSE(std::filesystem::exists(dir_.File("run/model.fmps")));
    ExpectNothingIncomplete(dir_.path());
  }

  TempDir dir_;
  int rows_;
};

}  // namespace fmps::testing
