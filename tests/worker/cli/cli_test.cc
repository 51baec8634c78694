// The fmps command line, run as a user would: exit codes, messages, files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "common/config/config.h"
#include "common/config/config_table.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::FmpsBinary;
using testing::JsonNumber;
using testing::Lines;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;

TEST(CliTest, HelpVersionAndUnknownCommand) {
  std::string out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " --help", &out), 0);
  EXPECT_NE(out.find("fmps train"), std::string::npos);
  EXPECT_EQ(RunCommand(FmpsBinary() + " --version", &out), 0);
  EXPECT_EQ(out.rfind("fmps ", 0), 0u);
  EXPECT_EQ(RunCommand(FmpsBinary() + " frobnicate", &out), 2);
  EXPECT_NE(out.find("unknown command 'frobnicate'"), std::string::npos);
  EXPECT_EQ(RunCommand(FmpsBinary(), &out), 2);
}

TEST(CliTest, ShippedConfigsValidate) {
  for (const auto& entry : std::filesystem::directory_iterator(FMPS_SOURCE_DIR "/configs")) {
    std::string out;
    EXPECT_EQ(RunCommand(FmpsBinary() + " check " + entry.path().string(), &out), 0)
        << entry.path() << ": " << out;
    EXPECT_NE(out.find("data:"), std::string::npos);
  }
}

TEST(CliTest, CheckReportsKeyAndLine) {
  TempDir dir;
  std::string cfg = dir.Write("bad.yaml", "data:\n  train: x\n  format: libsvm\nmodel:\n  k: -3\n");
  std::string out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " check " + cfg, &out), 2);
  EXPECT_NE(out.find("model.k"), std::string::npos) << out;
  EXPECT_NE(out.find("5:"), std::string::npos) << out;
  EXPECT_EQ(Lines(out).size(), 1u) << out;
  // --set overrides are applied and printed.
  std::string good = dir.Write("good.yaml", "data:\n  train: x\n  format: libsvm\n");
  EXPECT_EQ(RunCommand(FmpsBinary() + " check " + good + " --set model.k=16", &out), 0) << out;
  EXPECT_NE(out.find("k: 16"), std::string::npos) << out;
}

// `fmps check --explain`: every table key on its own line with its type, default (or
// "required") and, for conditional keys, when it applies; no config needed.
TEST(CliTest, CheckExplainListsEveryKeyWithItsDefault) {
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " check --explain", &out), 0) << out;
  const Config defaults;
  for (const ConfigField& f : ConfigFields()) {
    const std::size_t at = out.find(std::string("\n") + f.key + ": ");
    ASSERT_NE(at, std::string::npos) << f.key << " missing in:\n" << out;
    EXPECT_EQ(out.find(std::string("\n") + f.key + ": ", at + 1), std::string::npos) << f.key;
    const std::string line = out.substr(at + 1, out.find('\n', at + 1) - at - 1);
    const std::string default_text =
        f.default_text != nullptr ? f.default_text : FieldValueText(f, defaults);
    if (f.presence == Presence::kOptional) {
      EXPECT_NE(line.find("; default " + default_text), std::string::npos) << line;
    } else {
      EXPECT_NE(line.find("; required"), std::string::npos) << line;
    }
    if (f.applies != nullptr) {
      EXPECT_NE(line.find(std::string("; applies only ") + f.applies->text), std::string::npos)
          << line;
    }
  }
  EXPECT_NE(out.find("\ntrain.max_delay: integer in 1..1024; default 4; applies only to "
                     "train.consistency: async; digest\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("\ndata.csv.delimiter: one character (not a line break); default \",\""),
            std::string::npos)
      << out;
  // --explain describes the keys, not a config.
  EXPECT_EQ(RunCommand(FmpsBinary() + " check --explain x.yaml", &out), 2);
  EXPECT_NE(out.find("--explain takes no CONFIG.yaml"), std::string::npos) << out;
}

