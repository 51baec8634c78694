// What a user of predict, eval, export and --help sees is true: a file with no scorable
// row is an error, messages say what happens, every subcommand has --help, `-` is standard
// input / output, unlabeled rows can be scored, a squared-loss model's error is named as such.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/util/test_util.h"

namespace fmps::testing {
namespace {

// The file extension fmps synth gives `format`.
std::string Extension(const std::string& format) { return format == "criteo" ? "txt" : format; }

// dir/d/{train,test}.<extension> and a small model trained on them (extra --set options
// appended); returns the model's path.
std::string TrainModel(const TempDir& dir, const std::string& format,
                       const std::string& sets = "") {
  const std::string fields =
      format == "criteo" ? "39" : (format == "csv" ? "4" : "6");  // csv: label,n1,c2,c3,c4
  std::string out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " synth --out " + dir.File("d") +
                           " --rows 4000 --test-rows 600 --vocab 200 --k 4 --seed 3 --fields " +
                           fields + " --format " + format,
                       &out),
            0)
      << out;
  const std::string csv = format == "csv" ? "  csv:\n    label: label\n    numeric: [n1]\n"
                                            "    categorical: [c2, c3, c4]\n"
                                          : "";
  const std::string cfg =
      dir.Write("exp.yaml", "data:\n  train: " + dir.File("d/train." + Extension(format)) +
                                "\n  format: " + format + "\n" + csv +
                                "model:\n  k: 4\noutput:\n  dir: " + dir.File("run") + "\n");
  EXPECT_EQ(RunCommand(FmpsBinary() + " train " + cfg + " " + sets, &out), 0) << out;
  return dir.File("run/model.fmps");
}

std::string Join(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  return text;
}

TEST(UserSeesTest, EvalWithNoScoredRowIsAnError) {
  TempDir dir;
  const std::string model = TrainModel(dir, "libsvm");
  // A csv file given to a libsvm model: every row is malformed.
  const std::string wrong = dir.Write("wrong.csv", "a,b,c\n1,2,3\n0,5,6\n");
  std::string out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " eval --model " + model + " --data " + wrong, &out), 1)
      << out;
  const std::vector<std::string> lines = Lines(out);
  ASSERT_FALSE(lines.empty());
  const std::string& last = lines.back();
  EXPECT_NE(last.find("wrong.csv"), std::string::npos) << out;
  EXPECT_NE(last.find("no row scored"), std::string::npos) << out;
  EXPECT_NE(last.find("wrong.csv:1:"), std::string::npos) << out;  // the first bad row
  EXPECT_EQ(out.find("\"rows\":0"), std::string::npos) << out;
  // An empty file likewise.
  const std::string empty = dir.Write("empty.libsvm", "");
  EXPECT_EQ(RunCommand(FmpsBinary() + " eval --model " + model + " --data " + empty, &out), 1)
      << out;
  EXPECT_NE(out.find("empty.libsvm"), std::string::npos) << out;
}

TEST(UserSeesTest, PredictBadRowMessageSaysItStops) {
  TempDir dir;
  const std::string model = TrainModel(dir, "libsvm");
  std::vector<std::string> lines = Lines(ReadFile(dir.File("d/test.libsvm")));
  lines[4] = "1 3:1 5:oops";
  const std::string bad = dir.Write("bad.libsvm", Join(lines));
  std::string out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " predict --model " + model + " --data " + bad + " --out " +
                           dir.File("p.txt"),
                       &out),
            1);
  EXPECT_EQ(out.find("skipped"), std::string::npos) << out;
  EXPECT_NE(out.find("bad.libsvm:5"), std::string::npos) << out;
  EXPECT_NE(out.find("predict stopped"), std::string::npos) << out;
  EXPECT_EQ(Lines(out).size(), 1u) << out;
}

TEST(UserSeesTest, EverySubcommandHasHelp) {
  for (const char* command : {"train", "check", "synth", "predict", "eval", "export"}) {
    std::string out;
    EXPECT_EQ(RunCommand(FmpsBinary() + " " + command + " --help 2>/dev/null", &out), 0)
        << command << ": " << out;
    EXPECT_NE(out.find(std::string("fmps ") + command), std::string::npos)
        << command << ": " << out;
    EXPECT_EQ(RunCommand(FmpsBinary() + " " + command + " -h 2>/dev/null", &out), 0) << command;
  }
}

