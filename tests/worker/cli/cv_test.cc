// `fmps cv` through the binary: every row lies in exactly one validation fold (the folds'
// held-out rows add up to the file, and each fold trains on the others), the printed lines
// and cv.json agree, bad arguments are rejected naming them, and a squared-loss fold starts
// its bias at the mean label of the rows it trains on.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/data/reader.h"
#include "common/data/synth.h"
#include "common/model/model_file.h"
#include "tests/util/test_util.h"
#include "tests/worker/job/early_stop_util.h"

namespace fmps {
namespace {

using testing::JsonNumber;
using testing::Lines;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;

class CvTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    SynthOptions o;
    o.out_dir = dir_->File("synth");
    o.rows = 3000;
    o.test_rows = 10;
    o.fields = 6;
    o.vocab = 100000;
    o.seed = 5;
    const SynthResult data = Synthesize(o);
    config_ = dir_->Write("cv.yaml", "data:\n  train: " + data.train_path +
                                         "\n  format: libsvm\nmodel: {k: 4}\n"
                                         "train: {epochs: 3, batch_size: 64, consistency: bsp}\n");
  }
  static void TearDownTestSuite() { delete dir_; }
  // Runs `fmps cv` (under mpirun with `ranks` ranks when > 0); returns its stdout.
  static std::string Cv(const std::string& out, const std::string& args, int ranks = 0) {
    const std::string launcher =
        ranks == 0 ? ""
                   : "timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none "
                     "--mca mpi_yield_when_idle 1 -np " +
                         std::to_string(ranks) + " ";
    std::string stdout_text;
    const int rc = RunCommand(launcher + testing::FmpsBinary() + " cv " + config_ +
                                  " --set output.dir=" + out + " " + args + " 2>/dev/null",
                              &stdout_text);
    EXPECT_EQ(rc, 0) << stdout_text;
    return stdout_text;
  }
  // The folds' validation rows add up to the 3000 rows, each fold trains on the others, and
  // cv.json holds each fold's best metric with their mean.
  static void ExpectFolds(const TempDir& out, int folds, const std::string& printed) {
    double held_out = 0;
    std::vector<double> best;
    for (int f = 0; f < folds; ++f) {
      const std::string dir = out.File("fold-" + std::to_string(f));
      const std::string summary = ReadFile(dir + "/summary.json");
      double valid_rows = 0;
      for (const std::string& line : Lines(ReadFile(dir + "/metrics.jsonl"))) {
        if (line.find("\"event\":\"valid\"") != std::string::npos) {
          valid_rows = JsonNumber(line, "valid_rows");
        }
      }
      const double epochs = early_stop_golden::JsonArray(summary, "valid_history").size();
      EXPECT_EQ(JsonNumber(summary, "rows_trained") / epochs + valid_rows, 3000.0) << f;
      held_out += valid_rows;
      best.push_back(JsonNumber(summary, "best_valid"));
    }
    EXPECT_EQ(held_out, 3000.0);
    const std::string json = ReadFile(out.File("cv.json"));
    EXPECT_EQ(JsonNumber(json, "folds"), folds);
    const std::vector<double> values = early_stop_golden::JsonArray(json, "values");
    ASSERT_EQ(values.size(), best.size()) << json;
    double mean = 0;
    for (int f = 0; f < folds; ++f) {
      EXPECT_NEAR(values[f], best[f], 1e-9);
      mean += values[f] / folds;
    }
    EXPECT_NEAR(JsonNumber(json, "mean"), mean, 1e-9);
    EXPECT_NE(printed.find("fold " + std::to_string(folds) + "/" + std::to_string(folds) + ": auc"),
              std::string::npos)
        << printed;
    EXPECT_NE(printed.find("cv auc "), std::string::npos) << printed;
  }
  inline static TempDir* dir_ = nullptr;
  inline static std::string config_;
};

TEST_F(CvTest, FoldsPartitionTheRowsAndCvJsonSummarizesThem) {
  TempDir out;
  const std::string printed = Cv(out.path(), "--folds 3");
  ExpectFolds(out, 3, printed);
}

TEST_F(CvTest, UnderMpirunTheFoldsRunOneAfterAnother) {
  TempDir out;
  const std::string printed = Cv(out.path(), "--folds 2 --set cluster.servers=1", 3);
  ExpectFolds(out, 2, printed);
}