TEST(CliTest, SynthTrainPredictEvalExport) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " synth --out " + dir.File("d") +
                           " --rows 50000 --test-rows 5000 --fields 10 --vocab 500 --k 4 --seed 9",
                       &out),
            0)
      << out;
  const std::string meta = ReadFile(dir.File("d/meta.json"));
  for (const char* key : {"rows", "test_rows", "fields", "vocab", "k", "seed", "positive_rate",
                          "bayes_logloss_test", "bayes_auc_test"}) {
    EXPECT_FALSE(std::isnan(JsonNumber(meta, key))) << key << " in " << meta;
  }
  EXPECT_EQ(JsonNumber(meta, "rows"), 50000);
  const double bayes = JsonNumber(meta, "bayes_logloss_test");
  EXPECT_GT(bayes, 0.2);
  EXPECT_LT(bayes, 0.69);
  const double rate = JsonNumber(meta, "positive_rate");
  EXPECT_GT(rate, 0.15);
  EXPECT_LT(rate, 0.35);
  EXPECT_EQ(Lines(ReadFile(dir.File("d/train.libsvm"))).size(), 50000u);

  std::string cfg = dir.Write("exp.yaml", "data:\n  train: " + dir.File("d/train.libsvm") +
                                              "\n  test: " + dir.File("d/test.libsvm") +
                                              "\n  format: libsvm\nmodel:\n  k: 4\n"
                                              "train:\n  progress_seconds: 0.2\noutput:\n  dir: " +
                                              dir.File("run") + "\n");
  ASSERT_EQ(RunCommand(FmpsBinary() + " train " + cfg + " --set train.epochs=2", &out), 0) << out;
  EXPECT_NE(out.find("test_logloss"), std::string::npos) << out;
  const std::string summary = ReadFile(dir.File("run/summary.json"));
  EXPECT_EQ(JsonNumber(summary, "rows_trained"), 100000);
  EXPECT_EQ(JsonNumber(summary, "epochs"), 2);
  const double test_logloss = JsonNumber(summary, "test_logloss");
  EXPECT_LT(test_logloss, bayes * 1.15);
  EXPECT_NE(ReadFile(dir.File("run/config.yaml")).find("epochs: 2"), std::string::npos);

  // predict: one probability per test line, matching the final evaluation's logloss.
  const std::string model = dir.File("run/model.fmps");
  ASSERT_EQ(RunCommand(FmpsBinary() + " predict --model " + model + " --data " +
                           dir.File("d/test.libsvm") + " --out " + dir.File("p.txt"),
                       &out),
            0)
      << out;
  const auto probs = Lines(ReadFile(dir.File("p.txt")));
  const auto test_lines = Lines(ReadFile(dir.File("d/test.libsvm")));
  ASSERT_EQ(probs.size(), test_lines.size());
  double total = 0.0;
  for (std::size_t i = 0; i < probs.size(); ++i) {
    const double p = std::stod(probs[i]);
    ASSERT_GT(p, 0.0);
    ASSERT_LT(p, 1.0);
    const bool y = test_lines[i][0] == '1';
    total -= y ? std::log(p) : std::log(1 - p);
  }
  EXPECT_NEAR(total / probs.size(), test_logloss, 1e-6);

  // eval: JSON with rows, logloss, auc equal to the training job's final evaluation.
  ASSERT_EQ(RunCommand(FmpsBinary() + " eval --model " + model + " --data " +
                           dir.File("d/test.libsvm") + " 2>/dev/null",
                       &out),
            0)
      << out;
  EXPECT_EQ(JsonNumber(out, "rows"), 5000);
  EXPECT_NEAR(JsonNumber(out, "logloss"), test_logloss, 1e-6);
  EXPECT_NEAR(JsonNumber(out, "auc"), JsonNumber(summary, "test_auc"), 1e-6);

  // export: header comment, bias line, then one line per key with 1 + k numbers.
  ASSERT_EQ(
      RunCommand(FmpsBinary() + " export --model " + model + " --out " + dir.File("m.txt"), &out),
      0)
      << out;
  const auto lines = Lines(ReadFile(dir.File("m.txt")));
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines[0][0], '#');
  EXPECT_EQ(lines[1].rfind("bias ", 0), 0u);
  EXPECT_EQ(lines.size() - 2, static_cast<std::size_t>(JsonNumber(summary, "num_keys")));
  std::istringstream row(lines[2]);
  std::vector<std::string> fields;
  std::string f;
  while (row >> f) fields.push_back(f);
  EXPECT_EQ(fields.size(), 1u + 1u + 4u);
}

