#include "common/config/config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <functional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "common/base/error.h"
#include "common/config/config_table.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using ::fmps::testing::TempDir;

constexpr const char* kMinimal = "data:\n  train: train.txt\n  format: libsvm\n";

// Field-by-field equality of two configs; reports the first difference.
::testing::AssertionResult SameConfig(const Config& a, const Config& b) {
#define FMPS_SAME(field)                                       \
  if (!(a.field == b.field)) {                                 \
    return ::testing::AssertionFailure() << #field " differs"; \
  }
  FMPS_SAME(data.train)
  FMPS_SAME(data.test)
  FMPS_SAME(data.format)
  FMPS_SAME(data.hash_bits)
  FMPS_SAME(data.csv.label)
  FMPS_SAME(data.csv.numeric)
  FMPS_SAME(data.csv.categorical)
  FMPS_SAME(data.csv.ignore)
  FMPS_SAME(data.csv.delimiter)
  FMPS_SAME(data.csv.transform)
  FMPS_SAME(data.on_error)
  FMPS_SAME(data.normalize)
  FMPS_SAME(model.k)
  FMPS_SAME(model.loss)
  FMPS_SAME(model.init_std)
  FMPS_SAME(model.l2_w)
  FMPS_SAME(model.l2_v)
  FMPS_SAME(optimizer.clip_gradient)
  FMPS_SAME(model.min_count)
  FMPS_SAME(optimizer.name)
  FMPS_SAME(optimizer.lr)
  FMPS_SAME(optimizer.beta1)
  FMPS_SAME(optimizer.beta2)
  FMPS_SAME(optimizer.eps)
  FMPS_SAME(optimizer.l1)
  FMPS_SAME(optimizer.ftrl_beta)
  FMPS_SAME(optimizer.gradient)
  FMPS_SAME(optimizer.initial_accumulator)
  FMPS_SAME(optimizer.rowwise)
  FMPS_SAME(train.epochs)
  FMPS_SAME(train.batch_size)
  FMPS_SAME(train.consistency)
  FMPS_SAME(train.max_delay)
  FMPS_SAME(train.seed)
  FMPS_SAME(train.progress_seconds)
  FMPS_SAME(cluster.servers)
  FMPS_SAME(cluster.local_servers)
  FMPS_SAME(cluster.local_workers)
  FMPS_SAME(cluster.timeout_seconds)
  FMPS_SAME(checkpoint.dir)
  FMPS_SAME(checkpoint.every_seconds)
  FMPS_SAME(checkpoint.keep)
  FMPS_SAME(train.init_model)
  FMPS_SAME(output.dir)
  FMPS_SAME(data.valid)
  FMPS_SAME(data.valid_fraction)
  FMPS_SAME(train.early_stop.metric)
  FMPS_SAME(train.early_stop.patience)
  FMPS_SAME(train.early_stop.min_delta)
#undef FMPS_SAME
  return ::testing::AssertionSuccess();
}

