// fmps synth: determinism, every output format readable by the readers, sane yardsticks,
// and the example configs train on the data it makes.
#include "common/data/synth.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "common/base/error.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "tests/util/test_util.h"
#include "worker/job/local_trainer.h"

namespace fmps {
namespace {

using testing::ReadFile;
using testing::TempDir;

SynthOptions Small(const std::string& dir, DataFormat format) {
  SynthOptions o;
  o.out_dir = dir;
  o.rows = 4000;
  o.test_rows = 1000;
  o.fields = format == DataFormat::kCriteo ? 39 : 9;
  o.vocab = 900;
  o.k = 4;
  o.seed = 11;
  o.format = format;
  return o;
}

TEST(SynthTest, DeterministicForASeed) {
  TempDir a, b, c;
  SynthResult ra = Synthesize(Small(a.path(), DataFormat::kLibsvm));
  SynthResult rb = Synthesize(Small(b.path(), DataFormat::kLibsvm));
  SynthOptions other = Small(c.path(), DataFormat::kLibsvm);
  other.seed = 12;
  SynthResult rc = Synthesize(other);
  EXPECT_EQ(ReadFile(ra.train_path), ReadFile(rb.train_path));
  EXPECT_EQ(ra.bayes_logloss_test, rb.bayes_logloss_test);
  EXPECT_NE(ReadFile(ra.train_path), ReadFile(rc.train_path));
  // The Bayes yardstick beats the constant predictor but is not perfect.
  const double p = ra.positive_rate;
  const double constant = -(p * std::log(p) + (1 - p) * std::log(1 - p));
  EXPECT_LT(ra.bayes_logloss_test, constant);
  EXPECT_GT(ra.bayes_logloss_test, 0.1);
  EXPECT_GT(ra.bayes_auc_test, 0.6);
  EXPECT_LT(ra.bayes_auc_test, 0.99);
}

TEST(SynthTest, EveryFormatParsesWithoutBadRows) {
  for (DataFormat f :
       {DataFormat::kLibsvm, DataFormat::kLibffm, DataFormat::kCriteo, DataFormat::kCsv}) {
    TempDir dir;
    SynthOptions o = Small(dir.path(), f);
    SynthResult r = Synthesize(o);
    FeatureSpec spec;
    spec.data.format = f;
    spec.data.on_error = OnError::kFail;
    if (f == DataFormat::kCsv) {
      spec.data.csv.label = "label";
      spec.data.csv.numeric = {"n1", "n2", "n3"};
      spec.data.csv.categorical = {"c4", "c5", "c6", "c7", "c8", "c9"};
      spec.data.csv.transform = NumericTransform::kLogBucket;
    }
    ShardReader reader(spec, {r.train_path}, 0, 1);
    RowBlock block;
    std::uint64_t rows = 0;
    while (true) {
      block.Clear();
      const std::size_t n = reader.Read(1000, &block);
      if (n == 0) break;
      rows += n;
      for (std::size_t i = 0; i < block.rows(); ++i) {
        // One active value per field.
        EXPECT_EQ(block.offsets[i + 1] - block.offsets[i], static_cast<std::size_t>(o.fields))
            << ToString(f);
      }
    }
    EXPECT_EQ(rows, o.rows) << ToString(f);
    EXPECT_EQ(reader.bad_rows().count, 0u) << ToString(f);
  }
}

TEST(SynthTest, BadOptionsAreRejected) {
  TempDir dir;
  SynthOptions o = Small(dir.path(), DataFormat::kCriteo);
  o.fields = 10;
  EXPECT_THROW(Synthesize(o), ConfigError);
  o = Small(dir.path(), DataFormat::kLibsvm);
  o.vocab = 3;
  EXPECT_THROW(Synthesize(o), ConfigError);
  o = Small("", DataFormat::kLibsvm);
  EXPECT_THROW(Synthesize(o), ConfigError);
}

// The example configs in configs/ train on the data their comments say to make.
TEST(SynthTest, ExampleConfigsTrain) {
  struct Case {
    const char* config;
    DataFormat format;
    int fields;
    const char* train;
    const char* test;
  };
  for (const Case& c : {Case{"libsvm.yaml", DataFormat::kLibsvm, 39, "train.libsvm", "test.libsvm"},
                        Case{"libffm.yaml", DataFormat::kLibffm, 39, "train.libffm", "test.libffm"},
                        Case{"criteo.yaml", DataFormat::kCriteo, 39, "train.txt", "test.txt"},
                        Case{"csv.yaml", DataFormat::kCsv, 9, "train.csv", "test.csv"}}) {
    TempDir dir;
    SynthOptions o = Small(dir.File("data"), c.format);
    o.fields = c.fields;
    o.rows = 40000;
    o.vocab = 10 * c.fields;
    SynthResult r = Synthesize(o);
    Config config = LoadConfig(
        std::string(FMPS_SOURCE_DIR) + "/configs/" + c.config,
        {"data.train=" + r.train_path, "data.test=" + r.test_path, "output.dir=" + dir.File("run"),
         // Deterministic, so the threshold below is not luck.
         "train.consistency=bsp"});
    TrainSummary s = TrainLocal(config);
    EXPECT_EQ(s.bad_rows, 0u) << c.config;
    EXPECT_EQ(s.rows_trained, 40000u * config.train.epochs) << c.config;
    EXPECT_GT(s.test_auc, 0.6) << c.config;
  }
}

}  // namespace
}  // namespace fmps
