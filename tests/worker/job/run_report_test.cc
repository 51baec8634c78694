// What `fmps train` reports is true (single-node, through the binary): the final test
// metric is the written model's, summary.json's train_logloss is the last epoch's, one key
// count, nothing unmeasured is reported, and malformed training rows are stated (and fail
// the job past data.max_bad_fraction). The MPI twin: run_report_mpi_test.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/util/test_util.h"
#include "tests/worker/job/run_report_util.h"

namespace fmps {
namespace {

using testing::FmpsBinary;
using testing::JsonNumber;
using testing::Lines;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;

// Planted-FM data made by `fmps synth` in dir/data.
void Synth(const TempDir& dir, int rows) {
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " synth --out " + dir.File("data") + " --rows " +
                           std::to_string(rows) + " --test-rows 20000 --vocab 20000 --seed 3",
                       &out),
            0)
      << out;
}

// An async adam job of 3 epochs over dir/data; `extra` is appended to the config.
std::string Config(const TempDir& dir, bool test, const std::string& extra = "") {
  std::string yaml = "data:\n  train: " + dir.File("data/train.libsvm") + "\n";
  if (test) yaml += "  test: " + dir.File("data/test.libsvm") + "\n";
  yaml +=
      "  format: libsvm\nmodel:\n  k: 4\noptimizer:\n  name: adam\n  lr: 0.002\n"
      "train:\n  epochs: 3\n  consistency: async\n  max_delay: 8\n"
      "cluster:\n  local_servers: 1\n  local_workers: 2\noutput:\n  dir: " +
      dir.File("run") + "\n" + extra;
  return dir.Write("exp.yaml", yaml);
}

TEST(RunReportTest, FinalTestMetricIsTheWrittenModels) {
  TempDir dir;
  Synth(dir, 60000);
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " train " + Config(dir, true) + " 2>/dev/null", &out), 0)
      << out;
  const std::string job = testing::ExpectSummaryMetricIsTheModels(dir);
  EXPECT_NE(out.find("test_logloss " + job), std::string::npos) << out;
}

// summary.json's train_logloss is the last epoch's (its eval event's), and the key count of
// the log is summary.json's num_keys (the bias not counted).
TEST(RunReportTest, TrainLossIsTheLastEpochsAndOneKeyCount) {
  TempDir dir;
  Synth(dir, 30000);
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " train " + Config(dir, true), &out), 0) << out;
  const std::string summary = ReadFile(dir.File("run/summary.json"));
  std::string last_eval;
  for (const std::string& l : Lines(ReadFile(dir.File("run/metrics.jsonl")))) {
    if (l.find("\"event\":\"eval\"") != std::string::npos) last_eval = l;
  }
  ASSERT_EQ(JsonNumber(last_eval, "epoch"), 3.0) << last_eval;
  EXPECT_NEAR(JsonNumber(summary, "train_logloss"), JsonNumber(last_eval, "train_logloss"), 1e-9)
      << summary << last_eval;
  const std::size_t at = out.find("bytes per key (");
  ASSERT_NE(at, std::string::npos) << out;
  const double logged = std::stod(out.substr(at + std::string("bytes per key (").size()));
  EXPECT_EQ(logged, JsonNumber(summary, "num_keys")) << out << summary;
}

// Without data.test neither stdout nor summary.json mentions test metrics.
TEST(RunReportTest, NoTestSetNoTestMetrics) {
  TempDir dir;
  Synth(dir, 20000);
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " train " + Config(dir, false) + " 2>/dev/null", &out), 0)
      << out;
  ASSERT_FALSE(Lines(out).empty());
  const std::string last = Lines(out).back();
  EXPECT_EQ(last.rfind("rows 60000 rows_per_s ", 0), 0u) << out;
  EXPECT_EQ(last.find("nan"), std::string::npos) << out;
  const std::string summary = ReadFile(dir.File("run/summary.json"));
  EXPECT_EQ(summary.find("\"test_"), std::string::npos) << summary;
  EXPECT_FALSE(std::isnan(JsonNumber(summary, "train_logloss"))) << summary;
}

// 24% of the rows have the label "yes": the default data.max_bad_fraction (0.1) fails the
// job naming the key and the first bad row; with a higher bound the job runs and its done
// line states the bad rows and their share.
TEST(RunReportTest, MalformedRowsAreStatedAndBounded) {
  TempDir dir;
  std::string rows;
  for (int i = 0; i < 1000; ++i) {
    rows += (i % 25 < 6 ? std::string("yes") : std::to_string(i % 2)) + " " +
            std::to_string(i % 13) + ":1 " + std::to_string(20 + i % 7) + ":1\n";
  }
  const std::string data = dir.Write("train.libsvm", rows);
  const std::string cfg = dir.Write(
      "exp.yaml", "data:\n  train: " + data +
                      "\n  format: libsvm\nmodel:\n  k: 2\noutput:\n  dir: " + dir.File("run") +
                      "\n");
  std::string out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " train " + cfg, &out), 1) << out;
  EXPECT_NE(out.find("data.max_bad_fraction"), std::string::npos) << out;
  EXPECT_NE(out.find("240 of 1000 rows (24.0%)"), std::string::npos) << out;
  EXPECT_NE(out.find("the first bad row: " + data + ":1: bad number 'yes'"), std::string::npos)
      << out;
  EXPECT_FALSE(std::filesystem::exists(dir.File("run/model.fmps")));
  ASSERT_EQ(RunCommand(FmpsBinary() + " train " + cfg + " --set data.max_bad_fraction=0.3", &out),
            0)
      << out;
  std::string done;
  for (const std::string& l : Lines(out)) {
    if (l.rfind("fmps: done: ", 0) == 0) done = l;
  }
  EXPECT_NE(done.find("240 malformed training rows skipped per epoch (24.00%)"), std::string::npos)
      << out;
}

}  // namespace
}  // namespace fmps
