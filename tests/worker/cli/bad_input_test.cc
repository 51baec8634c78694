// The bad-input table (README "Bad input"), end to end through the real fmps binary: every
// hostile input either trains with the bad rows skipped and counted (data.on_error: skip,
// `bad_rows` in summary.json) or stops with exactly one error line naming file:line or the
// config key, and never leaves a model.fmps, a temporary file or a half-written checkpoint.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tests/util/test_util.h"

namespace fmps {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;
using testing::FmpsBinary;
using testing::JsonNumber;
using testing::Lines;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;

struct Outcome {
  int code = -1;
  std::string err;  // stderr only
};

// Good rows of each format, deterministic: row i has label i % 2 and three features.
std::string GoodRow(const std::string& format, int i) {
  const int a = i % 7, b = 10 + i % 5, c = 20 + i % 3;
  const std::string y = std::to_string(i % 2);
  if (format == "libsvm") {
    return y + " " + std::to_string(a) + ":1 " + std::to_string(b) + ":0.5 " + std::to_string(c) +
           ":1";
  }
  if (format == "libffm") {
    return y + " 0:" + std::to_string(a) + ":1 1:" + std::to_string(b) +
           ":0.5 2:" + std::to_string(c) + ":1";
  }
  if (format == "criteo") {  // label, 13 integer columns, 26 categorical (hex) columns
    std::string row = y;
    for (int j = 0; j < 13; ++j) row += "\t"s + std::to_string((i + j) % 4);
    for (int j = 0; j < 26; ++j) row += "\t"s + std::string(j % 2 ? "a1b2c3d4" : "0f0f0f0f");
    return row;
  }
  // csv: header "label,num,cat"
  return y + "," + std::to_string(a) + ".5,c" + std::to_string(b);
}

constexpr int kGoodRows = 100;

class BadInputTest : public ::testing::Test {
 protected:
  // A data file: csv header (for csv), kGoodRows good rows, and `bad` inserted after good row
  // 10 (so the first bad line is line 11, or 12 with a csv header).
  std::string DataFile(const std::string& name, const std::string& format,
                       const std::vector<std::string>& bad, const std::string& eol = "\n") {
    std::string text = format == "csv" ? "label,num,cat"s + eol : "";
    for (int i = 0; i < kGoodRows; ++i) {
      if (i == 10) {
        for (const auto& b : bad) text += b + eol;
      }
      text += GoodRow(format, i) + eol;
    }
    return dir_.Write(name, text);
  }

  // Config text with the given data section body (under `data:`), small model, 1 worker.
  std::string ConfigText(const std::string& data_body, const std::string& rest = "") const {
    return "data:\n"s + data_body + "model:\n  k: 2\ntrain:\n  batch_size: 16\n" + rest +
           "cluster:\n  local_workers: 1\noutput:\n  dir: " + out_dir() + "\n";
  }
  std::string DataBody(const std::string& path, const std::string& format,
                       const std::string& on_error = "skip") const {
    std::string body =
        "  train: "s + path + "\n  format: " + format + "\n  on_error: " + on_error + "\n";
    if (format == "csv") {
      body += "  csv:\n    label: label\n    numeric: [num]\n    categorical: [cat]\n";
    }
    return body;
  }
  std::string WriteConfig(const std::string& text) { return dir_.Write("exp.yaml", text); }

  // Runs `fmps <command>`, stderr captured separately.
  Outcome Fmps(const std::string& args) const {
    Outcome r;
    std::string out;
    const std::string err_path = dir_.File("stderr.txt");
    r.code = RunCommand("("s + FmpsBinary() + " " + args + " 2>" + err_path + ")", &out);
    r.err = ReadFile(err_path);
    return r;
  }
  Outcome Train(const std::string& cfg, const std::string& args = "") const {
    return Fmps("train "s + cfg + " " + args);
  }

  std::string out_dir() const { return dir_.File("run"); }

