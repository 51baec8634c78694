// Convergence on the shared real data sets (skipped, saying so, when they are absent).
#include <gtest/gtest.h>

#include <string>

#include "common/config/config.h"
#include "tests/util/test_util.h"
#include "worker/job/local_trainer.h"

namespace fmps {
namespace {

using testing::TempDir;

Config RealConfig(const std::string& train, const std::string& test, const std::string& out,
                  const std::string& body) {
  return ParseConfig("data:\n  train: " + train + "\n  test: " + test + "\n" + body +
                         "output:\n  dir: " + out + "\n",
                     "real.yaml", {});
}

TEST(RealDataTest, A9aReachesAuc090) {
  FMPS_REQUIRE_SHARED_DATA(train, "a9a/a9a");
  TempDir out;
  TrainSummary s = TrainLocal(RealConfig(
      train, testing::SharedData("a9a/a9a.t"), out.path(),
      "  format: libsvm\nmodel:\n  k: 4\n  l2_v: 0.0001\noptimizer:\n  name: adagrad\n  lr: 0.05\n"
      "train:\n  epochs: 5\n  batch_size: 64\n"));
  EXPECT_EQ(s.rows_trained, 5u * 32561u);
  EXPECT_GE(s.test_auc, 0.90);
}

// lr means the same at every batch size (optimizer.gradient: key_mean, the default): a9a
// reaches the same test logloss at batch 1 and 1024 (adagrad; measured 0.3223 and 0.3294
// after 3 epochs), and sgd at lr 0.05 trains at batch 32 and 1024 alike (measured 0.329 and
// 0.326 after 10 epochs), where gradients summed over 1024 rows diverge (in 2 batches).
TEST(RealDataTest, A9aReachesTheSameLossAtAnyBatchSize) {
  FMPS_REQUIRE_SHARED_DATA(train, "a9a/a9a");
  auto run = [&](const std::string& optimizer, int batch_size, int epochs) {
    TempDir out;
    return TrainLocal(RealConfig(
        train, testing::SharedData("a9a/a9a.t"), out.path(),
        "  format: libsvm\n  normalize: none\nmodel:\n  k: 4\noptimizer:\n  " + optimizer +
            "\ntrain:\n  epochs: " + std::to_string(epochs) +
            "\n  batch_size: " + std::to_string(batch_size) + "\ncluster:\n  local_workers: 1\n"));
  };
  const TrainSummary a1 = run("name: adagrad\n  lr: 0.05", 1, 3);
  const TrainSummary a1024 = run("name: adagrad\n  lr: 0.05", 1024, 3);
  EXPECT_LT(a1.test_logloss, 0.33);
  EXPECT_NEAR(a1.test_logloss, a1024.test_logloss, 0.01);
  const TrainSummary s32 = run("name: sgd\n  lr: 0.05", 32, 10);
  const TrainSummary s1024 = run("name: sgd\n  lr: 0.05", 1024, 10);
  EXPECT_LT(s32.test_logloss, 0.335);
  EXPECT_NEAR(s32.test_logloss, s1024.test_logloss, 0.01);
}

TEST(RealDataTest, AgaricusReachesAuc0999) {
  FMPS_REQUIRE_SHARED_DATA(train, "agaricus/agaricus.txt.train");
  TempDir out;
  TrainSummary s = TrainLocal(
      RealConfig(train, testing::SharedData("agaricus/agaricus.txt.test"), out.path(),
                 "  format: libsvm\nmodel:\n  k: 4\noptimizer:\n  name: adagrad\n  lr: 0.1\n"
                 "train:\n  epochs: 3\n  batch_size: 32\n"));
  EXPECT_GE(s.test_auc, 0.999);
}

TEST(RealDataTest, RaggedCriteoParsesWithoutBadRows) {
  FMPS_REQUIRE_SHARED_DATA(train, "jqsl_pytorchfm_criteo/train.txt");
  TempDir out;
  TrainSummary s = TrainLocal(
      RealConfig(train, train, out.path(),
                 "  format: criteo\n  hash_bits: 20\nmodel:\n  k: 4\noptimizer:\n  lr: 0.02\n"
                 "train:\n  epochs: 3\n  batch_size: 100\n"));
  EXPECT_EQ(s.rows_trained, 3000u);
  EXPECT_EQ(s.bad_rows, 0u);
  // Scored on its own training rows: every row's features were read, so it memorises them.
  EXPECT_GT(s.test_auc, 0.95);
}

}  // namespace
}  // namespace fmps