// The ConfigError message of parsing `yaml` (with `overrides`), or "" if it parses.
std::string ErrorOf(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    ParseConfig(yaml, "exp.yaml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

Config Parse(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return ParseConfig(yaml, "exp.yaml", overrides);
}

TEST(ConfigTest, DefaultsOfMinimalConfig) {
  const Config c = ParseConfig(kMinimal, "configs/small.yaml", {});
  const Config d;
  EXPECT_EQ(c.data.train, std::vector<std::string>{"train.txt"});
  EXPECT_TRUE(c.data.test.empty());
  EXPECT_EQ(c.data.format, DataFormat::kLibsvm);
  EXPECT_EQ(c.data.hash_bits, 0);
  EXPECT_EQ(c.data.on_error, OnError::kSkip);
  EXPECT_EQ(c.model.k, 8);
  EXPECT_EQ(c.model.loss, Loss::kLogistic);
  EXPECT_EQ(c.model.init_std, 0.01f);
  EXPECT_EQ(c.optimizer.name, OptimizerName::kAdagrad);
  EXPECT_EQ(c.optimizer.lr, 0.1f);
  EXPECT_EQ(c.train.epochs, 1);
  EXPECT_EQ(c.train.batch_size, 32);
  EXPECT_EQ(c.data.normalize, Normalize::kInstance);
  EXPECT_EQ(c.optimizer.initial_accumulator, 0.001f);
  EXPECT_EQ(c.train.consistency, Consistency::kAsync);
  EXPECT_EQ(c.train.max_delay, 4);
  EXPECT_EQ(c.train.progress_seconds, 5.0);
  EXPECT_EQ(c.cluster.local_workers, 2);
  EXPECT_EQ(c.cluster.timeout_seconds, 600);
  EXPECT_EQ(c.checkpoint.dir, "");
  EXPECT_EQ(c.checkpoint.every_seconds, 300.0);
  EXPECT_EQ(c.output.dir, "runs/small");
  // Everything but the given keys equals the struct defaults.
  Config expected;
  expected.data.train = {"train.txt"};
  expected.output.dir = "runs/small";
  EXPECT_TRUE(SameConfig(c, expected));
  EXPECT_FALSE(SameConfig(c, d));  // the helper does see differences
}

TEST(ConfigTest, EmptySectionsAreAllowed) {
  const Config c = Parse(std::string(kMinimal) + "model:\ntrain:  # nothing here yet\n");
  EXPECT_EQ(c.model.k, 8);
}

TEST(ConfigTest, FullConfigRoundTrips) {
  const std::string yaml = R"(
data:
  train: [a.csv, "dir/b*.csv"]
  test: t.csv
  format: csv
  hash_bits: 24
  csv:
    label: clicked
    numeric: [age, "price"]
    categorical: [city, "null"]
    ignore: id
    delimiter: "\t"
    transform: log_bucket
  on_error: fail
  normalize: instance
model:
  k: 16
  loss: squared
  init_std: 0.001
  l2_w: 1e-6
  l2_v: 0.1
  min_count: 3
optimizer:
  name: adam
  lr: 0.0123456789
  beta1: 0.8
  beta2: 0.99
  eps: 1e-7
  clip_gradient: 2.5
  gradient: sum
train:
  epochs: 3
  batch_size: 512
  consistency: async
  max_delay: 7
  seed: 18446744073709551615
  progress_seconds: 0.25
cluster:
  servers: 4
  local_servers: 3
  local_workers: 5
  timeout_seconds: 30
checkpoint:
  dir: ckpt/run 1
  every_seconds: 60.5
output:
  dir: out/run 1
)";
  const Config c = Parse(yaml);
  EXPECT_EQ(c.data.train, (std::vector<std::string>{"a.csv", "dir/b*.csv"}));
  EXPECT_EQ(c.data.test, std::vector<std::string>{"t.csv"});
  EXPECT_EQ(c.data.csv.delimiter, '\t');
  EXPECT_EQ(c.data.csv.categorical, (std::vector<std::string>{"city", "null"}));
  EXPECT_EQ(c.data.csv.transform, NumericTransform::kLogBucket);
  EXPECT_EQ(c.model.l2_w, 1e-6f);
  EXPECT_EQ(c.optimizer.eps, 1e-7f);
  EXPECT_EQ(c.optimizer.clip_gradient, 2.5f);
  EXPECT_EQ(c.optimizer.gradient, GradientScale::kSum);
  EXPECT_EQ(c.data.normalize, Normalize::kInstance);
  EXPECT_EQ(c.train.seed, 18446744073709551615ull);
  EXPECT_EQ(c.output.dir, "out/run 1");

  const std::string emitted = ConfigToYaml(c);
  const Config again = ParseConfig(emitted, "other.yaml", {});
  EXPECT_TRUE(SameConfig(c, again)) << emitted;
  EXPECT_EQ(ConfigToYaml(again), emitted);
  // Block style, sections in order, reals in short form.
  EXPECT_NE(emitted.find("model:\n  k: 16\n"), std::string::npos) << emitted;
  EXPECT_NE(emitted.find("lr: 0.012345679\n"), std::string::npos) << emitted;
  const char* sections[] = {
      "data:", "model:", "optimizer:", "train:", "cluster:", "checkpoint:", "output:"};
  std::size_t last = 0;
  for (const char* s : sections) {
    const std::size_t at = emitted.find(std::string("\n") + s);
    if (std::string(s) == "data:") {
      EXPECT_EQ(emitted.rfind("data:", 0), 0u) << emitted;
      continue;
    }
    ASSERT_NE(at, std::string::npos) << s;
    EXPECT_GT(at, last) << s;
    last = at;
  }
}

// Keys that do not apply to the chosen optimizer/consistency/format are left out, so that
// the emitted text parses again.
TEST(ConfigTest, RoundTripOmitsKeysThatDoNotApply) {
  for (const char* optimizer : {"sgd", "adagrad", "adam", "ftrl"}) {
    for (const char* consistency : {"async", "bsp"}) {
      const Config c = Parse(std::string(kMinimal) + "optimizer: {name: " + optimizer +
                             "}\ntrain: {consistency: " + consistency + "}\n");
      const std::string emitted = ConfigToYaml(c);
      Config again;
      ASSERT_NO_THROW(again = Parse(emitted)) << emitted;
      EXPECT_TRUE(SameConfig(c, again)) << emitted;
      EXPECT_EQ(emitted.find("csv:"), std::string::npos);
      EXPECT_EQ(emitted.find("max_delay") != std::string::npos,
                std::string(consistency) == "async");
      EXPECT_EQ(emitted.find("beta1") != std::string::npos, std::string(optimizer) == "adam");
      EXPECT_EQ(emitted.find("l1:") != std::string::npos, std::string(optimizer) == "ftrl");
    }
  }
  const Config ftrl =
      Parse(std::string(kMinimal) + "optimizer: {name: ftrl, lr: 0.1, l1: 0.5, ftrl_beta: 2}\n");
  EXPECT_TRUE(SameConfig(ftrl, Parse(ConfigToYaml(ftrl))));
}

TEST(ConfigTest, DataSectionRoundTrips) {
  const Config c = Parse(
      "data:\n  train: [x.csv]\n  test: [y.csv]\n  format: csv\n  hash_bits: 20\n"
      "  csv: {label: y, numeric: [a], categorical: [b], delimiter: ';', transform: none}\n");
  const std::string text = DataSectionToYaml(c.data);
  EXPECT_EQ(text.rfind("data:\n", 0), 0u) << text;
  EXPECT_EQ(text.find("model:"), std::string::npos);
  const DataConfig d = ParseDataSection(text);
  EXPECT_EQ(d.train, c.data.train);
  EXPECT_EQ(d.test, c.data.test);
  EXPECT_EQ(d.format, DataFormat::kCsv);
  EXPECT_EQ(d.hash_bits, 20);
  EXPECT_EQ(d.csv.label, "y");
  EXPECT_EQ(d.csv.numeric, std::vector<std::string>{"a"});
  EXPECT_EQ(d.csv.categorical, std::vector<std::string>{"b"});
  EXPECT_EQ(d.csv.delimiter, ';');
  EXPECT_EQ(d.csv.transform, NumericTransform::kNone);
  EXPECT_EQ(DataSectionToYaml(d), text);
  // The data section alone is strict too.
  EXPECT_THROW(ParseDataSection(text + "model: {k: 4}\n"), ConfigError);
  EXPECT_THROW(ParseDataSection("data:\n  train: a\n"), ConfigError);  // no format
  EXPECT_THROW(ParseDataSection("data:\n  train: a\n  format: csv\n"), ConfigError);
  // The training files are not needed to restore a pipeline.
  DataConfig no_files;
  no_files.format = DataFormat::kCriteo;
  EXPECT_EQ(ParseDataSection(DataSectionToYaml(no_files)).format, DataFormat::kCriteo);
  EXPECT_TRUE(ParseDataSection("data:\n  format: libffm\n").train.empty());
}

TEST(ConfigTest, UnknownKeySuggestsNearestWithPosition) {
  EXPECT_EQ(ErrorOf("data:\n  train: a\n  formt: libsvm\n"),
            "exp.yaml:3:3: unknown key 'data.formt' (did you mean 'data.format'?)");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "optimiser:\n  lr: 0.1\n"),
            "exp.yaml:4:1: unknown key 'optimiser' (did you mean 'optimizer'?)");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "train: {batchsize: 8}\n"),
            "exp.yaml:4:9: unknown key 'train.batchsize' (did you mean 'train.batch_size'?)");
  // Nothing close: no suggestion.
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "model:\n  learning_rate: 0.1\n"),
            "exp.yaml:5:3: unknown key 'model.learning_rate'");
  // Nested csv block.
  EXPECT_EQ(ErrorOf("data:\n  train: a\n  format: csv\n  csv:\n    lable: y\n"),
            "exp.yaml:5:5: unknown key 'data.csv.lable' (did you mean 'data.csv.label'?)");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "model: {k: 8, k: 9}\n"),
            "exp.yaml:4:15: duplicate key 'model.k'");
}

TEST(ConfigTest, WrongTypes) {
  const std::string base = kMinimal;
  EXPECT_EQ(ErrorOf(base + "model:\n  k: eight\n"),
            "exp.yaml:5:6: model.k: expected an integer in 1..1024, got 'eight'");
  EXPECT_EQ(ErrorOf(base + "model:\n  k: 8.5\n"),
            "exp.yaml:5:6: model.k: expected an integer in 1..1024, got '8.5'");
  EXPECT_EQ(ErrorOf(base + "model:\n  k: \"8\"\n"),
            "exp.yaml:5:6: model.k: expected an integer in 1..1024, got the quoted string '8'");
  EXPECT_EQ(ErrorOf(base + "model:\n  k: {a: 1}\n"),
            "exp.yaml:5:6: model.k: expected an integer in 1..1024, got a mapping");
  EXPECT_EQ(ErrorOf(base + "model:\n  k:\n"),
            "exp.yaml:5:3: model.k: expected an integer in 1..1024, got nothing (null)");
  EXPECT_EQ(ErrorOf(base + "optimizer: {lr: fast}\n"),
            "exp.yaml:4:17: optimizer.lr: expected a finite number > 0, got 'fast'");
  EXPECT_EQ(ErrorOf(base + "model: 5\n"),
            "exp.yaml:4:8: model: expected a mapping with keys k, loss, init_std, l2_w, l2_v, "
            "min_count, sides, kind, fields, got '5'");
  EXPECT_EQ(ErrorOf("data:\n  train: [a, [b]]\n  format: libsvm\n"),
            "exp.yaml:2:14: data.train[1]: expected a path or glob, got a list");
  EXPECT_EQ(ErrorOf("data:\n  train: {a: 1}\n  format: libsvm\n"),
            "exp.yaml:2:10: data.train: expected a path or glob or a list of them, got a mapping");
  EXPECT_EQ(ErrorOf("data:\n  train: a\n  format: [libsvm]\n"),
            "exp.yaml:3:11: data.format: expected one of libsvm, libffm, criteo, csv, got a list");
  EXPECT_EQ(ErrorOf(base + "train: {seed: -1}\n"),
            "exp.yaml:4:15: train.seed: '-1' is out of range (allowed: integers in "
            "0..18446744073709551615)");
}