  // The run succeeded, trained `rows` rows and counted `bad` bad rows.
  void ExpectTrained(const Outcome& r, std::uint64_t rows, std::uint64_t bad) const {
    ASSERT_EQ(r.code, 0) << r.err;
    const std::string summary = ReadFile(out_dir() + "/summary.json");
    EXPECT_EQ(JsonNumber(summary, "rows_trained"), rows) << summary;
    EXPECT_EQ(JsonNumber(summary, "bad_rows"), bad) << summary;
    EXPECT_TRUE(fs::exists(out_dir() + "/model.fmps"));
  }

  // The run failed with status `code` and exactly one error line, the last one on stderr,
  // containing every one of `needles`; when `only_line`, stderr holds nothing else. No model
  // file nor temporary file is left anywhere under the temp dir.
  void ExpectFailed(const Outcome& r, int code, const std::vector<std::string>& needles,
                    bool only_line = true) const {
    EXPECT_EQ(r.code, code) << r.err;
    const auto lines = Lines(r.err);
    int error_lines = 0;
    for (const auto& l : lines) error_lines += l.find("error") != std::string::npos;
    EXPECT_EQ(error_lines, 1) << r.err;
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back().rfind("fmps: error: ", 0), 0u) << r.err;
    for (const auto& n : needles)
      EXPECT_NE(lines.back().find(n), std::string::npos) << n << " in " << r.err;
    if (only_line) {
      EXPECT_EQ(lines.size(), 1u) << r.err;
    }
    ExpectNoPartialOutput();
  }

  void ExpectNoPartialOutput() const {
    for (const auto& e : fs::recursive_directory_iterator(dir_.path())) {
      const std::string name = e.path().filename().string();
      EXPECT_NE(name, "model.fmps") << "left behind: " << e.path();
      EXPECT_EQ(name.find(".tmp"), std::string::npos) << "left behind: " << e.path();
      if (name.rfind("ckpt-", 0) == 0) {
        EXPECT_TRUE(fs::exists(e.path() / "MANIFEST")) << "incomplete checkpoint " << e.path();
      }
    }
  }

  TempDir dir_;
};

// ---------------------------------------------------------------------------------------
// Malformed rows: skipped and counted under on_error: skip, file:line under on_error: fail.

struct BadRowCase {
  const char* name;
  std::string format;
  std::vector<std::string> bad_lines;  // each one malformed row
  std::string reason;                  // part of the on_error: fail message
};

std::vector<BadRowCase> BadRowCases() {
  const std::string criteo_row = GoodRow("criteo", 1);
  return {
      {"binary garbage",
       "libsvm",
       {std::string("\x7f\x45\x4c\x46\x02\x01\x01\x00\xff\xfe", 10),
        std::string("\x00\x00\x00\x01\x9c\xc3\x28", 7), "\x1b[31m\xe2\x82\xac"},
       ""},
      {"ids >= 2^64", "libsvm", {"1 18446744073709551616:1", "0 99999999999999999999999:1"}, ""},
      {"negative id", "libsvm", {"1 -5:1"}, ""},
      {"id 2^64-1 (reserved for the bias)", "libsvm", {"1 18446744073709551615:1"}, ""},
      {"nan value", "libsvm", {"1 3:nan"}, ""},
      {"inf value", "libsvm", {"1 3:inf", "1 3:-inf"}, ""},
      {"1e400 value", "libsvm", {"1 3:1e400"}, ""},
      {"nan label", "libsvm", {"nan 3:1"}, ""},
      {"label 2 for logistic", "libsvm", {"2 3:1"}, "label '2'"},
      {"missing label", "libsvm", {" 3:1", "3:1"}, ""},
      {"libffm missing field", "libffm", {"1 3:1", "1 0:3:", "1 :3:1", "1 0::1"}, ""},
      {"criteo too many columns", "criteo", {criteo_row + "\t1"}, ""},
      {"csv unterminated quote", "csv", {"1,2.5,\"abc"}, "unterminated quote"},
      {"csv too many columns", "csv", {"1,2.5,c,d"}, ""},
  };
}

