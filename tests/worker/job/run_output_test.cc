// RunOutput (worker/job/run_output.h): metrics.jsonl holds one valid JSON object per event
// with the documented fields, summary.json is replaced atomically, config.yaml is the
// effective config.
#include "worker/job/run_output.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/config/config.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

namespace fs = std::filesystem;
using testing::ReadFile;
using testing::TempDir;

// A strict parser for the flat JSON objects fmps writes: string keys, values that are
// numbers, strings or null. Returns key -> raw value text; records a failure and returns
// an empty map on anything else (nesting, trailing garbage, duplicate keys, bad numbers).
std::map<std::string, std::string> ParseFlatObject(const std::string& s) {
  std::map<std::string, std::string> out;
  std::size_t i = 0;
  auto fail = [&](const char* why) {
    ADD_FAILURE() << why << " at " << i << " in " << s;
    return std::map<std::string, std::string>();
  };
  auto string_at = [&](std::string* value) {
    if (i >= s.size() || s[i] != '"') return false;
    for (++i; i < s.size() && s[i] != '"'; ++i) {
      if (static_cast<unsigned char>(s[i]) < 0x20) return false;
      if (s[i] == '\\') ++i;
      *value += s[i];
    }
    return i++ < s.size();
  };
  if (s.empty() || s[i++] != '{') return fail("expected {");
  while (i < s.size() && s[i] != '}') {
    if (!out.empty() && s[i++] != ',') return fail("expected ,");
    std::string key, value;
    if (!string_at(&key) || i >= s.size() || s[i++] != ':') return fail("bad key");
    if (i < s.size() && s[i] == '"') {
      if (!string_at(&value)) return fail("bad string");
      value = "\"" + value;
    } else {
      const std::size_t start = i;
      while (i < s.size() && s[i] != ',' && s[i] != '}') ++i;
      value = s.substr(start, i - start);
      std::size_t used = 0;
      bool ok = value == "null";
      if (!ok && !value.empty() && (value[0] == '-' || std::isdigit(value[0]))) {
        try {
          std::stod(value, &used);
          ok = used == value.size();
        } catch (const std::exception&) {
        }
      }
      if (!ok) return fail("bad value");
    }
    if (!out.emplace(key, value).second) return fail("duplicate key");
  }
  if (i + 1 != s.size()) return fail("expected } at the end");
  return out;
}

Config MakeConfig(const std::string& out, const std::string& loss) {
  return ParseConfig("data:\n  train: t.libsvm\n  format: libsvm\nmodel:\n  k: 3\n  loss: " + loss +
                         "\noutput:\n  dir: " + out + "\n",
                     "run.yaml", {});
}

void ExpectKeys(const std::map<std::string, std::string>& o, const std::vector<std::string>& keys) {
  for (const auto& k : keys) EXPECT_TRUE(o.count(k)) << "missing " << k;
  EXPECT_EQ(o.size(), keys.size());
}

TEST(RunOutputTest, MetricsLinesAreJsonWithTheDocumentedFields) {
  TempDir dir;
  const std::string out = dir.File("a/b");  // parents are created
  {
    RunOutput run(MakeConfig(out, "logistic"));
    ProgressReport p;
    p.epoch = 1;
    p.epochs = 2;
    p.fraction = 0.5;
    p.rows = 1000;
    p.rows_per_s = 2500;
    p.train_loss = 0.625;
    p.workers = {{10, 5, 0.02, 0.005},
                 {5, 5, 0.05, 0.015}};  // pulls 2 and 10 ms, pushes 1 and 3 ms
    run.Progress(p);
    EvalResult e;
    e.rows = 300;
    e.logloss = 0.4375;
    e.auc = 0.8125;
    run.Evaluation(1, 2000, 1234.5, 0.5, e);
  }
  const std::vector<std::string> lines = testing::Lines(ReadFile(out + "/metrics.jsonl"));
  ASSERT_EQ(lines.size(), 2u);
  const auto progress = ParseFlatObject(lines[0]);
  ExpectKeys(progress, {"event", "time_s", "epoch", "fraction", "rows", "rows_per_s",
                        "train_logloss", "pull_ms", "pull_ms_max", "push_ms", "push_ms_max"});
  EXPECT_EQ(progress.at("event"), "\"progress");
  EXPECT_EQ(progress.at("rows"), "1000");
  EXPECT_DOUBLE_EQ(std::stod(progress.at("fraction")), 0.5);
  EXPECT_DOUBLE_EQ(std::stod(progress.at("train_logloss")), 0.625);
  EXPECT_NEAR(std::stod(progress.at("pull_ms")), 6.0, 1e-9);
  EXPECT_NEAR(std::stod(progress.at("pull_ms_max")), 10.0, 1e-9);
  EXPECT_NEAR(std::stod(progress.at("push_ms")), 2.0, 1e-9);
  EXPECT_NEAR(std::stod(progress.at("push_ms_max")), 3.0, 1e-9);
  EXPECT_GE(std::stod(progress.at("time_s")), 0.0);
  const auto eval = ParseFlatObject(lines[1]);
  ExpectKeys(eval, {"event", "time_s", "epoch", "rows", "rows_per_s", "train_logloss", "test_rows",
                    "test_logloss", "test_auc"});
  EXPECT_EQ(eval.at("event"), "\"eval");
  EXPECT_EQ(eval.at("epoch"), "1");
  EXPECT_EQ(eval.at("test_rows"), "300");
  EXPECT_DOUBLE_EQ(std::stod(eval.at("test_logloss")), 0.4375);
  EXPECT_DOUBLE_EQ(std::stod(eval.at("test_auc")), 0.8125);
}

