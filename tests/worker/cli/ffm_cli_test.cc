// Field-aware FM (model.kind: ffm) through the binary: quality on planted-FFM data against FM
// and the Bayes logloss, field ids out of range as bad rows, predict/eval/export, warm start,
// checkpoint + resume, bsp models equal across server counts, the options rejected
// where they do not apply, and quality at 39 Criteo-shaped fields.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "common/model/model_file.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::FmpsBinary;
using testing::JsonNumber;
using testing::Lines;
using testing::MaxAbsDiff;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;

constexpr int kFields = 8;

class FfmCliTest : public ::testing::Test {
 protected:
  // Planted-FFM data (synth --model ffm): 600k training rows over 8 fields of 50 values,
  // k 4, for the quality test; a 20k-row set of 4 fields for the rest.
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    std::string out;
    const std::string synth = FmpsBinary() + " synth --format libffm --model ffm --k 4 --seed 5";
    ASSERT_EQ(RunCommand(synth + " --out " + dir_->File("big") +
                             " --rows 600000 --test-rows 20000 --fields 8 --vocab 400",
                         &out),
              0)
        << out;
    bayes_ = std::stod(out.substr(out.find("Bayes test logloss ") + 19));
    ASSERT_EQ(RunCommand(synth + " --out " + dir_->File("small") +
                             " --rows 20000 --test-rows 2000 --fields 4 --vocab 200",
                         &out),
              0)
        << out;
  }
  static void TearDownTestSuite() { delete dir_; }

  // A config training `set` ("big" or "small") with kind ffm (unless `fm`), its fields, k 4.
  static std::string Config(const TempDir& d, const std::string& set, bool fm = false,
                            const std::string& extra = "") {
    const std::string data = dir_->File(set);
    const int fields = set == "big" ? kFields : 4;
    std::string model = "model:\n  k: 4\n";
    if (!fm) model += "  kind: ffm\n  fields: " + std::to_string(fields) + "\n";
    return d.Write("exp.yaml", "data:\n  train: " + data + "/train.libffm\n  test: " + data +
                                   "/test.libffm\n  format: libffm\n" + model +
                                   "train:\n  epochs: 2\n" + extra +
                                   "output:\n  dir: " + d.File("run") + "\n");
  }
  static int Train(const std::string& cfg, const std::string& args, std::string* out) {
    return RunCommand(FmpsBinary() + " train " + cfg + " " + args + " 2>&1", out);
  }
  static double TestLogloss(const TempDir& d) {
    return JsonNumber(ReadFile(d.File("run/summary.json")), "test_logloss");
  }

  // One server and one worker thread: a job whose figures a test compares gives the same
  // bits in every run (async workers' results move with the machine's load).
  static constexpr const char* kOneByOne =
      "--set cluster.local_servers=1 --set cluster.local_workers=1";

  static TempDir* dir_;
  static double bayes_;
};
TempDir* FfmCliTest::dir_ = nullptr;
double FfmCliTest::bayes_ = 0.0;

// On planted-FFM data (600k rows, 2 epochs) FFM comes within 2% of the Bayes logloss
// (measured 1.7%: 0.4889 against 0.4807), beats FM by at least 0.01 (FM: 0.5044) and has
// at most half FM's excess over Bayes (measured 0.35 of it): the planted field-pair signs
// are beyond any FM. One server and one worker thread: the same bits in every run (two
// async workers gave 0.4884-0.4889 here and move with the machine's load).
TEST_F(FfmCliTest, PlantedFfmBeatsFmAndApproachesBayes) {
  TempDir ffm, fm;
  std::string out;
  ASSERT_EQ(Train(Config(ffm, "big"), kOneByOne, &out), 0) << out;
  ASSERT_EQ(Train(Config(fm, "big", /*fm=*/true), kOneByOne, &out), 0) << out;
  const double ffm_loss = TestLogloss(ffm), fm_loss = TestLogloss(fm);
  EXPECT_LT(ffm_loss, bayes_ * 1.02) << "bayes " << bayes_;
  EXPECT_LT(ffm_loss, fm_loss - 0.01) << "fm " << fm_loss;
  EXPECT_LT(ffm_loss - bayes_, 0.5 * (fm_loss - bayes_)) << "fm " << fm_loss;
  const Model m = Model::Load(ffm.File("run/model.fmps"));
  EXPECT_EQ(m.shape(), FfmShape(4, kFields));
  // Row-wise AdaGrad (optimizer.rowwise) on the same data and settings: within 0.002 of the
  // element-wise logloss (measured: 0.48881 against 0.48893, Bayes 0.48074; one server and
  // one worker thread, so the same bits in every run).
  TempDir rowwise;
  ASSERT_EQ(
      Train(Config(rowwise, "big"), std::string(kOneByOne) + " --set optimizer.rowwise=true", &out),
      0)
      << out;
  std::cout << "[ quality ] element-wise " << ffm_loss << ", row-wise " << TestLogloss(rowwise)
            << ", bayes " << bayes_ << "\n";
  EXPECT_LT(TestLogloss(rowwise), ffm_loss + 0.002);
}

