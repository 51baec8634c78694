// Defaults that train: the default optimizer reaches the same test loss at batch_size 1 and
// 1024 (per-key mean gradients: lr means the same step at every batch size), and a
// squared-loss job's bias starts at the mean label (worked by hand: with a negligible lr
// the written bias is that mean).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "common/data/synth.h"
#include "common/model/model_file.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::RunCommand;
using testing::TempDir;

double TestLogloss(const std::string& config, const std::string& sets) {
  std::string out;
  EXPECT_EQ(RunCommand(testing::FmpsBinary() + " train " + config + " " + sets + " 2>/dev/null",
                       &out),
            0)
      << out;
  double logloss = std::nan("");
  const std::size_t at = out.rfind("test_logloss ");  // the final line
  if (at != std::string::npos) std::sscanf(out.c_str() + at, "test_logloss %lf", &logloss);
  return logloss;
}

// The default config (adagrad lr 0.05, per-key mean gradients), one asynchronous worker, 4
// epochs of 40000 planted-FM rows. Tolerance: 1% of the test logloss (measured: 0.5432 at
// batch 1 and 0.5436 at batch 1024 over 5 epochs; the Bayes logloss is 0.520).
TEST(DefaultsTrainTest, BatchOneAndBatch1024ReachTheSameTestLoss) {
  TempDir dir;
  SynthOptions o;
  o.out_dir = dir.File("synth");
  o.rows = 40000;
  o.test_rows = 4000;
  o.fields = 8;
  o.vocab = 400;
  o.k = 4;
  o.seed = 11;
  const SynthResult data = Synthesize(o);
  const std::string config = dir.Write(
      "c.yaml", "data: {train: " + data.train_path + ", test: " + data.test_path +
                    ", format: libsvm}\nmodel: {k: 4}\ntrain: {epochs: 4}\ncluster: {local_workers: 1}\noutput: {dir: " +
                    dir.File("out") + "}\n");
  const double one = TestLogloss(config, "--set train.batch_size=1");
  const double big = TestLogloss(config, "--set train.batch_size=1024");
  EXPECT_NEAR(one, big, 0.01 * one) << "batch 1: " << one << ", batch 1024: " << big;
  std::printf("test logloss: batch 1 %.5f, batch 1024 %.5f\n", one, big);
  EXPECT_LT(one, 0.56);  // Bayes: about 0.52
}

TEST(DefaultsTrainTest, SquaredLossBiasStartsAtTheMeanLabel) {
  TempDir dir;
  std::string rows;
  double sum = 0.0;
  for (int i = 0; i < 3000; ++i) {
    const double label = 3.0 + (i % 7) * 0.25;  // mean 3.75
    sum += label;
    char line[64];
    std::snprintf(line, sizeof(line), "%.2f %d:1 %d:1\n", label, 1 + i % 50, 100 + i % 13);
    rows += line;
  }
  const std::string train = dir.Write("train.libsvm", rows);
  const std::string config = dir.Write(
      "c.yaml", "data: {train: " + train + ", format: libsvm}\nmodel: {k: 4, loss: squared}\n"
                "optimizer: {name: sgd, lr: 1.0e-9}\noutput: {dir: " + dir.File("out") + "}\n");
  std::string out;
  ASSERT_EQ(RunCommand(testing::FmpsBinary() + " train " + config + " 2>&1", &out), 0) << out;
  const Model model = Model::Load(dir.File("out/model.fmps"));
  EXPECT_NEAR(model.meta().bias, sum / 3000, 1e-5);
}

}  // namespace
}  // namespace fmps
