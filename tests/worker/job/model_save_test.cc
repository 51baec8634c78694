// The model save overlaps the last test evaluation (worker/job/model_save.h): the model is
// the one trained, whatever the test set; a failure of either overlapped step fails the
// run with its own message and leaves no model file, complete or partial.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "common/data/synth.h"
#include "common/model/model_file.h"
#include "tests/util/test_util.h"
#include "worker/job/local_trainer.h"

namespace fmps {
namespace {

using testing::FmpsBinary;
using testing::MaxAbsDiff;
using testing::RunCommand;
using testing::TempDir;

class ModelSaveTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    SynthOptions o;
    o.out_dir = dir_->File("synth");
    o.rows = 6000;
    o.test_rows = 3000;
    o.fields = 8;
    o.vocab = 6000;
    o.k = 8;
    result_ = new SynthResult(Synthesize(o));
  }
  static void TearDownTestSuite() {
    delete result_;
    delete dir_;
  }
  // A bsp job (reproducible bit for bit) writing into `out`, with the test set or without.
  static std::string Yaml(const std::string& out, bool with_test) {
    return "data:\n  train: " + result_->train_path + "\n" +
           (with_test ? "  test: " + result_->test_path + "\n" : std::string()) +
           "  format: libsvm\nmodel:\n  k: 8\ntrain:\n  epochs: 2\n  batch_size: 256\n"
           "  consistency: bsp\ncluster:\n  local_servers: 1\n  local_workers: 1\n"
           "output:\n  dir: " +
           out + "\n";
  }
  // The files in `dir` (names only): a model file, or a temp file left behind.
  static std::vector<std::string> Files(const std::string& dir) {
    std::vector<std::string> names;
    if (!std::filesystem::exists(dir)) return names;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      names.push_back(e.path().filename().string());
    }
    return names;
  }
  static bool HasModelOrTemp(const std::string& dir) {
    for (const std::string& n : Files(dir)) {
      if (n.rfind("model.fmps", 0) == 0) return true;
    }
    return false;
  }
  static TempDir* dir_;
  static SynthResult* result_;
};
TempDir* ModelSaveTest::dir_ = nullptr;
SynthResult* ModelSaveTest::result_ = nullptr;

// The model written while the test set is scored is the model trained: bit for bit the one a
// job without a test set writes (the dump is taken after the last step, and the test pulls
// create no key).
TEST_F(ModelSaveTest, ModelIsTheSameWithTheTestEvaluationOverlapped) {
  TempDir with, without;
  TrainLocal(ParseConfig(Yaml(with.path(), true), "with.yaml", {}));
  TrainLocal(ParseConfig(Yaml(without.path(), false), "without.yaml", {}));
  const Model a = Model::Load(with.File("model.fmps"));
  const Model b = Model::Load(without.File("model.fmps"));
  ASSERT_EQ(a.num_keys(), b.num_keys());
  EXPECT_EQ(a.keys(), b.keys());
  EXPECT_EQ(a.meta().bias, b.meta().bias);
  EXPECT_EQ(MaxAbsDiff(a, b), 0.0);
}

// A test source that fails once the test set is being scored.
class FailingSource : public RowSource {
 public:
  explicit FailingSource(RowSource* inner) : inner_(inner) {}
  std::size_t Read(std::size_t max_rows, RowBlock* block) override {
    if (++reads_ > 2) throw IoError("test rows unreadable (injected)");
    return inner_->Read(max_rows, block);
  }
  void Rewind() override { inner_->Rewind(); }
  void Remaining(std::vector<ByteRange>* out) const override { inner_->Remaining(out); }
  std::uint64_t bytes_in_shard() const override { return inner_->bytes_in_shard(); }
  std::uint64_t bytes_consumed() const override { return inner_->bytes_consumed(); }
  const BadRowStats& bad_rows() const override { return inner_->bad_rows(); }

 private:
  RowSource* inner_;
  int reads_ = 0;
};

// The test evaluation fails while the model is being written: the job fails with the
// evaluation's message and output.dir holds no model file and no temp file.
TEST_F(ModelSaveTest, FailedTestEvaluationLeavesNoModel) {
  TempDir out;
  Config config = ParseConfig(Yaml(out.path(), false), "fail.yaml", {"train.epochs=1"});
  FeatureSpec spec;
  spec.data = config.data;
  spec.loss = config.model.loss;
  ShardReader train(spec, {result_->train_path}, 0, 1);
  ShardReader test_rows(spec, {result_->test_path}, 0, 1);
  FailingSource test(&test_rows);
  MemorySources sources{.train = {&train}, .test = {&test}, .valid = {}, .spec = spec};
  try {
    TrainLocalFromSources(config, sources);
    FAIL() << "the job did not fail";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("test rows unreadable"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(HasModelOrTemp(out.path()));
}

// The model write fails (a file-size limit: write() returns EFBIG) while the test set is
// scored: `fmps train` fails naming the file, and leaves no model file and no temp file.
TEST_F(ModelSaveTest, FailedModelWriteFailsTheRunAndLeavesNoModel) {
  TempDir out;
  const std::string config = out.Write("c.yaml", Yaml(out.File("run"), true));
  std::string log;
  // ulimit -f counts 512-byte blocks in sh: 64 kB, less than the model (~6000 keys x 36 B).
  const int status = RunCommand(
      "trap '' XFSZ; ulimit -f 128; " + FmpsBinary() + " train " + config + " 2>&1", &log);
  EXPECT_NE(status, 0) << log;
  EXPECT_NE(log.find("cannot write"), std::string::npos) << log;
  EXPECT_NE(log.find("model.fmps"), std::string::npos) << log;
  EXPECT_FALSE(HasModelOrTemp(out.File("run"))) << log;
}

}  // namespace
}  // namespace fmps