// predict, eval and export read the FFM model; eval gives the job's own test logloss; a
// field id at or above model.fields is a malformed row named by file:line.
TEST_F(FfmCliTest, PredictEvalExportAndBadFieldIds) {
  TempDir d;
  std::string out;
  ASSERT_EQ(Train(Config(d, "small"), "", &out), 0) << out;
  const std::string model = d.File("run/model.fmps");
  const std::string test = dir_->File("small/test.libffm");
  ASSERT_EQ(RunCommand(FmpsBinary() + " eval --model " + model + " --data " + test, &out), 0);
  EXPECT_NEAR(JsonNumber(out, "logloss"), TestLogloss(d), 1e-5) << out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " predict --model " + model + " --data " + test, &out), 0);
  EXPECT_EQ(Lines(out).size(), 2000u);
  ASSERT_EQ(RunCommand(FmpsBinary() + " export --model " + model + " --out -", &out), 0);
  const std::vector<std::string> lines = Lines(out);
  EXPECT_NE(lines[0].find("k=4 kind=ffm fields=4"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("V1..V16"), std::string::npos) << lines[0];
  ASSERT_GT(lines.size(), 2u);
  EXPECT_EQ(std::count(lines[2].begin(), lines[2].end(), ' '), 1 + 16) << lines[2];

  const std::string bad = d.Write("bad.libffm", "1 0:1:1 1:60:1\n0 0:2:1 4:61:1\n1 3:3:1\n");
  EXPECT_EQ(RunCommand(FmpsBinary() + " predict --model " + model + " --data " + bad, &out), 1);
  EXPECT_NE(out.find("bad.libffm:2: field id out of range '4:61:1' in feature 2 (model.fields "
                     "is 4)"),
            std::string::npos)
      << out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " eval --model " + model + " --data " + bad, &out), 0);
  EXPECT_EQ(JsonNumber(out, "bad_rows"), 1) << out;
  EXPECT_EQ(
      RunCommand(FmpsBinary() + " eval --model " + model + " --data " + bad + " --format criteo",
                 &out),
      2);
  EXPECT_NE(out.find("reads only its training format, libffm"), std::string::npos) << out;
  // Training: on_error fail stops at the row; skip counts it (max_bad_fraction applies).
  const std::string cfg = d.Write("bad.yaml", "data:\n  train: " + bad +
                                                  "\n  format: libffm\n  on_error: fail\n"
                                                  "model:\n  kind: ffm\n  fields: 4\n"
                                                  "output:\n  dir: " +
                                                  d.File("badrun") + "\n");
  EXPECT_EQ(Train(cfg, "", &out), 1);
  EXPECT_NE(out.find("bad.libffm:2: field id out of range"), std::string::npos) << out;
  EXPECT_EQ(Train(cfg, "--set data.on_error=skip --set data.max_bad_fraction=0.5", &out), 0) << out;
  EXPECT_EQ(JsonNumber(ReadFile(d.File("badrun/summary.json")), "bad_rows"), 1);
  EXPECT_EQ(Train(cfg, "--set data.on_error=skip", &out), 1);
  EXPECT_NE(out.find("data.max_bad_fraction"), std::string::npos) << out;
}

// bsp: one, two and three servers give the same FFM model; a run checkpointed after its
// first epoch and resumed for the second gives the model of the straight two-epoch run.
TEST_F(FfmCliTest, BspServerCountsAndResumeGiveTheSameModel) {
  TempDir one, two, three, resumed;
  const std::string bsp = "--set train.consistency=bsp --set cluster.local_workers=2";
  std::string out;
  ASSERT_EQ(Train(Config(one, "small"), bsp + " --set cluster.local_servers=1", &out), 0) << out;
  ASSERT_EQ(Train(Config(two, "small"), bsp + " --set cluster.local_servers=2", &out), 0) << out;
  ASSERT_EQ(Train(Config(three, "small"), bsp + " --set cluster.local_servers=3", &out), 0) << out;
  const Model m1 = Model::Load(one.File("run/model.fmps"));
  EXPECT_EQ(MaxAbsDiff(m1, Model::Load(two.File("run/model.fmps"))), 0.0);
  EXPECT_EQ(MaxAbsDiff(m1, Model::Load(three.File("run/model.fmps"))), 0.0);

  const std::string cfg =
      Config(resumed, "small", false, "checkpoint:\n  dir: " + resumed.File("ckpt") + "\n");
  ASSERT_EQ(Train(cfg, bsp + " --set train.epochs=1 --set cluster.local_servers=2", &out), 0)
      << out;
  ASSERT_EQ(Train(cfg, bsp + " --resume --set cluster.local_servers=3", &out), 0) << out;
  EXPECT_EQ(MaxAbsDiff(m1, Model::Load(resumed.File("run/model.fmps"))), 0.0);
}