TEST(UserSeesTest, DashIsStandardInputAndOutput) {
  TempDir dir;
  const std::string model = TrainModel(dir, "libsvm");
  const std::string data = dir.File("d/test.libsvm");
  std::string expected, out;
  const std::string predict = FmpsBinary() + " predict --model " + model;
  ASSERT_EQ(RunCommand(predict + " --data " + data + " 2>/dev/null", &expected), 0) << expected;
  EXPECT_EQ(Lines(expected).size(), 600u);
  EXPECT_EQ(RunCommand("cat " + data + " | " + predict + " --data - --out - 2>/dev/null", &out), 0);
  EXPECT_EQ(out, expected);
  EXPECT_EQ(RunCommand(predict + " --data /dev/stdin < " + data + " 2>/dev/null", &out), 0);
  EXPECT_EQ(out, expected);
  EXPECT_EQ(RunCommand("cat " + data + " | " + predict + " --data /dev/stdin 2>/dev/null", &out),
            0);
  EXPECT_EQ(out, expected);
  // An error in piped input names standard input, not the temporary copy.
  EXPECT_EQ(RunCommand("printf '1 3:1\\n1 3:x\\n' | " + predict + " --data -", &out), 1);
  EXPECT_NE(out.find("standard input:2:"), std::string::npos) << out;

  std::string eval_file, eval_stdin;
  const std::string eval = FmpsBinary() + " eval --model " + model;
  ASSERT_EQ(RunCommand(eval + " --data " + data + " 2>/dev/null", &eval_file), 0) << eval_file;
  EXPECT_EQ(RunCommand("cat " + data + " | " + eval + " --data - 2>/dev/null", &eval_stdin), 0);
  EXPECT_EQ(eval_stdin, eval_file);

  ASSERT_EQ(
      RunCommand(FmpsBinary() + " export --model " + model + " --out " + dir.File("m.txt"), &out),
      0)
      << out;
  EXPECT_EQ(RunCommand("cd " + dir.path() + " && " + FmpsBinary() + " export --model " + model +
                           " --out - 2>/dev/null",
                       &out),
            0);
  EXPECT_EQ(out, ReadFile(dir.File("m.txt")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("-")));
}

// Each line of `text` without its first `sep`-separated cell (the label).
std::string WithoutLabels(const std::string& text, char sep) {
  std::string out;
  for (const auto& l : Lines(text)) out += l.substr(l.find(sep) + 1) + "\n";
  return out;
}

TEST(UserSeesTest, PredictScoresRowsWithoutLabels) {
  for (const char* format : {"libsvm", "libffm", "criteo"}) {
    TempDir dir;
    // Criteo's 39 one-hot columns need a small step (as configs/criteo.yaml has).
    const std::string model =
        TrainModel(dir, format, std::string(format) == "criteo" ? "--set optimizer.lr=0.002" : "");
    const std::string data = dir.File("d/test." + Extension(format));
    const char sep = std::string(format) == "criteo" ? '\t' : ' ';
    const std::string unlabeled = dir.Write("nolabel.txt", WithoutLabels(ReadFile(data), sep));
    std::string expected, out;
    const std::string predict = FmpsBinary() + " predict --model " + model;
    ASSERT_EQ(RunCommand(predict + " --data " + data + " 2>/dev/null", &expected), 0)
        << format << expected;
    EXPECT_EQ(RunCommand(predict + " --data " + unlabeled + " 2>&1", &out), 0) << format << out;
    EXPECT_EQ(out, expected) << format;
    // Training still requires labels.
    EXPECT_NE(RunCommand(FmpsBinary() + " train " + dir.File("exp.yaml") +
                             " --set data.train=" + unlabeled +
                             " --set data.on_error=fail --set output.dir=" + dir.File("run2"),
                         &out),
              0)
        << format << out;
  }
}

TEST(UserSeesTest, PredictScoresCsvWithoutTheLabelColumn) {
  TempDir dir;
  const std::string model = TrainModel(dir, "csv");
  const std::string data = dir.File("d/test.csv");
  // Drop the label column (the first one in synth's csv) from every line, header included.
  const std::string unlabeled = dir.Write("nolabel.csv", WithoutLabels(ReadFile(data), ','));
  std::string expected, out;
  const std::string predict = FmpsBinary() + " predict --model " + model;
  ASSERT_EQ(RunCommand(predict + " --data " + data + " 2>/dev/null", &expected), 0) << expected;
  EXPECT_EQ(RunCommand(predict + " --data " + unlabeled + " 2>&1", &out), 0) << out;
  EXPECT_EQ(out, expected);
}

TEST(UserSeesTest, EvalNamesTheSquaredLoss) {
  TempDir dir;
  const std::string model = TrainModel(dir, "libsvm", "--set model.loss=squared");
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " eval --model " + model + " --data " +
                           dir.File("d/test.libsvm") + " 2>/dev/null",
                       &out),
            0)
      << out;
  EXPECT_EQ(out.find("logloss"), std::string::npos) << out;
  const double mse = JsonNumber(out, "mse");
  const double rmse = JsonNumber(out, "rmse");
  EXPECT_GT(mse, 0.0) << out;
  EXPECT_NEAR(rmse * rmse, mse, 1e-6 * mse + 1e-9) << out;
}

}  // namespace
}  // namespace fmps::testing
