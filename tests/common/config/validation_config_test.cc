// The validation keys (data.valid, data.valid_fraction) and train.early_stop: accepted where
// they work, rejected with a message naming the key otherwise.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/config/config.h"

namespace fmps {
namespace {

constexpr const char* kBase = "data:\n  train: t.txt\n  format: libsvm\n";

Config Parse(const std::vector<std::string>& sets) { return ParseConfig(kBase, "c.yaml", sets); }

// The ConfigError message of parsing with `sets` ("" if none is thrown).
std::string ErrorOf(const std::vector<std::string>& sets) {
  try {
    Parse(sets);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ValidationConfigTest, DefaultsAreOff) {
  const Config c = Parse({});
  EXPECT_TRUE(c.data.valid.empty());
  EXPECT_EQ(c.data.valid_fraction, 0.0);
  EXPECT_EQ(c.train.early_stop.metric, EarlyStopMetric::kNone);
}

TEST(ValidationConfigTest, EarlyStopWithEitherValidationSource) {
  Config c = Parse({"data.valid=[v.txt]", "train.early_stop.metric=auto",
                    "train.early_stop.patience=5", "train.early_stop.min_delta=0.001"});
  EXPECT_EQ(c.data.valid, std::vector<std::string>{"v.txt"});
  EXPECT_EQ(c.train.early_stop.metric, EarlyStopMetric::kAuto);
  EXPECT_EQ(c.train.early_stop.patience, 5);
  EXPECT_DOUBLE_EQ(c.train.early_stop.min_delta, 0.001);
  c = Parse({"data.valid_fraction=0.2", "train.early_stop.metric=logloss"});
  EXPECT_DOUBLE_EQ(c.data.valid_fraction, 0.2);
  c = Parse({"model.loss=squared", "data.valid_fraction=0.2", "train.early_stop.metric=rmse"});
  EXPECT_EQ(c.train.early_stop.metric, EarlyStopMetric::kRmse);
}

TEST(ValidationConfigTest, ErrorsNameTheKey) {
  EXPECT_NE(ErrorOf({"train.early_stop.metric=auc"})
                .find("train.early_stop.metric: auc needs "
                      "validation rows"),
            std::string::npos);
  EXPECT_NE(ErrorOf({"data.valid_fraction=0.2", "train.early_stop.metric=auto",
                     "train.early_stop.patience=0"})
                .find("train.early_stop.patience"),
            std::string::npos);
  EXPECT_NE(ErrorOf({"data.valid_fraction=1"}).find("data.valid_fraction"), std::string::npos);
  EXPECT_NE(ErrorOf({"data.valid_fraction=-0.1"}).find("data.valid_fraction"), std::string::npos);
  EXPECT_NE(ErrorOf({"data.valid=[v.txt]", "data.valid_fraction=0.1"})
                .find("data.valid_fraction: give either"),
            std::string::npos);
  // patience without early stopping has no effect: an error naming the key that decides.
  const std::string off = ErrorOf({"train.early_stop.patience=4"});
  EXPECT_NE(off.find("train.early_stop.patience applies only"), std::string::npos) << off;
  EXPECT_NE(ErrorOf({"data.valid_fraction=0.1", "train.early_stop.metric=rmse"})
                .find("train.early_stop.metric: rmse is not measured for model.loss logistic"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf({"model.loss=squared", "data.valid_fraction=0.1", "train.early_stop.metric=auc"})
          .find("train.early_stop.metric: auc"),
      std::string::npos);
  EXPECT_NE(ErrorOf({"train.early_stop.metric=best"}).find("train.early_stop.metric"),
            std::string::npos);
}

}  // namespace
}  // namespace fmps