// optimizer.rowwise (row-wise AdaGrad) through the binary: bsp models equal across one, two
// and three servers and across a checkpoint + resume onto another server count (the
// checkpoint shards carry the row-wise state); the model differs from element-wise
// AdaGrad's; resuming with the other setting is refused (the checkpoint digest); warm start and
// export read the row-wise run's model.
TEST_F(FfmCliTest, RowwiseBspServerCountsAndResumeGiveTheSameModel) {
  TempDir one, three, resumed, elementwise, warm;
  const std::string bsp =
      "--set train.consistency=bsp --set cluster.local_workers=2 --set optimizer.rowwise=true";
  std::string out;
  ASSERT_EQ(Train(Config(one, "small"), bsp + " --set cluster.local_servers=1", &out), 0) << out;
  ASSERT_EQ(Train(Config(three, "small"), bsp + " --set cluster.local_servers=3", &out), 0) << out;
  const Model m1 = Model::Load(one.File("run/model.fmps"));
  EXPECT_EQ(MaxAbsDiff(m1, Model::Load(three.File("run/model.fmps"))), 0.0);
  ASSERT_EQ(Train(Config(elementwise, "small"),
                  "--set train.consistency=bsp --set cluster.local_servers=1", &out),
            0)
      << out;
  EXPECT_GT(MaxAbsDiff(m1, Model::Load(elementwise.File("run/model.fmps"))), 1e-4);

  const std::string cfg =
      Config(resumed, "small", false, "checkpoint:\n  dir: " + resumed.File("ckpt") + "\n");
  ASSERT_EQ(Train(cfg, bsp + " --set train.epochs=1 --set cluster.local_servers=2", &out), 0)
      << out;
  EXPECT_EQ(Train(cfg,
                  "--set train.consistency=bsp --set cluster.local_workers=2 --resume "
                  "--set cluster.local_servers=3",
                  &out),
            2)
      << out;
  EXPECT_NE(out.find("written with different data, model or optimizer settings"), std::string::npos)
      << out;
  ASSERT_EQ(Train(cfg, bsp + " --resume --set cluster.local_servers=3", &out), 0) << out;
  EXPECT_EQ(MaxAbsDiff(m1, Model::Load(resumed.File("run/model.fmps"))), 0.0);

  ASSERT_EQ(Train(Config(warm, "small"),
                  std::string(kOneByOne) + " --set optimizer.rowwise=true --set train.epochs=1 " +
                      "--set train.init_model=" + one.File("run/model.fmps"),
                  &out),
            0)
      << out;
  EXPECT_LT(TestLogloss(warm), TestLogloss(one) + 0.01);
  ASSERT_EQ(
      RunCommand(FmpsBinary() + " export --model " + one.File("run/model.fmps") + " --out -", &out),
      0);
  EXPECT_NE(out.find("kind=ffm fields=4"), std::string::npos);
}

// train.init_model: an FFM model warm-starts an FFM job of its shape (and the start shows in
// the first epoch's loss: both runs one server and one worker thread, so the comparison is
// the same in every run); an FM model or another field count is refused, naming the key.
TEST_F(FfmCliTest, WarmStartFromAnFfmModel) {
  TempDir first, warm, fm;
  std::string out;
  const std::string one_epoch = std::string(kOneByOne) + " --set train.epochs=1";
  ASSERT_EQ(Train(Config(first, "small"), one_epoch, &out), 0) << out;
  const std::string model = first.File("run/model.fmps");
  ASSERT_EQ(Train(Config(warm, "small"), one_epoch + " --set train.init_model=" + model, &out), 0)
      << out;
  EXPECT_LT(TestLogloss(warm), TestLogloss(first));
  ASSERT_EQ(Train(Config(fm, "small", /*fm=*/true), "--set train.epochs=1", &out), 0) << out;
  EXPECT_EQ(
      Train(Config(warm, "small"), "--set train.init_model=" + fm.File("run/model.fmps"), &out), 2);
  EXPECT_NE(out.find("train.init_model: " + fm.File("run/model.fmps") +
                     " has model shape fm k=4 but the config trains ffm k=4 fields=4"),
            std::string::npos)
      << out;
  EXPECT_EQ(
      Train(Config(warm, "small"), "--set model.fields=5 --set train.init_model=" + model, &out),
      2);
  EXPECT_NE(out.find("ffm k=4 fields=4 but the config trains ffm k=4 fields=5"), std::string::npos)
      << out;
}

