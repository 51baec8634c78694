// `fmps cv` through the binary: every row lies in exactly one validation fold (the folds'
// held-out rows add up to the file, and each fold trains on the others), the printed lines
// and cv.json agree, and bad arguments are rejected naming them.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/data/synth.h"
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
