// Training from arrays in memory (the Python package's path): ArrayRowSource serves the
// rows a ShardReader parses from the same data, TrainLocalFromSources trains the same model
// as TrainLocal on the file, refuses checkpoints, stops on RequestStop; Model::FromBytes.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/config/config.h"
#include "common/data/array_source.h"
#include "common/data/reader.h"
#include "common/data/synth.h"
#include "common/model/model_file.h"
#include "tests/util/test_util.h"
#include "worker/job/interrupt.h"
#include "worker/job/local_trainer.h"
#include "worker/job/run_output.h"

namespace fmps {
namespace {

using testing::MaxAbsDiff;
using testing::ReadFile;
using testing::TempDir;

// A whole file as one RowBlock, and the same rows as CSR arrays (column = key).
struct Csr {
  RowBlock block;
  std::vector<std::int64_t> indptr, indices;
  std::vector<double> data;
  CsrArrays View() const {
    CsrArrays a;
    a.indptr = indptr.data();
    a.indices = indices.data();
    a.data = data.data();
    a.index = CsrArrays::Index::kInt64;
    a.value = CsrArrays::Value::kFloat64;
    a.rows = block.rows();
    a.labels = block.labels.data();
    return a;
  }
};

Csr ReadAll(const std::string& path) {
  FeatureSpec spec;
  ShardReader reader(spec, {path}, 0, 1);
  Csr c;
  while (reader.Read(4096, &c.block) > 0) {
  }
  for (std::size_t o : c.block.offsets) c.indptr.push_back(static_cast<std::int64_t>(o));
  for (Key k : c.block.keys) c.indices.push_back(static_cast<std::int64_t>(k));
  for (float v : c.block.values) c.data.push_back(v);
  return c;
}

class ArrayTrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    SynthOptions o;
    o.out_dir = dir_->File("synth");
    o.rows = 20000;
    o.test_rows = 2000;
    o.fields = 8;
    o.vocab = 500;
    o.k = 4;
    result_ = new SynthResult(Synthesize(o));
    train_ = new Csr(ReadAll(result_->train_path));
  }
  static void TearDownTestSuite() {
    delete train_;
    delete result_;
    delete dir_;
  }
  static Config MakeConfig(const std::string& out, const std::vector<std::string>& sets = {}) {
    const std::string yaml = "data:\n  train: " + result_->train_path +
                             "\n  format: libsvm\nmodel:\n  k: 4\ntrain:\n  epochs: 2\n"
                             "  batch_size: 128\n  consistency: bsp\ncluster:\n"
                             "  local_workers: 1\noutput:\n  dir: " +
                             out + "\n";
    return ParseConfig(yaml, "array.yaml", sets);
  }
  static MemorySources OneWorker(ArrayRowSource* source, const Config& config) {
    MemorySources m;
    m.train = {source};
    m.spec.data = config.data;
    m.spec.loss = config.model.loss;
    return m;
  }
  static TempDir* dir_;
  static SynthResult* result_;
  static Csr* train_;
};
TempDir* ArrayTrainTest::dir_ = nullptr;
SynthResult* ArrayTrainTest::result_ = nullptr;
Csr* ArrayTrainTest::train_ = nullptr;

TEST_F(ArrayTrainTest, SourcesServeEveryRowOnceInBatches) {
  const CsrArrays arrays = train_->View();
  RowBlock all;
  std::vector<ByteRange> left;
  for (int w = 0; w < 3; ++w) {
    ArrayRowSource source(arrays, ArrayShard(arrays.rows, w, 3), Normalize::kNone);
    while (source.Read(333, &all) > 0) {
    }
    source.Remaining(&left);
    EXPECT_TRUE(left.empty());
    EXPECT_EQ(source.bytes_consumed(), source.bytes_in_shard());
    source.Rewind();
    EXPECT_EQ(source.bytes_consumed(), 0u);
  }
  EXPECT_EQ(all.labels, train_->block.labels);
  EXPECT_EQ(all.offsets, train_->block.offsets);
  EXPECT_EQ(all.keys, train_->block.keys);
  EXPECT_EQ(all.values, train_->block.values);
}

TEST_F(ArrayTrainTest, TrainsTheModelTheFileTrains) {
  TempDir file_out, array_out;
  const Config file_config = MakeConfig(file_out.path());
  TrainLocal(file_config);
  const Config config = MakeConfig(array_out.path());
  ArrayRowSource source(train_->View(), ArrayShard(train_->block.rows(), 0, 1), Normalize::kNone);
  const TrainSummary s = TrainLocalFromSources(config, OneWorker(&source, config));
  EXPECT_EQ(s.rows_trained, 2u * train_->block.rows());
  const Model from_file = Model::Load(file_out.File("model.fmps"));
  const Model from_arrays = Model::Load(array_out.File("model.fmps"));
  ASSERT_EQ(from_file.num_keys(), from_arrays.num_keys());
  EXPECT_EQ(MaxAbsDiff(from_file, from_arrays), 0.0);  // bsp, one worker: bit for bit
  // the same model from the file's bytes in memory
  const Model from_bytes = Model::FromBytes(ReadFile(array_out.File("model.fmps")), "bytes");
  EXPECT_EQ(MaxAbsDiff(from_bytes, from_arrays), 0.0);
  EXPECT_THROW(Model::FromBytes("FMPSMDL1 and then garbage", "bytes"), ModelError);
}