TEST(ConfigTest, NotAMappingEmptyAndSyntax) {
  EXPECT_EQ(ErrorOf("- a\n- b\n"),
            "exp.yaml:1:1: the config must be a mapping of sections (data, model, optimizer, "
            "train, cluster, checkpoint, output), got a list");
  EXPECT_EQ(ErrorOf("just text\n"),
            "exp.yaml:1:1: the config must be a mapping of sections (data, model, optimizer, "
            "train, cluster, checkpoint, output), got 'just text'");
  const std::string empty =
      "exp.yaml: the config is empty (it needs at least data.train and "
      "data.format)";
  EXPECT_EQ(ErrorOf(""), empty);
  EXPECT_EQ(ErrorOf("# only a comment\n"), empty);
  EXPECT_EQ(ErrorOf("---\n"), empty);
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "---\nmodel: {k: 2}\n"),
            "exp.yaml:5:1: more than one YAML document; a config is a single document");
  const std::string syntax = ErrorOf("data:\n  train: [a, b\n  format: libsvm\n");
  EXPECT_EQ(syntax.rfind("exp.yaml:", 0), 0u) << syntax;
  EXPECT_NE(syntax.find("invalid YAML"), std::string::npos) << syntax;
  // A ',' outside a flow collection made yaml-cpp's LoadAll loop forever (found by fuzzing).
  EXPECT_EQ(ErrorOf(",a\n"), "exp.yaml:1:1: invalid YAML: unexpected ','");
  EXPECT_EQ(ErrorOf("- a\n,\n"), "exp.yaml:2:1: invalid YAML: unexpected ','");
}

TEST(ConfigTest, MissingRequiredKeys) {
  EXPECT_EQ(ErrorOf("model: {k: 4}\n"),
            "exp.yaml: data.train is required (a path or glob, or a list of them)");
  EXPECT_EQ(ErrorOf("data:\n  format: libsvm\n"),
            "exp.yaml:1:1: data.train is required (a path or glob, or a list of them)");
  EXPECT_EQ(ErrorOf("data:\n  train: []\n  format: libsvm\n"),
            "exp.yaml:1:1: data.train is required (a path or glob, or a list of them)");
  EXPECT_EQ(ErrorOf("data:\n  train: a\n"),
            "exp.yaml:1:1: data.format is required (one of libsvm, libffm, criteo, csv)");
  EXPECT_EQ(ErrorOf("data:\n  train: ['']\n  format: libsvm\n"),
            "exp.yaml:2:11: data.train[0]: empty path or glob");
}

struct RangeCase {
  const char* yaml;      // appended to kMinimal
  const char* expected;  // substring of the message
};

TEST(ConfigTest, RangesNameKeyValueAndAllowedRange) {
  const RangeCase cases[] = {
      {"model: {k: 0}", "model.k: '0' is out of range (allowed: integers in 1..1024)"},
      {"model: {k: 1025}", "model.k: '1025' is out of range (allowed: integers in 1..1024)"},
      {"model: {k: 99999999999999999999}", "model.k: '99999999999999999999' is out of range"},
      {"model: {init_std: -0.1}",
       "model.init_std: '-0.1' is out of range (allowed: finite "
       "numbers >= 0)"},
      {"model: {l2_w: .inf}", "model.l2_w: '.inf' is out of range"},
      {"model: {l2_v: nan}", "model.l2_v: 'nan' is out of range"},
      {"model: {min_count: -1}",
       "model.min_count: '-1' is out of range (allowed: integers in "
       "0..4294967295)"},
      {"data: {hash_bits: 65}",
       "data.hash_bits: '65' is out of range (allowed: integers in "
       "0..64)"},
      {"optimizer: {lr: 0}", "optimizer.lr: '0' is out of range (allowed: finite numbers > 0)"},
      {"optimizer: {lr: 1e40}", "optimizer.lr: '1e40' is out of range"},
      {"optimizer: {clip_gradient: -1}",
       "optimizer.clip_gradient: '-1' is out of range (allowed: finite numbers >= 0)"},
      {"optimizer: {clip_gradient: .inf}", "optimizer.clip_gradient: '.inf' is out of range"},
      {"optimizer: {clip_gradient: [1]}", "optimizer.clip_gradient"},
      {"optimizer: {name: adam, beta1: 1}",
       "optimizer.beta1: '1' is out of range (allowed: finite numbers in [0, 1))"},
      {"optimizer: {name: adam, beta2: -0.5}", "optimizer.beta2: '-0.5' is out of range"},
      {"optimizer: {eps: 0}", "optimizer.eps: '0' is out of range (allowed: finite numbers > 0)"},
      {"optimizer: {name: ftrl, l1: -1}", "optimizer.l1: '-1' is out of range"},
      {"optimizer: {name: ftrl, ftrl_beta: -1}", "optimizer.ftrl_beta: '-1' is out of range"},
      {"train: {epochs: 0}",
       "train.epochs: '0' is out of range (allowed: integers in "
       "1..1000000)"},
      {"train: {batch_size: 10000001}", "train.batch_size: '10000001' is out of range"},
      {"train: {max_delay: 1025}",
       "train.max_delay: '1025' is out of range (allowed: integers "
       "in 1..1024)"},
      {"train: {progress_seconds: 0}", "train.progress_seconds: '0' is out of range"},
      {"cluster: {servers: 0}", "cluster.servers: '0' is out of range (allowed: integers >= 1)"},
      {"cluster: {local_servers: 65}",
       "cluster.local_servers: '65' is out of range (allowed: "
       "integers in 1..64)"},
      {"cluster: {local_workers: 257}", "cluster.local_workers: '257' is out of range"},
      {"cluster: {timeout_seconds: 0}", "cluster.timeout_seconds: '0' is out of range"},
      {"checkpoint: {dir: c, every_seconds: -1}", "checkpoint.every_seconds: '-1' is out of range"},
  };
  for (const RangeCase& c : cases) {
    // Sections given twice would be duplicate keys: merge data into the minimal config.
    std::string yaml = std::string(c.yaml).rfind("data:", 0) == 0
                           ? "data: {train: a, format: libsvm, hash_bits: 65}\n"
                           : std::string(kMinimal) + c.yaml + "\n";
    const std::string message = ErrorOf(yaml);
    EXPECT_NE(message.find(c.expected), std::string::npos) << c.yaml << " -> " << message;
    EXPECT_EQ(message.rfind("exp.yaml:", 0), 0u) << message;
  }
  // Boundary values are accepted.
  const Config c = Parse(std::string(kMinimal) +
                         "model: {k: 1024, init_std: 0, min_count: 4294967295}\n"
                         "optimizer: {name: adam, beta1: 0, beta2: 0.5}\n"
                         "train: {epochs: 1000000, batch_size: 10000000, max_delay: 1024}\n"
                         "cluster: {local_servers: 64, local_workers: 256, servers: 100000}\n");
  EXPECT_EQ(c.model.k, 1024);
  EXPECT_EQ(c.model.min_count, 4294967295u);
  EXPECT_EQ(Parse("data: {train: a, format: libsvm, hash_bits: 64}").data.hash_bits, 64);
}