TEST_F(BadInputTest, MalformedRowsAreSkippedAndCounted) {
  for (const auto& c : BadRowCases()) {
    SCOPED_TRACE(c.name);
    const std::string data = DataFile("data."s + c.format, c.format, c.bad_lines);
    const std::string cfg = WriteConfig(ConfigText(DataBody(data, c.format)));
    const Outcome r = Train(cfg);
    ExpectTrained(r, kGoodRows, c.bad_lines.size());
    // The first bad row is reported as a warning naming file:line.
    const std::string where = data + ":" + std::to_string(c.format == "csv" ? 12 : 11);
    EXPECT_NE(r.err.find(where), std::string::npos) << r.err;
    // Garbage is quoted with its control bytes escaped: every message is a printable line.
    for (const char ch : r.err) {
      EXPECT_TRUE(ch == '\n' || static_cast<unsigned char>(ch) >= 0x20) << r.err;
      if (ch != '\n' && static_cast<unsigned char>(ch) < 0x20) break;
    }
    fs::remove_all(out_dir());
  }
}

TEST_F(BadInputTest, MalformedRowsStopTheJobUnderOnErrorFail) {
  for (const auto& c : BadRowCases()) {
    SCOPED_TRACE(c.name);
    const std::string data = DataFile("data."s + c.format, c.format, c.bad_lines);
    const std::string cfg = WriteConfig(ConfigText(DataBody(data, c.format, "fail")));
    const std::string where = data + ":" + std::to_string(c.format == "csv" ? 12 : 11) + ":";
    ExpectFailed(Train(cfg), 1, {where, c.reason}, /*only_line=*/false);
    fs::remove_all(out_dir());
  }
}

// A label that is bad for logistic loss is fine for squared loss.
TEST_F(BadInputTest, LabelTwoTrainsUnderSquaredLoss) {
  const std::string data = DataFile("data.libsvm", "libsvm", {"2 3:1"});
  const std::string cfg = WriteConfig(ConfigText(DataBody(data, "libsvm")));
  ExpectTrained(Train(cfg, "--set model.loss=squared"), kGoodRows + 1, 0);
}

// A 10 MB line: a bad one is skipped (and the line numbers after it stay right); a good one
// (2.5 million occurrences of one feature) is trained.
TEST_F(BadInputTest, TenMegabyteLine) {
  const std::string huge_bad = "1 "s + std::string(10 << 20, 'x');
  std::string huge_good = "1";
  huge_good.reserve(10 << 20);
  while (huge_good.size() < (10u << 20)) huge_good += " 3:1";
  const std::string data = DataFile("data.libsvm", "libsvm", {huge_bad, huge_good, "1 3:oops"});
  const std::string cfg = WriteConfig(ConfigText(DataBody(data, "libsvm")));
  const Outcome r = Train(cfg);
  ExpectTrained(r, kGoodRows + 1, 2);
  EXPECT_NE(r.err.find(data + ":11:"), std::string::npos) << r.err.substr(0, 2000);
  EXPECT_NE(r.err.find(data + ":13: bad number 'oops'"), std::string::npos)
      << r.err.substr(0, 2000);
  EXPECT_LT(r.err.size(), 4000u) << "a warning quotes the whole 10 MB line";
}

