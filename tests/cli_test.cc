// The fmps command line, run as a user would: exit codes, messages, files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace fmps {
namespace {

using testing::FmpsBinary;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// Value of a numeric field in a one-line JSON object (enough for our own outputs).
double JsonNumber(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const auto pos = json.find(needle);
  if (pos == std::string::npos) return NAN;
  return std::stod(json.substr(pos + needle.size()));
}

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
  EXPECT_NEAR(total / probs.size(), test_logloss, 1e-5);

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
  ASSERT_EQ(RunCommand(FmpsBinary() + " export --model " + model + " --out " +
                           dir.File("m.txt"),
                       &out),
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

TEST(CliTest, TrainErrorsAreOneLineAndNonZero) {
  TempDir dir;
  std::string cfg = dir.Write("exp.yaml", "data:\n  train: " + dir.File("missing.libsvm") +
                                              "\n  format: libsvm\noutput:\n  dir: " +
                                              dir.File("run") + "\n");
  std::string out;
  EXPECT_NE(RunCommand(FmpsBinary() + " train " + cfg, &out), 0);
  EXPECT_NE(out.find("missing.libsvm"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir.File("run/model.fmps")));
}

}  // namespace
}  // namespace fmps