TEST(ConfigTest, EnumsListAllowedValues) {
  EXPECT_EQ(ErrorOf("data:\n  train: a\n  format: csvv\n"),
            "exp.yaml:3:11: data.format: unknown value 'csvv' (allowed: libsvm, libffm, criteo, "
            "csv); did you mean 'csv'?");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "optimizer: {name: rmsprop}\n"),
            "exp.yaml:4:19: optimizer.name: unknown value 'rmsprop' (allowed: sgd, adagrad, adam, "
            "ftrl)");
  const std::string base = kMinimal;
  EXPECT_NE(ErrorOf(base + "model: {loss: hinge}").find("(allowed: logistic, squared)"),
            std::string::npos);
  EXPECT_NE(ErrorOf(base + "train: {consistency: ssp}").find("(allowed: async, bsp)"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf("data: {train: a, format: libsvm, on_error: warn}").find("(allowed: skip, fail)"),
      std::string::npos);
  EXPECT_NE(ErrorOf("data: {train: a, format: csv, csv: {label: y, transform: log}}")
                .find("(allowed: standardize, log_bucket, none)"),
            std::string::npos);
  for (const char* name : {"libsvm", "libffm", "criteo"}) {
    EXPECT_STREQ(ToString(Parse(std::string("data: {train: a, format: ") + name + "}").data.format),
                 name);
  }
}

TEST(ConfigTest, CrossKeyRules) {
  const std::string base = kMinimal;
  EXPECT_EQ(ErrorOf(base + "optimizer:\n  name: sgd\n  beta1: 0.9\n"),
            "exp.yaml:6:3: optimizer.beta1 applies only to optimizer.name: adam (optimizer.name "
            "is sgd)");
  EXPECT_EQ(ErrorOf(base + "optimizer:\n  beta2: 0.9\n"),
            "exp.yaml:5:3: optimizer.beta2 applies only to optimizer.name: adam (optimizer.name "
            "is adagrad, the default)");
  EXPECT_NE(ErrorOf(base + "optimizer: {name: sgd, eps: 1e-6}")
                .find("optimizer.eps applies only to optimizer.name: adagrad or adam"),
            std::string::npos);
  EXPECT_NE(ErrorOf(base + "optimizer: {name: ftrl, eps: 1e-6}").find("optimizer.eps applies"),
            std::string::npos);
  EXPECT_NE(ErrorOf(base + "optimizer: {name: adam, l1: 0}")
                .find("optimizer.l1 applies only to optimizer.name: ftrl"),
            std::string::npos);
  EXPECT_NE(ErrorOf(base + "optimizer: {ftrl_beta: 1}")
                .find("optimizer.ftrl_beta applies only to optimizer.name: ftrl"),
            std::string::npos);
  EXPECT_EQ(ErrorOf(base + "train:\n  consistency: bsp\n  max_delay: 4\n"),
            "exp.yaml:6:3: train.max_delay applies only to train.consistency: async (bsp runs "
            "one update per step)");
  EXPECT_EQ(ErrorOf("data:\n  train: a\n  format: libsvm\n  csv: {label: y}\n"),
            "exp.yaml:4:3: data.csv applies only to data.format: csv (data.format is libsvm)");
  EXPECT_EQ(ErrorOf("data:\n  train: a\n  format: csv\n"),
            "exp.yaml:3:11: data.format: csv requires data.csv.label (the label column's name)");
  EXPECT_EQ(ErrorOf("data:\n  train: a\n  format: csv\n  csv: {label: y, numeric: [a, y]}\n"),
            "exp.yaml:4:32: data.csv.numeric: column 'y' already has a role in data.csv.label "
            "(each column has exactly one role)");
  EXPECT_NE(ErrorOf("data: {train: a, format: csv, csv: {label: y, delimiter: ', '}}")
                .find("data.csv.delimiter: expected exactly one character"),
            std::string::npos);
  EXPECT_EQ(Parse(base + "checkpoint:\n  dir: ckpt\n  keep: 3\n").checkpoint.keep, 3);
  EXPECT_NE(ErrorOf(base + "checkpoint:\n  dir: c\n  keep: 0\n").find("checkpoint.keep"),
            std::string::npos);
  EXPECT_EQ(ErrorOf(base + "checkpoint:\n  every_seconds: 5\n"),
            "exp.yaml:5:3: checkpoint.every_seconds applies only with checkpoint.dir set (no "
            "checkpoints are written without it)");
  EXPECT_EQ(Parse(base + "train:\n  init_model: m.fmps\n").train.init_model, "m.fmps");
  EXPECT_NE(ErrorOf(base + "optimizer: {name: sgd, initial_accumulator: 1}")
                .find("optimizer.initial_accumulator applies only to optimizer.name: adagrad"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(base + "optimizer: {initial_accumulator: -1}").find("optimizer.initial_accumulator"),
      std::string::npos);
  EXPECT_NE(ErrorOf(base + "optimizer: {gradient: mean}").find("key_mean"), std::string::npos);
  EXPECT_NE(ErrorOf("data: {train: a, format: libsvm, normalize: l2}").find("instance"),
            std::string::npos);
  // The allowed combinations parse.
  EXPECT_EQ(Parse(base + "optimizer: {name: adam, beta1: 0.5, eps: 1e-6}").optimizer.beta1, 0.5f);
  EXPECT_EQ(Parse(base + "optimizer: {initial_accumulator: 0.5}").optimizer.initial_accumulator,
            0.5f);
  EXPECT_EQ(Parse(base + "optimizer: {name: sgd, gradient: sum}").optimizer.gradient,
            GradientScale::kSum);
  EXPECT_EQ(Parse("data: {train: a, format: libsvm, normalize: instance}").data.normalize,
            Normalize::kInstance);
  // A model file's data section without the key (written before it existed): none, not
  // the new default; with the key, as written.
  EXPECT_EQ(ParseDataSection("data:\n  format: libsvm\n").normalize, Normalize::kNone);
  EXPECT_EQ(ParseDataSection("data:\n  format: libsvm\n  normalize: instance\n").normalize,
            Normalize::kInstance);
  EXPECT_EQ(Parse(base + "optimizer: {name: ftrl, l1: 2}").optimizer.l1, 2.0f);
  EXPECT_EQ(Parse(base + "train: {max_delay: 3}").train.max_delay, 3);
  EXPECT_EQ(Parse(base + "checkpoint: {dir: ''}").checkpoint.dir, "");
}

TEST(ConfigTest, OverridesScalarListAndNestedMap) {
  const Config c = Parse(kMinimal, {"model.k=16", "optimizer.lr=0.5", "data.train=[x, y]",
                                    "optimizer.name=adam", "optimizer.beta1=0.7", "model.k=32"});
  EXPECT_EQ(c.model.k, 32);  // applied in order
  EXPECT_EQ(c.optimizer.lr, 0.5f);
  EXPECT_EQ(c.data.train, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(c.optimizer.beta1, 0.7f);
  // Missing sections and intermediate maps are created.
  const Config csv = Parse(kMinimal, {"data.format=csv", "data.csv.label=clicked",
                                      "data.csv.delimiter=;", "cluster.local_workers=4"});
  EXPECT_EQ(csv.data.format, DataFormat::kCsv);
  EXPECT_EQ(csv.data.csv.label, "clicked");
  EXPECT_EQ(csv.data.csv.delimiter, ';');
  EXPECT_EQ(csv.cluster.local_workers, 4);
  // A whole mapping and the output directory.
  const Config m = Parse(kMinimal, {"model={k: 4, loss: squared}", "output.dir=/tmp/x"});
  EXPECT_EQ(m.model.k, 4);
  EXPECT_EQ(m.model.loss, Loss::kSquared);
  EXPECT_EQ(m.output.dir, "/tmp/x");
  // An empty value is the empty string.
  EXPECT_EQ(Parse(kMinimal, {"checkpoint.dir="}).checkpoint.dir, "");
}

TEST(ConfigTest, OverrideErrors) {
  EXPECT_EQ(ErrorOf(kMinimal, {"model.kk=3"}),
            "--set model.kk=3: unknown key 'model.kk' (did you mean 'model.k'?)");
  EXPECT_EQ(ErrorOf(kMinimal, {"modle.k=3"}),
            "--set modle.k=3: unknown key 'modle' (did you mean 'model'?)");
  EXPECT_EQ(ErrorOf(kMinimal, {"model.k=8.5"}),
            "--set model.k=8.5: model.k: expected an integer in 1..1024, got '8.5'");
  EXPECT_EQ(ErrorOf(kMinimal, {"model.k=2000"}),
            "--set model.k=2000: model.k: '2000' is out of range (allowed: integers in 1..1024)");
  EXPECT_EQ(ErrorOf(kMinimal, {"data.train=[a, {b: 1}]"}),
            "--set data.train=[a, {b: 1}]: data.train[1]: expected a path or glob, got a mapping");
  EXPECT_EQ(ErrorOf(kMinimal, {"model={k: 0}"}),
            "--set model={k: 0}: model.k: '0' is out of range (allowed: integers in 1..1024)");
  EXPECT_EQ(ErrorOf(kMinimal, {"optimizer.beta1=0.5"}),
            "--set optimizer.beta1=0.5: optimizer.beta1 applies only to optimizer.name: adam "
            "(optimizer.name is adagrad, the default)");
  EXPECT_EQ(ErrorOf(kMinimal, {"data.csv.label=y"}),
            "--set data.csv.label=y: data.csv applies only to data.format: csv (data.format is "
            "libsvm)");
  // A later override replaces an earlier one, including its blame.
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "model:\n  k: 0\n", {"model.k=4"}), "");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "model:\n  k: 4\n", {"model.k=0", "model.loss=x"}),
            "--set model.k=0: model.k: '0' is out of range (allowed: integers in 1..1024)");
  // Values left in the file keep their line:column.
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "model:\n  k: 0\n", {"model.loss=squared"}),
            "exp.yaml:5:6: model.k: '0' is out of range (allowed: integers in 1..1024)");
  // Malformed overrides.
  EXPECT_EQ(ErrorOf(kMinimal, {"model.k"}),
            "--set model.k: expected KEY=VALUE, e.g. --set optimizer.lr=0.05");
  EXPECT_EQ(ErrorOf(kMinimal, {"=3"}),
            "--set =3: malformed key '' (expected a dotted path such as optimizer.lr)");
  EXPECT_EQ(ErrorOf(kMinimal, {"model..k=3"}),
            "--set model..k=3: malformed key 'model..k' (expected a dotted path such as "
            "optimizer.lr)");
  EXPECT_NE(ErrorOf(kMinimal, {"data.train=[a, b"}).find("--set data.train=[a, b: cannot parse"),
            std::string::npos);
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "model:\n  k:\n", {"model.k.x=3"}),
            "--set model.k.x=3: model.k: expected an integer in 1..1024, got a mapping");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "model: {k: 4}\n", {"model.k.x=3"}),
            "--set model.k.x=3: cannot set model.k.x because model.k is '4', not a mapping");
  EXPECT_EQ(ErrorOf(kMinimal, {"data.format.x=3"}),
            "--set data.format.x=3: cannot set data.format.x because data.format is 'libsvm', "
            "not a mapping");
}