// In memory (RunOutputOptions::memory): output.dir is never created, and the memory holds
// the model the file run writes, the summary and the events metrics.jsonl would hold.
TEST_F(ArrayTrainTest, InMemoryOutputWritesNoFile) {
  TempDir file_out, parent;
  const std::string dir = parent.File("never");
  TrainLocal(MakeConfig(file_out.path()));
  const Config config = MakeConfig(dir);
  ArrayRowSource source(train_->View(), ArrayShard(train_->block.rows(), 0, 1), Normalize::kNone);
  MemoryRunOutput run;
  TrainLocalFromSources(config, OneWorker(&source, config), {.memory = &run});
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_TRUE(std::filesystem::is_empty(parent.path()));
  const Model from_file = Model::Load(file_out.File("model.fmps"));
  const Model from_memory = Model::FromBytes(run.model, "memory");
  ASSERT_EQ(from_file.num_keys(), from_memory.num_keys());
  EXPECT_EQ(MaxAbsDiff(from_file, from_memory), 0.0);
  EXPECT_NE(run.summary_json.find("\"rows_trained\""), std::string::npos) << run.summary_json;
  ASSERT_FALSE(run.events.empty());
  for (const std::string& e : run.events) {
    EXPECT_EQ(e.rfind("{\"event\":", 0), 0u) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

// A source that counts the rows it served (of `inner`).
class CountingSource : public RowSource {
 public:
  explicit CountingSource(RowSource* inner) : inner_(inner) {}
  std::size_t Read(std::size_t max_rows, RowBlock* block) override {
    const std::size_t n = inner_->Read(max_rows, block);
    rows_read += n;
    return n;
  }
  void Rewind() override { inner_->Rewind(); }
  void Remaining(std::vector<ByteRange>* out) const override { inner_->Remaining(out); }
  std::uint64_t bytes_in_shard() const override { return inner_->bytes_in_shard(); }
  std::uint64_t bytes_consumed() const override { return inner_->bytes_consumed(); }
  const BadRowStats& bad_rows() const override { return inner_->bad_rows(); }
  std::uint64_t rows_read = 0;

 private:
  RowSource* inner_;
};

// An eval set that is both the test and the validation rows (the estimators' eval_set with
// early stopping) is scored once per epoch, and both metrics are its metrics.
TEST_F(ArrayTrainTest, EvalSetAsTestAndValidationIsScoredOncePerEpoch) {
  TempDir out;
  const Config config =
      ParseConfigForArrays(ConfigToYaml(MakeConfig(out.path())), "array.yaml",
                           {"train.early_stop.metric=logloss", "train.early_stop.patience=5"});
  ArrayRowSource source(train_->View(), ArrayShard(train_->block.rows(), 0, 1), Normalize::kNone);
  ArrayRowSource eval_rows(train_->View(), ArrayShard(train_->block.rows(), 0, 1),
                           Normalize::kNone);
  CountingSource eval(&eval_rows);
  MemorySources sources = OneWorker(&source, config);
  sources.test = {&eval};
  sources.valid = {&eval};
  MemoryRunOutput run;
  const TrainSummary s = TrainLocalFromSources(config, sources, {.memory = &run});
  EXPECT_EQ(eval.rows_read, 2u * train_->block.rows());  // 2 epochs, one pass each
  std::vector<std::string> test_loss, valid_loss;
  for (const std::string& e : run.events) {
    const std::size_t t = e.find("\"test_logloss\":"), v = e.find("\"valid_logloss\":");
    if (t != std::string::npos) test_loss.push_back(e.substr(t + 15, 10));
    if (v != std::string::npos) valid_loss.push_back(e.substr(v + 16, 10));
  }
  ASSERT_EQ(test_loss.size(), 2u);
  EXPECT_EQ(test_loss, valid_loss);
  EXPECT_EQ(s.best_epoch, 2);
}

TEST_F(ArrayTrainTest, RefusesCheckpoints) {
  TempDir out;
  const Config config = MakeConfig(out.path(), {"checkpoint.dir=" + out.File("ckpt")});
  ArrayRowSource source(train_->View(), ArrayShard(train_->block.rows(), 0, 1), Normalize::kNone);
  try {
    TrainLocalFromSources(config, OneWorker(&source, config));
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("checkpoint.dir"), std::string::npos) << e.what();
  }
}

TEST_F(ArrayTrainTest, StopsOnRequestStopWithoutAModel) {
  TempDir out;
  const Config config = MakeConfig(out.path());
  ArrayRowSource source(train_->View(), ArrayShard(train_->block.rows(), 0, 1), Normalize::kNone);
  RequestStop(SIGINT);
  EXPECT_THROW(TrainLocalFromSources(config, OneWorker(&source, config)), Interrupted);
  ClearStop();
  EXPECT_FALSE(std::filesystem::exists(out.File("model.fmps")));
  TrainLocalFromSources(config, OneWorker(&source, config));  // trains again once cleared
  EXPECT_TRUE(std::filesystem::exists(out.File("model.fmps")));
}

}  // namespace
}  // namespace fmps