TEST(RunOutputTest, SquaredLossEvaluationHasRmseAndNonFiniteIsNull) {
  TempDir dir;
  {
    RunOutput run(MakeConfig(dir.path(), "squared"));
    EvalResult e;
    e.rows = 0;
    e.logloss = NAN;  // an empty test set
    e.rmse = NAN;
    run.Evaluation(2, 10, 1.0, 0.25, e);
  }
  const auto eval = ParseFlatObject(testing::Lines(ReadFile(dir.File("metrics.jsonl")))[0]);
  ExpectKeys(eval, {"event", "time_s", "epoch", "rows", "rows_per_s", "train_logloss", "test_rows",
                    "test_logloss", "test_rmse"});
  EXPECT_EQ(eval.at("test_rmse"), "null");
  EXPECT_EQ(eval.at("test_logloss"), "null");
}

TEST(RunOutputTest, SummaryIsReplacedAtomicallyAndConfigYamlIsTheEffectiveConfig) {
  TempDir dir;
  const Config config = MakeConfig(dir.path(), "logistic");
  RunOutput run(config);
  EXPECT_EQ(run.ModelPath(), dir.File("model.fmps"));
  // config.yaml: every effective key, re-parsing to the same config.
  const std::string yaml = ReadFile(dir.File("config.yaml"));
  EXPECT_EQ(yaml, ConfigToYaml(config));
  EXPECT_EQ(ConfigToYaml(LoadConfig(dir.File("config.yaml"), {})), yaml);
  for (int i = 0; i < 3; ++i) {
    JsonObject s;
    s.Add("rows_trained", static_cast<std::uint64_t>(100 + i)).Add("model", "m.fmps");
    run.Summary(s);
    const std::string text = ReadFile(dir.File("summary.json"));
    EXPECT_EQ(text, s.str() + "\n");
    EXPECT_EQ(ParseFlatObject(text.substr(0, text.size() - 1)).at("rows_trained"),
              std::to_string(100 + i));
  }
  // Nothing but the outputs: no temp file is left behind.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"config.yaml", "metrics.jsonl", "summary.json"}));
}

// In memory: output.dir is never created; the events, the summary and the model's bytes go
// to the MemoryRunOutput (cleared first).
TEST(RunOutputTest, InMemoryKeepsEventsAndSummaryAndWritesNoFile) {
  TempDir dir;
  const std::string out = dir.File("never");
  MemoryRunOutput memory;
  memory.events = {"stale"};
  RunOutput run(MakeConfig(out, "logistic"), {.memory = &memory});
  EXPECT_TRUE(memory.events.empty());
  run.Begin(RunStart());
  ProgressReport p;
  p.epoch = p.epochs = 1;
  p.workers = {{1, 1, 0.001, 0.001}};
  run.Progress(p);
  JsonObject s;
  s.Add("rows_trained", std::uint64_t{7});
  run.Summary(s);
  ASSERT_EQ(memory.events.size(), 1u);
  EXPECT_EQ(ParseFlatObject(memory.events[0]).at("event"), "\"progress");
  EXPECT_EQ(memory.summary_json, s.str());
  EXPECT_EQ(run.ModelDestination().bytes, &memory.model);
  EXPECT_EQ(run.ModelPath(), "(in memory)");
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(RunOutputTest, UnusableDirectoryOrModelPathThrowsIoError) {
  TempDir dir;
  const std::string file = dir.Write("file", "x");
  EXPECT_THROW(RunOutput(MakeConfig(file + "/sub", "logistic")), IoError);
  fs::create_directories(dir.File("out/model.fmps"));
  EXPECT_THROW(RunOutput(MakeConfig(dir.File("out"), "logistic")), IoError);
  // WriteFileAtomic into a missing directory fails naming the path.
  try {
    WriteFileAtomic(dir.File("missing/x.json"), "{}");
    FAIL() << "expected an IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("missing/x.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fmps