TEST(ConfigTest, OutputDirDefaultsToConfigStem) {
  EXPECT_EQ(ParseConfig(kMinimal, "a/b/criteo.yaml", {}).output.dir, "runs/criteo");
  EXPECT_EQ(ParseConfig(kMinimal, "plain", {}).output.dir, "runs/plain");
  EXPECT_EQ(ParseConfig(kMinimal, "x.v2.yml", {}).output.dir, "runs/x.v2");
  EXPECT_EQ(
      ParseConfig(std::string(kMinimal) + "output: {dir: elsewhere}", "a.yaml", {}).output.dir,
      "elsewhere");
  EXPECT_THROW(ParseConfig(std::string(kMinimal) + "output: {dir: ''}", "a.yaml", {}), ConfigError);
}

TEST(ConfigTest, LoadConfigFromFile) {
  TempDir dir;
  const std::string path = dir.Write("exp1.yaml", std::string(kMinimal) + "model: {k: 3}\n");
  const Config c = LoadConfig(path, {"train.epochs=2"});
  EXPECT_EQ(c.model.k, 3);
  EXPECT_EQ(c.train.epochs, 2);
  EXPECT_EQ(c.output.dir, "runs/exp1");
  // Errors name the file path.
  const std::string bad = dir.Write("bad.yaml", std::string(kMinimal) + "model: {k: x}\n");
  try {
    LoadConfig(bad, {});
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(bad + ":4:12: model.k:", 0), 0u) << e.what();
  }
  EXPECT_THROW(LoadConfig(dir.File("missing.yaml"), {}), IoError);
  EXPECT_THROW(LoadConfig(dir.path(), {}), IoError);  // a directory
}

TEST(ConfigTest, ExpandPathsKeepsPatternOrderAndSortsMatches) {
  TempDir dir;
  for (const char* name : {"b2.txt", "b10.txt", "b1.txt", "a.txt", "c.dat"}) dir.Write(name, "x");
  const std::vector<std::string> got =
      ExpandPaths({dir.File("c.dat"), dir.File("b*.txt"), dir.File("a.txt")}, "data.train");
  const std::vector<std::string> expected = {dir.File("c.dat"), dir.File("b1.txt"),
                                             dir.File("b10.txt"), dir.File("b2.txt"),
                                             dir.File("a.txt")};
  EXPECT_EQ(got, expected);
  EXPECT_TRUE(ExpandPaths({}, "data.test").empty());
}

TEST(ConfigTest, ExpandPathsErrors) {
  TempDir dir;
  dir.Write("a.txt", "x");
  ASSERT_EQ(mkdir(dir.File("sub").c_str(), 0755), 0);
  try {
    ExpandPaths({dir.File("a.txt"), dir.File("z*.txt")}, "data.train");
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "data.train: no file matches '" + dir.File("z*.txt") + "'");
  }
  try {
    ExpandPaths({dir.File("missing.txt")}, "data.test");
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "data.test: no file matches '" + dir.File("missing.txt") + "'");
  }
  try {
    ExpandPaths({dir.File("*")}, "data.train");  // matches a.txt and the directory
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("data.train: '" + dir.File("sub") + "' is a directory"),
              std::string::npos)
        << e.what();
  }
}