// data.normalize: instance is recorded in model.fmps and applied by eval: eval of the trained
// model gives the training run's final test metrics, and a copy of the test file with every
// value tripled (the same rows after normalization) gives exactly the same ones.
TEST(CliTest, EvalAppliesTheModelsInstanceNormalization) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " synth --out " + dir.File("d") +
                           " --rows 20000 --test-rows 2000 --fields 6 --vocab 300 --k 4 --seed 3",
                       &out),
            0)
      << out;
  std::string tripled;
  for (std::string line : Lines(ReadFile(dir.File("d/test.libsvm")))) {
    for (std::size_t at = line.find(":1"); at != std::string::npos; at = line.find(":1", at)) {
      line[at + 1] = '3';  // synth writes every value as 1
    }
    tripled += line + "\n";
  }
  const std::string test3 = dir.Write("test3.libsvm", tripled);
  const std::string cfg =
      dir.Write("exp.yaml", "data:\n  train: " + dir.File("d/train.libsvm") +
                                "\n  test: " + dir.File("d/test.libsvm") +
                                "\n  format: libsvm\n  normalize: instance\nmodel:\n  k: 4\n"
                                "output:\n  dir: " +
                                dir.File("run") + "\n");
  ASSERT_EQ(RunCommand(FmpsBinary() + " train " + cfg, &out), 0) << out;
  const std::string summary = ReadFile(dir.File("run/summary.json"));
  EXPECT_NE(ReadFile(dir.File("run/config.yaml")).find("normalize: instance"), std::string::npos);
  std::string orig, scaled;
  const std::string eval = FmpsBinary() + " eval --model " + dir.File("run/model.fmps");
  ASSERT_EQ(RunCommand(eval + " --data " + dir.File("d/test.libsvm") + " 2>/dev/null", &orig), 0)
      << orig;
  ASSERT_EQ(RunCommand(eval + " --data " + test3 + " 2>/dev/null", &scaled), 0) << scaled;
  EXPECT_NEAR(JsonNumber(orig, "logloss"), JsonNumber(summary, "test_logloss"), 1e-6);
  EXPECT_NEAR(JsonNumber(orig, "auc"), JsonNumber(summary, "test_auc"), 1e-6);
  EXPECT_NEAR(JsonNumber(scaled, "logloss"), JsonNumber(orig, "logloss"), 1e-6);
  EXPECT_EQ(JsonNumber(scaled, "auc"), JsonNumber(orig, "auc"));
}

TEST(CliTest, TrainErrorsAreOneLineAndNonZero) {
  TempDir dir;
  std::string cfg =
      dir.Write("exp.yaml", "data:\n  train: " + dir.File("missing.libsvm") +
                                "\n  format: libsvm\noutput:\n  dir: " + dir.File("run") + "\n");
  std::string out;
  EXPECT_NE(RunCommand(FmpsBinary() + " train " + cfg, &out), 0);
  EXPECT_NE(out.find("missing.libsvm"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir.File("run/model.fmps")));
}