// Options rejected where they do not apply, through the binary (exit 2, the key named).
TEST_F(FfmCliTest, FfmOptionsRejectedWhereTheyDoNotApply) {
  TempDir d;
  std::string out;
  const std::string cfg = Config(d, "small");
  EXPECT_EQ(RunCommand(FmpsBinary() + " check " + cfg + " --set data.format=libsvm 2>&1", &out), 2);
  EXPECT_NE(out.find("model.kind: ffm needs a field for every feature, and data.format libsvm "
                     "has none"),
            std::string::npos)
      << out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " check " + Config(d, "small", /*fm=*/true) +
                           " --set model.fields=4 2>&1",
                       &out),
            2);
  EXPECT_NE(out.find("model.fields applies only to model.kind: ffm"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " synth --out " + d.File("s") +
                           " --rows 10 --model ffm --format libsvm 2>&1",
                       &out),
            2);
  EXPECT_NE(out.find("--model ffm needs a format with fields"), std::string::npos) << out;
}

// At 39 fields (Criteo-shaped, k 8) FFM needs many rows per key: on 150k rows over 169 keys
// (vocab 195, 5 values per column; about 35k occurrences per key) and unnormalized rows,
// two epochs come within 3% of the Bayes logloss (measured 1.85%) with at most 0.75 of FM's
// excess over Bayes (FM: 3.4%, measured ratio 0.55). One server and one worker thread, so
// that each run gives the same bits: with two async workers the result moved with the
// machine's load (2.0-2.1% above Bayes when quiet, 3.0% once under load).
// FM diverges at lr 0.05 on these rows (39 values of 1, no normalization), FFM does not.
// Both runs push per-key means, the setting these learning rates were measured with: with
// adagrad's default (per-key sum / sqrt(count)) FFM diverges at lr 0.05 here and reaches
// 1.9-2.6% above Bayes at lr 0.01, FM 3.2-3.5%.
// `model_and_optimizer`: the YAML lines that differ between the FFM and the FM run.
std::string Criteo39Config(const TempDir& d, const std::string& data,
                           const std::string& model_and_optimizer) {
  return d.Write("exp.yaml", "data:\n  train: " + data + "/train.txt\n  test: " + data +
                                 "/test.txt\n  format: criteo\n  normalize: none\nmodel:\n"
                                 "  k: 8\n" +
                                 model_and_optimizer +
                                 "train:\n  epochs: 2\n  batch_size: 1024\noutput:\n  dir: " +
                                 d.File("run") + "\n");
}

TEST(FfmCliQualityTest, PlantedFfmBeatsFmAt39Fields) {
  TempDir data, ffm, fm;
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " synth --out " + data.File("s") +
                           " --model ffm --format criteo --fields 39 --vocab 195 --k 8 --seed 3"
                           " --rows 150000 --test-rows 10000",
                       &out),
            0)
      << out;
  const double bayes = std::stod(out.substr(out.find("Bayes test logloss ") + 19));
  const std::pair<const TempDir*, std::string> runs[] = {
      {&ffm, "  kind: ffm\n  fields: 39\noptimizer:\n  lr: 0.05\n  gradient: key_mean\n"},
      {&fm, "optimizer:\n  lr: 0.02\n  gradient: key_mean\n"}};
  for (const auto& [d, model_and_optimizer] : runs) {
    ASSERT_EQ(RunCommand(FmpsBinary() + " train " +
                             Criteo39Config(*d, data.File("s"), model_and_optimizer) +
                             " --set cluster.local_servers=1 --set cluster.local_workers=1 2>&1",
                         &out),
              0)
        << out;
  }
  const double ffm_loss = JsonNumber(ReadFile(ffm.File("run/summary.json")), "test_logloss");
  const double fm_loss = JsonNumber(ReadFile(fm.File("run/summary.json")), "test_logloss");
  EXPECT_LT(ffm_loss, bayes * 1.03) << "bayes " << bayes;
  EXPECT_LT(ffm_loss - bayes, 0.75 * (fm_loss - bayes)) << "bayes " << bayes << " fm " << fm_loss;
}

}  // namespace
}  // namespace fmps
