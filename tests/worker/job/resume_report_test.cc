// Resume accounting through the binary: a run resumed from a mid-epoch checkpoint (as
// after a SIGKILL) keeps the curve before it in metrics.jsonl with a "resume" event,
// reports rates of its own rows over its own time and totals of the whole job, shows the
// whole job's rows in progress events too, and manifests hold readable row counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

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

TEST(ResumeReportTest, ResumedRunAppendsAndCountsItsOwnRows) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " synth --out " + dir.File("data") +
                           " --rows 200000 --test-rows 2000 --vocab 2000 --seed 5",
                       &out),
            0)
      << out;
  const std::string cfg = dir.Write(
      "exp.yaml", "data:\n  train: " + dir.File("data/train.libsvm") +
                      "\n  format: libsvm\nmodel:\n  k: 4\ntrain:\n  epochs: 2\n  batch_size: 128\n"
                      "  consistency: bsp\n  progress_seconds: 0.01\ncheckpoint:\n  dir: " +
                      dir.File("ckpt") + "\n  every_seconds: 0.05\n  keep: 1000\noutput:\n  dir: " +
                      dir.File("run") + "\n");
  ASSERT_EQ(RunCommand(FmpsBinary() + " train " + cfg, &out), 0) << out;
  // Keep the checkpoints up to the first mid-epoch one of epoch 2: the crash came after it.
  std::vector<std::string> all;
  for (const auto& e : fs::directory_iterator(dir.File("ckpt"))) all.push_back(e.path().string());
  std::sort(all.begin(), all.end(), [](const std::string& a, const std::string& b) {
    return std::stoull(fs::path(a).filename().string().substr(5)) <
           std::stoull(fs::path(b).filename().string().substr(5));
  });
  std::size_t chosen = all.size();
  for (std::size_t i = 0; i < all.size() && chosen == all.size(); ++i) {
    const std::string m = ReadFile(all[i] + "/MANIFEST");
    if (m.find("epoch: 2\n") != std::string::npos &&
        m.find("epoch_done: false") != std::string::npos && m.find("[[") != std::string::npos) {
      chosen = i;
    }
  }
  ASSERT_LT(chosen, all.size()) << "no mid-epoch checkpoint in epoch 2";
  const std::string manifest = ReadFile(all[chosen] + "/MANIFEST");
  const std::size_t at = manifest.find("\nrows: ");
  ASSERT_NE(at, std::string::npos) << manifest;
  const double base = std::stod(manifest.substr(at + 7));
  EXPECT_GT(base, 200000.0) << manifest;  // a readable count: epoch 1 and part of epoch 2
  EXPECT_LT(base, 400000.0) << manifest;
  for (std::size_t i = chosen + 1; i < all.size(); ++i) fs::remove_all(all[i]);
  const std::vector<std::string> before = Lines(ReadFile(dir.File("run/metrics.jsonl")));

  ASSERT_EQ(RunCommand(FmpsBinary() + " train " + cfg + " --resume", &out), 0) << out;
  const std::vector<std::string> after = Lines(ReadFile(dir.File("run/metrics.jsonl")));
  ASSERT_GT(after.size(), before.size());
  EXPECT_TRUE(std::equal(before.begin(), before.end(), after.begin()));  // the curve stays
  const std::string& resume = after[before.size()];
  EXPECT_NE(resume.find("\"event\":\"resume\""), std::string::npos) << resume;
  EXPECT_EQ(JsonNumber(resume, "rows"), base) << resume;
  for (std::size_t i = before.size() + 1; i < after.size(); ++i) {
    EXPECT_GE(JsonNumber(after[i], "rows"), base) << after[i];  // whole-job rows
  }
  const std::string summary = ReadFile(dir.File("run/summary.json"));
  EXPECT_EQ(JsonNumber(summary, "rows_trained"), 400000) << summary;
  EXPECT_EQ(JsonNumber(summary, "rows_this_run"), 400000 - base) << summary;
  EXPECT_NEAR(JsonNumber(summary, "rows_per_s"),
              JsonNumber(summary, "rows_this_run") / JsonNumber(summary, "train_s"),
              1e-3 * JsonNumber(summary, "rows_per_s"))
      << summary;
}

}  // namespace
}  // namespace fmps