// ---- The field table ----------------------------------------------------------------------

// Converts to any member type; counts an aggregate's members (only used unevaluated).
struct AnyMember {
  template <typename T>
  operator T() const;
};

template <typename T, typename... A>
constexpr std::size_t CountMembers() {
  if constexpr (requires { T{A{}..., AnyMember{}}; }) {
    return CountMembers<T, A..., AnyMember>();
  } else {
    return sizeof...(A);
  }
}

// The distinct names directly under `section` ("" = top) among the table's keys.
std::size_t TableChildren(const std::string& section) {
  std::set<std::string> names;
  for (const ConfigField& f : ConfigFields()) {
    const std::string key = f.key;
    if (!section.empty() && key.rfind(section + ".", 0) != 0) continue;
    const std::string rest = section.empty() ? key : key.substr(section.size() + 1);
    names.insert(rest.substr(0, rest.find('.')));
  }
  return names.size();
}

TEST(ConfigTableTest, EveryStructHasOneTableEntryPerMember) {
  EXPECT_EQ(TableChildren(""), CountMembers<Config>());
  EXPECT_EQ(TableChildren("data"), CountMembers<DataConfig>());
  EXPECT_EQ(TableChildren("data.csv"), CountMembers<CsvSpec>());
  EXPECT_EQ(TableChildren("data.negatives"), CountMembers<NegativesConfig>());
  EXPECT_EQ(TableChildren("model.sides"), CountMembers<SidesConfig>());
  EXPECT_EQ(TableChildren("model"), CountMembers<ModelConfig>());
  EXPECT_EQ(TableChildren("optimizer"), CountMembers<OptimizerConfig>());
  EXPECT_EQ(TableChildren("train"), CountMembers<TrainConfig>());
  EXPECT_EQ(TableChildren("cluster"), CountMembers<ClusterConfig>());
  EXPECT_EQ(TableChildren("checkpoint"), CountMembers<CheckpointConfig>());
  EXPECT_EQ(TableChildren("output"), CountMembers<OutputConfig>());
  EXPECT_EQ(CountMembers<CsvSpec>(), 8u);  // the counter itself works
  std::set<std::string> keys;
  for (const ConfigField& f : ConfigFields()) {
    EXPECT_TRUE(keys.insert(f.key).second) << "twice: " << f.key;
    EXPECT_EQ(FindConfigField(f.key), &f);
  }
  EXPECT_EQ(FindConfigField("model.kk"), nullptr);
}

template <typename T>
std::string Text(const T& v) {
  if constexpr (std::is_enum_v<T>) {
    return std::to_string(static_cast<int>(v));
  } else if constexpr (std::is_same_v<T, std::string>) {
    return "'" + v + "'";
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    std::string out;
    for (const std::string& s : v) out += "'" + s + "' ";
    return out;
  } else if constexpr (std::is_same_v<T, char>) {
    return std::string(1, v);
  } else {
    return std::to_string(v);
  }
}

// One key: a non-default value, the overrides that make the key apply, and the struct member
// it must reach (read directly, independently of the table's accessors).
struct Probe {
  std::string key;
  std::string value;
  std::vector<std::string> enable;
  std::function<std::string(const Config&)> member;
};

#define FMPS_PROBE(path, value, ...)                                           \
  Probe {                                                                      \
#path, value, {__VA_ARGS__ }, [](const Config& c) { return Text(c.path); } \
  }

std::vector<Probe> Probes() {
  const std::string csv = "data.format=csv", label = "data.csv.label=lbl";
  return {
      FMPS_PROBE(data.train, "[x.txt, y.txt]"),
      FMPS_PROBE(data.test, "t.txt"),
      FMPS_PROBE(data.format, "criteo"),
      FMPS_PROBE(data.hash_bits, "20"),
      FMPS_PROBE(data.csv.label, "clicked", csv, label),
      FMPS_PROBE(data.csv.numeric, "[n1, n2]", csv, label),
      FMPS_PROBE(data.csv.categorical, "c1", csv, label),
      FMPS_PROBE(data.csv.ignore, "[i1]", csv, label),
      FMPS_PROBE(data.csv.delimiter, ";", csv, label),
      FMPS_PROBE(data.csv.transform, "none", csv, label),
      FMPS_PROBE(data.csv.multi, "[c1]", csv, label, "data.csv.categorical=[c1]"),
      FMPS_PROBE(data.csv.multi_separator, ";", csv, label),
      FMPS_PROBE(data.negatives.per_positive, "2", csv, label, "data.csv.categorical=[u, i]",
                 "data.normalize=none", "model.sides.user=[u]", "model.sides.item=[i]",
                 "data.negatives.per_positive=1", "data.negatives.items=a.csv"),
      FMPS_PROBE(data.negatives.items, "b.csv", csv, label, "data.csv.categorical=[u, i]",
                 "data.normalize=none", "model.sides.user=[u]", "model.sides.item=[i]",
                 "data.negatives.per_positive=1", "data.negatives.items=a.csv"),
      FMPS_PROBE(data.negatives.distribution, "popularity", csv, label,
                 "data.csv.categorical=[u, i]", "data.normalize=none", "model.sides.user=[u]",
                 "model.sides.item=[i]", "data.negatives.per_positive=1",
                 "data.negatives.items=a.csv"),
      FMPS_PROBE(data.negatives.exponent, "0.5", csv, label, "data.csv.categorical=[u, i]",
                 "data.normalize=none", "model.sides.user=[u]", "model.sides.item=[i]",
                 "data.negatives.per_positive=1", "data.negatives.items=a.csv",
                 "data.negatives.distribution=popularity"),
      FMPS_PROBE(data.negatives.seed, "7", csv, label, "data.csv.categorical=[u, i]",
                 "data.normalize=none", "model.sides.user=[u]", "model.sides.item=[i]",
                 "data.negatives.per_positive=1", "data.negatives.items=a.csv"),
      FMPS_PROBE(data.on_error, "fail"),
      FMPS_PROBE(data.normalize, "none"),
      FMPS_PROBE(data.max_bad_fraction, "0.25"),
      FMPS_PROBE(data.valid, "[v1.txt, v2.txt]"),
      FMPS_PROBE(data.valid_fraction, "0.25"),
      FMPS_PROBE(model.k, "16"),
      FMPS_PROBE(model.loss, "squared"),
      FMPS_PROBE(model.init_std, "0.5"),
      FMPS_PROBE(model.l2_w, "0.25"),
      FMPS_PROBE(model.l2_v, "0.125"),
      FMPS_PROBE(model.min_count, "3"),
      FMPS_PROBE(model.fields, "7", "data.format=libffm", "model.kind=ffm", "model.fields=4"),
      FMPS_PROBE(model.sides.user, "[3]", "data.format=libffm", "data.normalize=none",
                 "model.sides.user=[1]", "model.sides.item=[2]"),
      FMPS_PROBE(model.sides.item, "[3]", "data.format=libffm", "data.normalize=none",
                 "model.sides.user=[1]", "model.sides.item=[2]"),
      FMPS_PROBE(optimizer.name, "sgd"),
      FMPS_PROBE(optimizer.lr, "0.5"),
      FMPS_PROBE(optimizer.beta1, "0.5", "optimizer.name=adam"),
      FMPS_PROBE(optimizer.beta2, "0.75", "optimizer.name=adam"),
      FMPS_PROBE(optimizer.eps, "0.001"),
      FMPS_PROBE(optimizer.l1, "0.5", "optimizer.name=ftrl"),
      FMPS_PROBE(optimizer.ftrl_beta, "2", "optimizer.name=ftrl"),
      FMPS_PROBE(optimizer.clip_gradient, "4"),
      FMPS_PROBE(optimizer.gradient, "sum"),
      FMPS_PROBE(optimizer.initial_accumulator, "0.5"),
      FMPS_PROBE(optimizer.rowwise, "true"),
      FMPS_PROBE(train.epochs, "3"),
      FMPS_PROBE(train.batch_size, "64"),
      FMPS_PROBE(train.consistency, "bsp"),
      FMPS_PROBE(train.max_delay, "9"),
      FMPS_PROBE(train.seed, "18446744073709551615"),
      FMPS_PROBE(train.progress_seconds, "0.5"),
      FMPS_PROBE(train.init_model, "m.fmps"),
      FMPS_PROBE(train.early_stop.metric, "logloss", "data.valid_fraction=0.1"),
      FMPS_PROBE(train.early_stop.patience, "7", "data.valid_fraction=0.1",
                 "train.early_stop.metric=auto"),
      FMPS_PROBE(train.early_stop.min_delta, "0.5", "data.valid_fraction=0.1",
                 "train.early_stop.metric=auto"),
      FMPS_PROBE(cluster.servers, "3"),
      FMPS_PROBE(cluster.local_servers, "4"),
      FMPS_PROBE(cluster.local_workers, "5"),
      FMPS_PROBE(cluster.timeout_seconds, "60"),
      FMPS_PROBE(checkpoint.dir, "ck2"),
      FMPS_PROBE(checkpoint.every_seconds, "7.5", "checkpoint.dir=ck"),
      FMPS_PROBE(checkpoint.keep, "5", "checkpoint.dir=ck"),
      FMPS_PROBE(output.dir, "elsewhere"),
  };
}
#undef FMPS_PROBE

