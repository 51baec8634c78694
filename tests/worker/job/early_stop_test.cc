// Early stopping and the best model, single node: the golden bsp job stops at the right
// epoch and writes the best epoch's model; a resumed job keeps the best found before it;
// async runs and held-out validation rows; the EarlyStopper's rule.
#include "worker/job/early_stop.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "common/config/config.h"
#include "tests/util/test_util.h"
#include "tests/worker/job/early_stop_util.h"
#include "tests/worker/job/golden_bsp.h"

namespace fmps {
namespace {

using testing::JsonNumber;
using testing::ReadFile;
using testing::TempDir;
namespace es = early_stop_golden;

class EarlyStopTest : public golden::GoldenFixture {
 protected:
  static std::string Valid() { return data_->test_path; }
};

TEST_F(EarlyStopTest, BspStopsAfterPatienceAndWritesTheBestEpochsModel) {
  TempDir out;
  Train(0, "adagrad", out.path(), es::Sets(Valid()));
  es::ExpectGoldenRun(out, Valid());
}

// Resumed after epoch 5 (checkpoint.keep 1: only epoch 5's checkpoint would be kept, but the
// best epoch's is never pruned), the job continues to the same stop and the same model.
TEST_F(EarlyStopTest, ResumeKeepsTheBestEpochFromAnOlderCheckpoint) {
  TempDir out, ckpt;
  const std::string sets =
      es::Sets(Valid()) + " --set checkpoint.dir=" + ckpt.path() + " --set checkpoint.keep=1";
  Train(0, "adagrad", out.path(), sets + " --set train.epochs=5");
  EXPECT_EQ(JsonNumber(ReadFile(out.File("summary.json")), "best_epoch"), es::kBestEpoch);
  Train(0, "adagrad", out.path(), sets + " --resume");
  es::ExpectGoldenRun(out, Valid());
}

// Resumed from the best epoch's own checkpoint (epoch 4 ends the first run).
TEST_F(EarlyStopTest, ResumeFromTheBestEpochsCheckpoint) {
  TempDir out, ckpt;
  const std::string sets = es::Sets(Valid()) + " --set checkpoint.dir=" + ckpt.path();
  Train(0, "adagrad", out.path(), sets + " --set train.epochs=4");
  Train(0, "adagrad", out.path(), sets + " --resume");
  es::ExpectGoldenRun(out, Valid());
}

// Async: whatever the curve, the model written is the recorded best epoch's.
TEST_F(EarlyStopTest, AsyncWritesTheRecordedBestModel) {
  TempDir out;
  Train(0, "adagrad", out.path(),
        es::Sets(Valid()) + " --set train.consistency=async --set train.early_stop.metric=auc");
  const std::string summary = ReadFile(out.File("summary.json"));
  const int best = static_cast<int>(JsonNumber(summary, "best_epoch"));
  const std::vector<double> history = es::JsonArray(summary, "valid_history");
  ASSERT_GE(best, 1) << summary;
  ASSERT_LE(best, static_cast<int>(history.size())) << summary;
  for (double auc : history) EXPECT_LE(auc, history[best - 1]);
  std::string eval;
  ASSERT_EQ(testing::RunCommand(testing::FmpsBinary() + " eval --model " + out.File("model.fmps") +
                                    " --data " + Valid() + " 2>/dev/null",
                                &eval),
            0);
  EXPECT_NEAR(JsonNumber(eval, "auc"), history[best - 1], 1e-7);
}

// data.valid_fraction holds rows out of training: each epoch trains the others only, and
// the validation event counts the held-out ones; together they are every row.
TEST_F(EarlyStopTest, ValidFractionHoldsRowsOut) {
  TempDir out;
  Train(0, "adagrad", out.path(),
        "--set train.epochs=2 --set data.valid_fraction=0.2 --set train.early_stop.metric=auto");
  const std::string summary = ReadFile(out.File("summary.json"));
  const double trained = JsonNumber(summary, "rows_trained") / 2;
  double valid_rows = 0;
  for (const std::string& line : testing::Lines(ReadFile(out.File("metrics.jsonl")))) {
    if (line.find("\"event\":\"valid\"") != std::string::npos) {
      valid_rows = JsonNumber(line, "valid_rows");
    }
  }
  EXPECT_EQ(trained + valid_rows, 20000.0);
  EXPECT_NEAR(valid_rows / 20000.0, 0.2, 0.02);
  EXPECT_EQ(es::JsonArray(summary, "valid_history").size(), 2u);
  EXPECT_NE(summary.find("\"valid_metric\":\"auc\""), std::string::npos) << summary;
}

Config EarlyStopConfig(const char* metric, int patience, double min_delta) {
  return ParseConfig(std::string("data: {train: t, format: libsvm, valid_fraction: 0.1}\n") +
                         "train: {early_stop: {metric: " + metric +
                         ", patience: " + std::to_string(patience) +
                         ", min_delta: " + std::to_string(min_delta) + "}}\n",
                     "c.yaml", {});
}

TEST(EarlyStopperTest, LowerIsBetterWithMinDelta) {
  EarlyStopper s(EarlyStopConfig("logloss", 2, 0.01), {});
  EXPECT_TRUE(s.Record(1, 0.50));
  EXPECT_TRUE(s.Record(2, 0.48));    // better by 0.02 > 0.01
  EXPECT_FALSE(s.Record(3, 0.475));  // better by only 0.005
  EXPECT_FALSE(s.ShouldStop(3));
  EXPECT_FALSE(s.Record(4, 0.60));
  EXPECT_TRUE(s.ShouldStop(4));  // 2 epochs past the best (2)
  EXPECT_EQ(s.record().best_epoch, 2);
  EXPECT_EQ(s.record().history.size(), 4u);
}

TEST(EarlyStopperTest, AutoIsAucForLogisticHigherIsBetterAndNanNeverBest) {
  EarlyStopper s(EarlyStopConfig("auto", 1, 0.0), {});
  EXPECT_EQ(s.metric(), EarlyStopMetric::kAuc);
  EXPECT_FALSE(s.Record(1, std::nan("")));
  EXPECT_FALSE(s.ShouldStop(1));  // no best yet
  EXPECT_TRUE(s.Record(2, 0.7));
  EXPECT_TRUE(s.Record(3, 0.71));
  EXPECT_FALSE(s.Record(4, 0.71));  // equal is no improvement
  EXPECT_TRUE(s.ShouldStop(4));
}

TEST(EarlyStopperTest, ContinuesARestoredRecord) {
  ValidationRecord r;
  r.best_epoch = 2;
  r.best_value = 0.3;
  r.history = {0.4, 0.3, 0.35};
  EarlyStopper s(EarlyStopConfig("logloss", 2, 0.0), r);
  EXPECT_FALSE(s.Record(4, 0.31));
  EXPECT_TRUE(s.ShouldStop(4));
  EXPECT_EQ(s.record().history.size(), 4u);
}

}  // namespace
}  // namespace fmps
