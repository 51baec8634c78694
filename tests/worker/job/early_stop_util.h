// Shared by early_stop_test (single node) and early_stop_mpi_test: the golden early-stopping
// job (the golden bsp data and adagrad config of golden_bsp.h at lr 0.02 for up to 8 epochs,
// validated on the test file with train.early_stop logloss, patience 2) and the checks of
// its outputs. Its validation logloss falls to epoch 4, then rises: the job stops after
// epoch 6 and writes epoch 4's model. The values are bsp's, so the same in every topology;
// regenerate them as golden_bsp.h says (they move with the same math).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "tests/util/test_util.h"
#include "tests/worker/job/golden_bsp.h"

namespace fmps::early_stop_golden {

// Validation logloss after epochs 1..6.
inline const std::vector<double> kValidLoglosses = {0.5581318603, 0.5511463913, 0.5483091087,
                                                    0.5476223687, 0.547913713,  0.548659607};
inline constexpr int kBestEpoch = 4;
inline constexpr int kStoppedEpoch = 6;

// The --set options that turn the golden bsp job into the early-stopping one.
inline std::string Sets(const std::string& valid_path) {
  return "--set optimizer.lr=0.02 --set train.epochs=8 --set data.valid=" + valid_path +
         " --set train.early_stop.metric=logloss --set train.early_stop.patience=2";
}

// The numbers of a JSON array field ("key":[a,b,...]) of a one-line object.
inline std::vector<double> JsonArray(const std::string& json, const std::string& key) {
  std::vector<double> out;
  const std::size_t at = json.find("\"" + key + "\":[");
  if (at == std::string::npos) return out;
  const char* p = json.c_str() + at + key.size() + 4;
  while (*p != ']' && *p != '\0') {
    char* end = nullptr;
    out.push_back(std::strtod(p, &end));
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

// `fmps eval` logloss of a model on a file.
inline double EvalLogloss(const std::string& model, const std::string& data) {
  std::string out;
  const int rc = testing::RunCommand(
      testing::FmpsBinary() + " eval --model " + model + " --data " + data + " 2>/dev/null", &out);
  EXPECT_EQ(rc, 0) << out;
  return testing::JsonNumber(out, "logloss");
}

// The run in `dir` (whose data.test is `valid_path` as well) reports the golden history, best and
// stopping epoch, and its model.fmps is epoch 4's: its logloss on the validation file is the one
// recorded for epoch 4.
inline void ExpectGoldenRun(const testing::TempDir& dir, const std::string& valid_path) {
  const std::string summary = testing::ReadFile(dir.File("summary.json"));
  golden::ExpectGolden(JsonArray(summary, "valid_history"), kValidLoglosses, "valid_history");
  EXPECT_EQ(testing::JsonNumber(summary, "best_epoch"), kBestEpoch) << summary;
  EXPECT_EQ(testing::JsonNumber(summary, "stopped_epoch"), kStoppedEpoch) << summary;
  EXPECT_EQ(testing::JsonNumber(summary, "model_epoch"), kBestEpoch) << summary;
  EXPECT_EQ(testing::JsonNumber(summary, "rows_trained"), 20000.0 * kStoppedEpoch) << summary;
  // The validation file is the test file too: the summary's test metrics are the model's.
  EXPECT_NEAR(testing::JsonNumber(summary, "test_logloss"), kValidLoglosses[kBestEpoch - 1], 1e-7);
  const double model = EvalLogloss(dir.File("model.fmps"), valid_path);
  EXPECT_NEAR(model, kValidLoglosses[kBestEpoch - 1], 1e-7);
  EXPECT_GT(std::abs(model - kValidLoglosses[kStoppedEpoch - 1]), 1e-4);
  // One validation event per epoch in metrics.jsonl.
  int events = 0;
  for (const std::string& line : testing::Lines(testing::ReadFile(dir.File("metrics.jsonl")))) {
    if (line.find("\"event\":\"valid\"") != std::string::npos) ++events;
  }
  EXPECT_EQ(events, kStoppedEpoch);
}

}  // namespace fmps::early_stop_golden