TEST(ConfigTableTest, ProbesCoverTheTable) {
  std::set<std::string> table, probed;
  for (const ConfigField& f : ConfigFields()) table.insert(f.key);
  for (const Probe& p : Probes()) probed.insert(p.key);
  probed.insert("model.kind");  // no base config fits both kinds: see ModelKindSwitchesTheModel
  EXPECT_EQ(table, probed);
}

// --set on each key reaches exactly its member and its table entry; the dump of the result
// reads back equal; the checkpoint digest changes exactly for digest fields and the key
// settings exactly for key-setting fields.
TEST(ConfigTableTest, SetEveryKeyDumpReadBackAndDigest) {
  for (const Probe& p : Probes()) {
    SCOPED_TRACE(p.key);
    const ConfigField* field = FindConfigField(p.key);
    ASSERT_NE(field, nullptr);
    const Config base = Parse(kMinimal, p.enable);
    std::vector<std::string> sets = p.enable;
    sets.push_back(p.key + "=" + p.value);
    const Config changed = Parse(kMinimal, sets);
    EXPECT_TRUE(FieldApplies(*field, changed));
    EXPECT_NE(p.member(changed), p.member(base));
    for (const ConfigField& f : ConfigFields()) {
      EXPECT_EQ(FieldValueText(f, changed) != FieldValueText(f, base), f.key == p.key) << f.key;
    }
    const std::string dump = ConfigToYaml(changed);
    Config again;
    ASSERT_NO_THROW(again = Parse(dump)) << dump;
    EXPECT_TRUE(SameConfig(changed, again)) << dump;
    EXPECT_EQ(p.member(again), p.member(changed));
    EXPECT_EQ(ConfigDigest(changed) != ConfigDigest(base), field->digest);
    EXPECT_EQ(ConfigDigest(again), ConfigDigest(changed));
    EXPECT_EQ(KeySettings(changed.data) != KeySettings(base.data), field->key_setting);
  }
}

// The settings a checkpoint depends on: data, model, optimizer, seed and batching; not the
// cluster sizes, epochs, test files, error policy, outputs, warm start or checkpoint settings.
TEST(ConfigTableTest, DigestAndKeySettingFields) {
  std::set<std::string> digest, key_settings;
  for (const ConfigField& f : ConfigFields()) {
    if (f.digest) digest.insert(f.key);
    if (f.key_setting) key_settings.insert(f.key);
  }
  const std::set<std::string> data_keys = {
      "data.format",          "data.hash_bits",          "data.csv.label",     "data.csv.numeric",
      "data.csv.categorical", "data.csv.ignore",         "data.csv.delimiter", "data.csv.transform",
      "data.csv.multi",       "data.csv.multi_separator"};
  std::set<std::string> expected = data_keys;
  for (const char* key : {"data.train",
                          "data.normalize",
                          "data.valid_fraction",
                          "data.negatives.per_positive",
                          "data.negatives.items",
                          "data.negatives.distribution",
                          "data.negatives.exponent",
                          "data.negatives.seed",
                          "model.sides.user",
                          "model.sides.item",
                          "model.k",
                          "model.loss",
                          "model.init_std",
                          "model.l2_w",
                          "model.l2_v",
                          "model.min_count",
                          "model.kind",
                          "model.fields",
                          "optimizer.name",
                          "optimizer.lr",
                          "optimizer.beta1",
                          "optimizer.beta2",
                          "optimizer.eps",
                          "optimizer.l1",
                          "optimizer.ftrl_beta",
                          "optimizer.clip_gradient",
                          "optimizer.gradient",
                          "optimizer.initial_accumulator",
                          "optimizer.rowwise",
                          "train.batch_size",
                          "train.consistency",
                          "train.max_delay",
                          "train.seed"}) {
    expected.insert(key);
  }
  EXPECT_EQ(digest, expected);
  EXPECT_EQ(key_settings, data_keys);
  // A digest is 16 hex digits and ignores keys that do not apply.
  const Config c = Parse(kMinimal);
  EXPECT_EQ(ConfigDigest(c).size(), 16u);
  Config ignored = c;
  ignored.optimizer.l1 = 3;  // sgd: not used
  ignored.optimizer.name = OptimizerName::kSgd;
  Config sgd = c;
  sgd.optimizer.name = OptimizerName::kSgd;
  EXPECT_EQ(ConfigDigest(ignored), ConfigDigest(sgd));
}

// model.kind: fm (the default) against ffm with its fields: reaches the member, is a digest
// field but no key setting, and the dump reads back.
TEST(ConfigTableTest, ModelKindSwitchesTheModel) {
  const std::string libffm = "data:\n  train: train.txt\n  format: libffm\n";
  const Config fm = Parse(libffm);
  const Config ffm = Parse(libffm, {"model.kind=ffm", "model.fields=4"});
  EXPECT_EQ(fm.model.kind, ModelKind::kFm);
  EXPECT_EQ(ffm.model.kind, ModelKind::kFfm);
  EXPECT_EQ(ffm.model.fields, 4);
  EXPECT_NE(ConfigDigest(fm), ConfigDigest(ffm));
  EXPECT_EQ(KeySettings(fm.data), KeySettings(ffm.data));
  const std::string dump = ConfigToYaml(ffm);
  EXPECT_NE(dump.find("  kind: ffm\n  fields: 4\n"), std::string::npos) << dump;
  EXPECT_TRUE(SameConfig(ffm, Parse(dump)));
  EXPECT_EQ(ConfigToYaml(fm).find("fields"), std::string::npos);
}