// CRLF line ends and a UTF-8 BOM give exactly the model plain LF gives (bsp, one worker).
TEST_F(BadInputTest, CrlfAndBomAreAccepted) {
  for (const std::string& format : std::vector<std::string>{"libsvm", "csv"}) {
    SCOPED_TRACE(format);
    std::vector<std::string> exports;
    for (const std::string& eol : std::vector<std::string>{"\n", "\r\n"}) {
      std::string data = DataFile("data."s + format, format, {}, eol);
      if (eol == "\r\n") {
        const std::string text = ReadFile(data);
        data = dir_.Write("bom."s + format, "\xef\xbb\xbf"s + text);
      }
      const std::string cfg =
          WriteConfig(ConfigText(DataBody(data, format, "fail"), "  consistency: bsp\n"));
      ExpectTrained(Train(cfg), kGoodRows, 0);
      const Outcome e =
          Fmps("export --model "s + out_dir() + "/model.fmps --out " + dir_.File("model.txt"));
      ASSERT_EQ(e.code, 0) << e.err;
      exports.push_back(ReadFile(dir_.File("model.txt")));
      fs::remove_all(out_dir());
    }
    // The export's first line is a comment naming the model; compare from the bias on.
    ASSERT_EQ(exports.size(), 2u);
    EXPECT_EQ(exports[0].substr(exports[0].find("\nbias")),
              exports[1].substr(exports[1].find("\nbias")));
  }
}

// ---------------------------------------------------------------------------------------
// Files that cannot be training data.

TEST_F(BadInputTest, EmptyTrainingFile) {
  const std::string data = dir_.Write("empty.libsvm", "");
  const std::string cfg = WriteConfig(ConfigText(DataBody(data, "libsvm")));
  ExpectFailed(Train(cfg), 2, {"data.train", "empty.libsvm"});
}

TEST_F(BadInputTest, TrainingFileWithoutAnyGoodRow) {
  const std::string data = dir_.Write("garbage.libsvm", "\xff\xfe\x00garbage\nmore garbage\n");
  const std::string cfg = WriteConfig(ConfigText(DataBody(data, "libsvm")));
  ExpectFailed(Train(cfg), 1, {"garbage.libsvm:1:", "no row"}, /*only_line=*/false);
}

TEST_F(BadInputTest, EmptyCsvFile) {
  const std::string data = dir_.Write("empty.csv", "");
  const std::string cfg = WriteConfig(ConfigText(DataBody(data, "csv")));
  ExpectFailed(Train(cfg), 2, {"empty.csv"});
}

TEST_F(BadInputTest, DirectoryOrMissingPathAsData) {
  fs::create_directories(dir_.File("adir"));
  const std::string file = dir_.Write("file.txt", "x\n");
  for (const std::string& path :
       std::vector<std::string>{dir_.File("adir"), dir_.File("missing.libsvm"),
                                file + "/sub.libsvm", std::string("/proc/self")}) {
    SCOPED_TRACE(path);
    const std::string cfg = WriteConfig(ConfigText(DataBody(path, "libsvm")));
    ExpectFailed(Train(cfg), 2, {"data.train", path});
    // The same path as test data names data.test.
    const std::string good = DataFile("good.libsvm", "libsvm", {});
    const std::string cfg2 =
        WriteConfig(ConfigText(DataBody(good, "libsvm") + "  test: " + path + "\n"));
    ExpectFailed(Train(cfg2), 2, {"data.test", path});
  }
}

TEST_F(BadInputTest, CsvMissingLabelColumn) {
  const std::string data = dir_.Write("data.csv", "num,cat\n1.5,a\n2.5,b\n");
  const std::string cfg = WriteConfig(ConfigText(DataBody(data, "csv")));
  ExpectFailed(Train(cfg), 2, {"data.csv.label", "'label'", "data.csv"});
}

// ---------------------------------------------------------------------------------------
// Configs: one line naming the key (and its line:column when it comes from the file).