// Makes dir/d/{train,test}.libsvm (`test_rows` test rows, several 8192-row scoring blocks)
// and trains a small model on them; returns the model's path.
std::string TrainSmallModel(const TempDir& dir, int test_rows) {
  std::string out;
  EXPECT_EQ(
      RunCommand(FmpsBinary() + " synth --out " + dir.File("d") + " --rows 20000 --test-rows " +
                     std::to_string(test_rows) + " --fields 10 --vocab 500 --k 4 --seed 5",
                 &out),
      0)
      << out;
  const std::string cfg = dir.Write(
      "exp.yaml", "data:\n  train: " + dir.File("d/train.libsvm") +
                      "\n  format: libsvm\nmodel:\n  k: 4\noutput:\n  dir: " + dir.File("run") +
                      "\n");
  EXPECT_EQ(RunCommand(FmpsBinary() + " train " + cfg, &out), 0) << out;
  return dir.File("run/model.fmps");
}

TEST(CliTest, PredictAndEvalGiveTheSameResultsOnAnyNumberOfThreads) {
  TempDir dir;
  const std::string model = TrainSmallModel(dir, 40000);
  const std::string data = dir.File("d/test.libsvm");
  std::string out;
  const std::string predict = FmpsBinary() + " predict --model " + model + " --data " + data;
  ASSERT_EQ(RunCommand(predict + " --threads 1 --out " + dir.File("p1.txt"), &out), 0) << out;
  ASSERT_EQ(RunCommand(predict + " --threads 4 --out " + dir.File("p4.txt"), &out), 0) << out;
  ASSERT_EQ(RunCommand(predict + " --threads=3 > " + dir.File("p3.txt"), &out), 0) << out;
  const std::string p1 = ReadFile(dir.File("p1.txt"));
  EXPECT_EQ(Lines(p1).size(), 40000u);
  EXPECT_TRUE(p1 == ReadFile(dir.File("p4.txt"))) << "--threads 1 and 4 differ";
  EXPECT_TRUE(p1 == ReadFile(dir.File("p3.txt"))) << "--threads 3 to stdout differs";

  std::string eval1, eval3;
  const std::string eval = FmpsBinary() + " eval --model " + model + " --data " + data;
  ASSERT_EQ(RunCommand(eval + " --threads 1 2>/dev/null", &eval1), 0) << eval1;
  ASSERT_EQ(RunCommand(eval + " --threads 3 2>/dev/null", &eval3), 0) << eval3;
  EXPECT_EQ(eval1, eval3);
  EXPECT_NE(eval1.find("\"rows\":40000"), std::string::npos) << eval1;

  EXPECT_EQ(RunCommand(predict + " --threads 0", &out), 2);
  EXPECT_NE(out.find("--threads"), std::string::npos) << out;
}

TEST(CliTest, PredictBadRowFailsWithFileLineAndLeavesNoOutput) {
  TempDir dir;
  const std::string model = TrainSmallModel(dir, 30000);
  // Line 20001 (in the third block of 8192 rows) is malformed.
  std::vector<std::string> lines = Lines(ReadFile(dir.File("d/test.libsvm")));
  ASSERT_EQ(lines.size(), 30000u);
  lines[20000] = "1 3:1 5:oops";
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  const std::string bad = dir.Write("bad.libsvm", text);
  const std::string predict = FmpsBinary() + " predict --model " + model + " --data " + bad;
  for (const char* threads : {"1", "4"}) {
    std::string out;
    EXPECT_NE(RunCommand(predict + " --threads " + threads + " --out " + dir.File("p.txt"), &out),
              0)
        << threads;
    EXPECT_NE(out.find("bad.libsvm:20001"), std::string::npos) << threads << ": " << out;
    EXPECT_FALSE(std::filesystem::exists(dir.File("p.txt"))) << threads;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
      EXPECT_EQ(entry.path().filename().string().rfind("p.txt", 0), std::string::npos)
          << "left behind: " << entry.path();
    }
  }
  // An existing output file is left as it was.
  dir.Write("old.txt", "previous\n");
  std::string out;
  EXPECT_NE(RunCommand(predict + " --threads 4 --out " + dir.File("old.txt"), &out), 0);
  EXPECT_EQ(ReadFile(dir.File("old.txt")), "previous\n");
}

}  // namespace
}  // namespace fmps