// Every ffm setting is rejected where it does not apply, naming the key.
TEST(ConfigTest, FfmOptionsRejectedWhereTheyDoNotApply) {
  const std::string libffm = "data:\n  train: a\n  format: libffm\n";
  EXPECT_EQ(ErrorOf(kMinimal + std::string("model:\n  kind: ffm\n  fields: 3\n")),
            "exp.yaml:5:9: model.kind: ffm needs a field for every feature, and data.format "
            "libsvm has none (use libffm, criteo or csv)");
  EXPECT_EQ(ErrorOf(libffm + "model:\n  kind: ffm\n"),
            "exp.yaml:5:9: model.kind: ffm requires model.fields (an integer in 1..4096)");
  EXPECT_EQ(ErrorOf(libffm + "model:\n  fields: 3\n"),
            "exp.yaml:5:3: model.fields applies only to model.kind: ffm (model.kind is fm, the "
            "default)");
  EXPECT_EQ(ErrorOf(libffm + "model:\n  kind: ffm\n  fields: 0\n"),
            "exp.yaml:6:11: model.fields: '0' is out of range (allowed: integers in 1..4096)");
  EXPECT_EQ(ErrorOf("data:\n  train: a\n  format: criteo\n", {"model.kind=ffm", "model.fields=38"}),
            "--set model.fields=38: model.fields: 38 is too few: data.format criteo gives 39 "
            "fields (field ids 0..38)");
  EXPECT_EQ(ErrorOf("data:\n  train: a\n  format: csv\n  csv:\n    label: y\n    numeric: [a]\n"
                    "    categorical: [b, c]\n",
                    {"model.kind=ffm", "model.fields=2"}),
            "--set model.fields=2: model.fields: 2 is too few: data.format csv gives 3 fields "
            "(field ids 0..2)");
  EXPECT_EQ(Parse("data:\n  train: a\n  format: criteo\n", {"model.kind=ffm", "model.fields=39"})
                .model.fields,
            39);
  EXPECT_EQ(ErrorOf(libffm + "model:\n  kind: fm2\n"),
            "exp.yaml:5:9: model.kind: unknown value 'fm2' (allowed: fm, ffm); did you mean 'fm'?");
}

// optimizer.gradient: auto (the default) scales adagrad's pushes by sqrt(count) and the other
// optimizers' by the count; an explicit value holds for every optimizer.
TEST(ConfigTest, GradientAutoResolvesPerOptimizer) {
  const std::string base = kMinimal;
  const Config def = Parse(base);
  EXPECT_EQ(def.optimizer.gradient, GradientScale::kAuto);
  EXPECT_EQ(EffectiveGradient(def.optimizer), GradientScale::kKeySqrt);
  for (const char* name : {"sgd", "ftrl", "adam"}) {
    const Config c = Parse(base + "optimizer: {name: " + name + "}");
    EXPECT_EQ(EffectiveGradient(c.optimizer), GradientScale::kKeyMean) << name;
  }
  EXPECT_EQ(EffectiveGradient(Parse(base + "optimizer: {gradient: key_mean}").optimizer),
            GradientScale::kKeyMean);
  EXPECT_EQ(EffectiveGradient(Parse(base + "optimizer: {name: sgd, gradient: key_sqrt}").optimizer),
            GradientScale::kKeySqrt);
  EXPECT_EQ(EffectiveGradient(Parse(base + "optimizer: {gradient: sum}").optimizer),
            GradientScale::kSum);
}

// optimizer.rowwise: a bool, adagrad only (rejected naming the key with every other
// optimizer), a digest field, listed by --explain.
TEST(ConfigTest, RowwiseIsAnAdagradBoolean) {
  const std::string base = kMinimal;
  EXPECT_FALSE(Parse(base).optimizer.rowwise);
  EXPECT_TRUE(Parse(base + "optimizer: {rowwise: true}").optimizer.rowwise);
  EXPECT_TRUE(Parse(base, {"optimizer.rowwise=true"}).optimizer.rowwise);
  for (const char* name : {"sgd", "adam", "ftrl"}) {
    EXPECT_NE(ErrorOf(base + "optimizer: {name: " + name + ", rowwise: true}")
                  .find(std::string("optimizer.rowwise applies only to optimizer.name: adagrad "
                                    "(optimizer.name is ") +
                        name + ")"),
              std::string::npos)
        << name;
  }
  EXPECT_NE(ErrorOf(base + "optimizer: {rowwise: yes}")
                .find("optimizer.rowwise: expected true or "
                      "false"),
            std::string::npos);
  const Config rowwise = Parse(base, {"optimizer.rowwise=true"});
  EXPECT_NE(ConfigDigest(rowwise), ConfigDigest(Parse(base)));
  // At its default the key stays out of the digest, so checkpoints written before it existed
  // still resume: the digest below is the one such a checkpoint's MANIFEST carries for this
  // config (written by fmps before optimizer.rowwise).
  const std::string before =
      "data:\n  train: train.txt\n  format: libsvm\n"
      "checkpoint:\n  dir: ckpt\noutput:\n  dir: out\n";
  EXPECT_EQ(ConfigDigest(Parse(before)), "69a0513b3d7d14f2");
  EXPECT_EQ(ConfigDigest(Parse(before, {"optimizer.rowwise=false"})), "69a0513b3d7d14f2");
  EXPECT_NE(ConfigDigest(Parse(before, {"optimizer.rowwise=true"})), "69a0513b3d7d14f2");
  EXPECT_NE(ConfigToYaml(rowwise).find("  rowwise: true\n"), std::string::npos);
  EXPECT_NE(ExplainConfig().find("\noptimizer.rowwise: true or false; default false; applies only "
                                 "to optimizer.name: adagrad; digest\n"),
            std::string::npos);
}

TEST(ConfigTableTest, ExplainListsEveryKeyWithDefaultAndCondition) {
  const std::string text = ExplainConfig();
  for (const ConfigField& f : ConfigFields()) {
    const std::size_t at = text.find(std::string("\n") + f.key + ": ");
    ASSERT_NE(at, std::string::npos) << f.key;
    const std::string line = text.substr(at + 1, text.find('\n', at + 1) - at - 1);
    if (f.presence == Presence::kOptional) {
      EXPECT_NE(line.find("; default "), std::string::npos) << line;
    } else {
      EXPECT_NE(line.find("; required"), std::string::npos) << line;
    }
    EXPECT_EQ(line.find("applies only") != std::string::npos, f.applies != nullptr) << line;
  }
  EXPECT_NE(text.find("\nmodel.k: integer in 1..1024; default 8; digest\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\noptimizer.beta1: finite number in [0, 1); default 0.9; applies only to "
                      "optimizer.name: adam; digest\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\noutput.dir: non-empty string; default runs/<config file name without "
                      "extension>\n"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace fmps