TEST_F(BadInputTest, BadConfigsNameTheKey) {
  const std::string data = DataFile("data.libsvm", "libsvm", {});
  const std::string body = DataBody(data, "libsvm");
  struct Case {
    const char* name;
    std::string yaml;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"not a mapping", "- a\n- b\n", {"mapping"}},
      {"a scalar", "just text\n", {"mapping"}},
      {"empty file", "", {"data"}},
      {"yaml syntax error", "data: [unclosed\n", {"1:"}},
      {"wrong type", ConfigText(body) + "optimizer:\n  lr: fast\n", {"optimizer.lr", "lr"}},
      {"list for a scalar", ConfigText(body) + "optimizer:\n  name: [sgd]\n", {"optimizer.name"}},
      {"negative k", "data:\n"s + body + "model:\n  k: -3\n", {"model.k", "exp.yaml:6:"}},
      {"batch_size 0",
       "data:\n"s + body + "train:\n  batch_size: 0\n",
       {"train.batch_size", "exp.yaml:6:"}},
      {"unknown optimizer",
       "data:\n"s + body + "optimizer:\n  name: rmsprop\n",
       {"optimizer.name", "rmsprop"}},
      {"unknown key", "data:\n"s + body + "model:\n  kk: 3\n", {"model.kk", "model.k"}},
      {"no local servers",
       "data:\n"s + body + "cluster:\n  local_servers: 0\n",
       {"cluster.local_servers"}},
      {"no local workers",
       "data:\n"s + body + "cluster:\n  local_workers: 0\n",
       {"cluster.local_workers"}},
      {"no servers", "data:\n"s + body + "cluster:\n  servers: 0\n", {"cluster.servers"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string cfg = WriteConfig(c.yaml);
    ExpectFailed(Train(cfg), 2, c.needles);
    ExpectFailed(Fmps("check "s + cfg), 2, c.needles);
    EXPECT_FALSE(fs::exists(out_dir())) << "output.dir created for a bad config";
  }
}

TEST_F(BadInputTest, MissingOrBadInitModel) {
  const std::string data = DataFile("data.libsvm", "libsvm", {});
  const std::string garbage = dir_.Write("garbage.fmps", "not a model\n");
  for (const std::string& model :
       std::vector<std::string>{dir_.File("missing.fmps"), garbage, dir_.path()}) {
    SCOPED_TRACE(model);
    const std::string cfg =
        WriteConfig(ConfigText(DataBody(data, "libsvm"), "  init_model: "s + model + "\n"));
    ExpectFailed(Train(cfg), 2, {"train.init_model", model});
  }
}

TEST_F(BadInputTest, UnwritableOutputDir) {
  const std::string data = DataFile("data.libsvm", "libsvm", {});
  const std::string file = dir_.Write("file.txt", "x\n");
  for (const std::string& out :
       std::vector<std::string>{file + "/sub", std::string("/proc/fmps_no_such_dir")}) {
    SCOPED_TRACE(out);
    const std::string cfg = WriteConfig(ConfigText(DataBody(data, "libsvm")));
    ExpectFailed(Train(cfg, "--set output.dir="s + out), 1, {"output.dir", out});
  }
}

// model.fmps cannot be renamed into place (a directory holds its name): the job fails before
// training, not after it.
TEST_F(BadInputTest, ModelPathTaken) {
  const std::string data = DataFile("data.libsvm", "libsvm", {});
  fs::create_directories(out_dir() + "/model.fmps/x");
  const std::string cfg = WriteConfig(ConfigText(DataBody(data, "libsvm")));
  const Outcome r = Train(cfg);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
  EXPECT_EQ(r.err.rfind("fmps: error: output.dir: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(out_dir() + "/model.fmps"), std::string::npos) << r.err;
  for (const auto& e : fs::recursive_directory_iterator(dir_.path())) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
  EXPECT_TRUE(fs::is_directory(out_dir() + "/model.fmps/x"));
}

TEST_F(BadInputTest, UnwritableCheckpointDir) {
  const std::string data = DataFile("data.libsvm", "libsvm", {});
  const std::string file = dir_.Write("file.txt", "x\n");
  const std::string cfg =
      WriteConfig(ConfigText(DataBody(data, "libsvm")) + "checkpoint:\n  dir: " + file + "/ckpt\n");
  ExpectFailed(Train(cfg), 1, {"checkpoint.dir", file + "/ckpt"});
}

// ---------------------------------------------------------------------------------------
// Numerical safety.

// A job that diverges stops with a NumericError (one line suggesting a smaller learning rate)
// and leaves the last good checkpoint exactly as it was: run 1 trains one epoch on benign
// data and checkpoints it; the data is then rewritten, same size, with values of 10^7 (so
// --resume accepts it) and run 2 diverges in epoch 2; run 3, on the benign data again,
// resumes from the checkpoint (its checksums verified) and finishes.
TEST_F(BadInputTest, DivergenceStopsAndKeepsTheLastCheckpoint) {
  auto data_text = [](const std::string& value) {
    std::string text;
    for (int i = 0; i < 200; ++i) {
      text += std::to_string(i % 2) + " " + std::to_string(i % 13) + ":" + value + " " +
              std::to_string(20 + i % 11) + ":" + value + "\n";
    }
    return text;
  };
  const std::string data = dir_.Write("data.libsvm", data_text("1.00000"));
  const std::string ckpt = dir_.File("ckpt");
  const std::string cfg =
      // raw values: instance normalization would scale the 9999999 rows back to unit norm
      WriteConfig(ConfigText(DataBody(data, "libsvm") + "  normalize: none\n") +
                  "checkpoint:\n  dir: " + ckpt + "\n");
  ASSERT_EQ(Train(cfg).code, 0);
  auto snapshot = [&] {
    std::map<std::string, std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(ckpt)) {
      if (e.is_regular_file()) files[e.path().string()] = ReadFile(e.path().string());
    }
    return files;
  };
  const auto before = snapshot();
  ASSERT_TRUE(fs::exists(ckpt + "/ckpt-00000001/MANIFEST"));

  dir_.Write("data.libsvm", data_text("9999999"));
  const std::string run2 = dir_.File("run2");
  fs::remove_all(out_dir());
  const Outcome r = Train(cfg, "--resume --set train.epochs=2 --set output.dir=" + run2);
  EXPECT_EQ(r.code, 1) << r.err;
  const auto lines = Lines(r.err);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back().rfind("fmps: error: training diverged", 0), 0u) << r.err;
  EXPECT_NE(lines.back().find("try a smaller optimizer.lr"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(run2 + "/model.fmps"));
  EXPECT_TRUE(snapshot() == before) << "the checkpoint directory changed";
  ExpectNoPartialOutput();

  dir_.Write("data.libsvm", data_text("1.00000"));
  const Outcome r3 = Train(cfg, "--resume --set train.epochs=2");
  ExpectTrained(r3, 400, 0);
  EXPECT_EQ(r3.err.find("not usable"), std::string::npos) << r3.err;
  EXPECT_NE(r3.err.find("ckpt-00000001"), std::string::npos) << r3.err;
}

// A job that fails while checkpoints are being taken (every 50 ms here) leaves only complete
// ones (each with its MANIFEST) and no temporary file.
TEST_F(BadInputTest, FailureDuringCheckpointsLeavesOnlyCompleteOnes) {
  std::string text;
  for (int i = 0; i < 150000; ++i) text += GoodRow("libsvm", i) + "\n";
  text += "1 3:oops\n";
  const std::string data = dir_.Write("data.libsvm", text);
  const std::string cfg = WriteConfig(ConfigText(DataBody(data, "libsvm", "fail")) +
                                      "checkpoint:\n  dir: " + dir_.File("ckpt") +
                                      "\n  every_seconds: 0.001\n  keep: 1000\n");
  ExpectFailed(Train(cfg), 1, {data + ":150001:"}, /*only_line=*/false);
}

// Normal training reports that no gradient row was rejected.
TEST_F(BadInputTest, SummaryCountsRejectedGradientRows) {
  const std::string data = DataFile("data.libsvm", "libsvm", {});
  const std::string cfg = WriteConfig(ConfigText(DataBody(data, "libsvm")));
  ExpectTrained(Train(cfg), kGoodRows, 0);
  EXPECT_EQ(JsonNumber(ReadFile(out_dir() + "/summary.json"), "push_rows_rejected"), 0);
}

}  // namespace
}  // namespace fmps