// A squared-loss job starts its bias at the mean label of the rows it trains on, leaving out
// the validation rows it holds out of data.train: data.valid_fraction's, and under `fmps cv`
// each fold's own, in both modes. The rows at positions [0, 0.25) have label 50, the others
// 1 or 2, so a mean that saw the wrong rows is far off (and fold 0 then diverged).
TEST(CvBiasTest, SquaredLossBiasStartLeavesOutTheHeldOutRows) {
  TempDir dir;
  std::vector<std::string> lines;
  std::string rows;
  for (int i = 0; i < 2000; ++i) {
    char features[64];
    std::snprintf(features, sizeof(features), " %d:1 %d:1 %d:1", 1 + i % 40, 100 + i % 11, 200 + i);
    std::string line = std::string("50") + features;
    if (RowHashUnit(line) >= 0.25) line = std::to_string(1 + i % 2) + features;
    if (line[0] != '5' && RowHashUnit(line) < 0.25) continue;
    lines.push_back(line);
    rows += line + "\n";
  }
  // The mean label of the rows whose position lies outside [lo, hi).
  auto mean_outside = [&](double lo, double hi) {
    double sum = 0.0, n = 0.0;
    for (const std::string& line : lines) {
      const double at = RowHashUnit(line);
      if (at >= lo && at < hi) continue;
      sum += std::atof(line.c_str());
      n += 1.0;
    }
    return sum / n;
  };
  const std::string train = dir.Write("train.libsvm", rows);
  const std::string config = dir.Write(
      "c.yaml", "data: {train: " + train + ", format: libsvm}\nmodel: {k: 2, loss: squared}\n" +
                    "optimizer: {name: sgd, lr: 1.0e-9}\ntrain: {epochs: 1}\n");
  const std::string fmps = testing::FmpsBinary();
  std::string out;
  ASSERT_EQ(RunCommand(fmps + " train " + config + " --set data.valid_fraction=0.25 " +
                           "--set output.dir=" + dir.File("t") + " 2>&1",
                       &out),
            0)
      << out;
  EXPECT_NEAR(Model::Load(dir.File("t/model.fmps")).meta().bias, mean_outside(0.0, 0.25), 1e-4);
  // `fmps cv` (under `launcher`) into dir/name: each fold's bias leaves out that fold's rows.
  auto expect_folds = [&](const std::string& launcher, const std::string& name, int folds,
                          const std::string& sets) {
    ASSERT_EQ(RunCommand(launcher + fmps + " cv " + config + " --folds " + std::to_string(folds) +
                             sets + " --set output.dir=" + dir.File(name) + " 2>&1",
                         &out),
              0)
        << out;
    for (int f = 0; f < folds; ++f) {
      const Model model =
          Model::Load(dir.File(name + "/fold-" + std::to_string(f) + "/model.fmps"));
      EXPECT_NEAR(model.meta().bias, mean_outside(f / double(folds), (f + 1) / double(folds)), 1e-4)
          << name << " fold " << f;
    }
  };
  expect_folds("", "cv", 4, "");
  // Under mpirun with 2 servers: rank 0 computes it, the server owning the bias sets it.
  expect_folds(
      "timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none "
      "--mca mpi_yield_when_idle 1 -np 4 ",
      "mpi", 2, " --set cluster.servers=2");
}

TEST_F(CvTest, BadArgumentsAreNamed) {
  std::string out;
  EXPECT_EQ(RunCommand(testing::FmpsBinary() + " cv " + config_ + " --folds 1", &out), 2);
  EXPECT_NE(out.find("--folds must be 2..1000"), std::string::npos) << out;
  EXPECT_EQ(
      RunCommand(testing::FmpsBinary() + " cv " + config_ + " --folds 3 --set data.valid=x", &out),
      2);
  EXPECT_NE(out.find("data.valid: fmps cv holds out"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(testing::FmpsBinary() + " cv " + config_, &out), 2);
  EXPECT_NE(out.find("--folds"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(testing::FmpsBinary() + " cv --help", &out), 0);
  EXPECT_NE(out.find("usage: fmps cv CONFIG.yaml --folds K"), std::string::npos) << out;
}

}  // namespace
}  // namespace fmps
