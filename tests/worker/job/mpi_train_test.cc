// Real MPI jobs (mpirun, oversubscribed, at most 4 ranks): async quality against
// single-node mode, bsp equivalence across topologies, real data, and prompt failures.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/data/synth.h"
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

std::string Mpirun(int ranks) {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 "
         "-np " +
         std::to_string(ranks) + " " + FmpsBinary();
}

class MpiTrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    SynthOptions o;
    o.out_dir = dir_->File("synth");
    o.rows = 100000;
    o.test_rows = 20000;
    o.fields = 10;
    o.vocab = 1000;
    o.k = 4;
    o.seed = 21;
    synth_ = new SynthResult(Synthesize(o));
    config_ = dir_->Write("exp.yaml", "data:\n  train: " + synth_->train_path +
                                          "\n  test: " + synth_->test_path +
                                          "\n  format: libsvm\nmodel:\n  k: 4\ntrain:\n"
                                          "  epochs: 2\n  batch_size: 256\n  seed: 4\n");
  }
  static void TearDownTestSuite() {
    delete synth_;
    delete dir_;
  }
  // Runs `command` with output dir `out`; expects success and returns summary.json.
  static std::string Train(const std::string& command, const std::string& out,
                           const std::string& sets = "") {
    std::string log;
    const int rc =
        RunCommand(command + " train " + config_ + " --set output.dir=" + out + " " + sets, &log);
    EXPECT_EQ(rc, 0) << log;
    return ReadFile(out + "/summary.json");
  }
  // Runs `command` like Train and returns the final stdout line: the one starting with
  // `first_field` (empty if none).
  static std::string FinalLine(const std::string& command, const std::string& out,
                               const std::string& sets, const std::string& first_field) {
    std::string log;
    const int rc =
        RunCommand(command + " train " + config_ + " --set output.dir=" + out + " " + sets, &log);
    EXPECT_EQ(rc, 0) << log;
    for (const std::string& line : Lines(log)) {
      if (line.rfind(first_field + " ", 0) == 0) return line;
    }
    ADD_FAILURE() << "no line starting with " << first_field << " in:\n" << log;
    return "";
  }
  static TempDir* dir_;
  static SynthResult* synth_;
  static std::string config_;
};
TempDir* MpiTrainTest::dir_ = nullptr;
SynthResult* MpiTrainTest::synth_ = nullptr;
std::string MpiTrainTest::config_;

TEST_F(MpiTrainTest, AsyncOneServerTwoWorkersMatchesSingleNode) {
  TempDir a, b;
  const std::string local = Train(FmpsBinary(), a.path(), "--set cluster.local_workers=2");
  const std::string mpi = Train(Mpirun(3), b.path());
  EXPECT_EQ(JsonNumber(mpi, "workers"), 2);
  EXPECT_EQ(JsonNumber(mpi, "servers"), 1);
  EXPECT_EQ(JsonNumber(mpi, "rows_trained"), 200000);
  EXPECT_NE(mpi.find("\"mode\":\"mpi\""), std::string::npos);
  const double l = JsonNumber(local, "test_logloss"), m = JsonNumber(mpi, "test_logloss");
  EXPECT_LE(std::abs(m - l) / l, 0.02) << "single-node " << l << " vs mpi " << m;
  // The model written by the coordinator is complete and readable without MPI.
  Model model = Model::Load(b.File("model.fmps"));
  EXPECT_EQ(model.num_keys(), static_cast<std::size_t>(JsonNumber(mpi, "num_keys")));
  // metrics.jsonl has evaluation events with exact test metrics.
  EXPECT_NE(ReadFile(b.File("metrics.jsonl")).find("\"test_auc\""), std::string::npos);
}

// The final line's field names (every other word) and values by name.
std::map<std::string, std::string> Fields(const std::string& line,
                                          std::vector<std::string>* names) {
  std::istringstream in(line);
  std::map<std::string, std::string> fields;
  std::string name, value;
  while (in >> name >> value) {
    names->push_back(name);
    fields[name] = value;
  }
  return fields;
}

TEST_F(MpiTrainTest, FinalLineHasTheSameFieldsInBothModesForEitherLoss) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"squared", {"test_rmse", "rows", "rows_per_s", "model"}},
      {"logistic", {"test_logloss", "test_auc", "rows", "rows_per_s", "model"}}};
  for (const auto& [loss, want] : cases) {
    TempDir a, b;
    const std::string sets = "--set model.loss=" + loss + " --set train.epochs=1";
    const std::string local =
        FinalLine(FmpsBinary(), a.path(), sets + " --set cluster.local_workers=2", want[0]);
    const std::string mpi = FinalLine(Mpirun(3), b.path(), sets, want[0]);
    std::vector<std::string> local_names, mpi_names;
    auto l = Fields(local, &local_names);
    auto m = Fields(mpi, &mpi_names);
    EXPECT_EQ(local_names, want) << local;
    EXPECT_EQ(mpi_names, want) << mpi;
    EXPECT_EQ(l["rows"], "100000");
    EXPECT_EQ(m["rows"], "100000");
    EXPECT_EQ(m["model"], b.File("model.fmps"));
    const double lm = std::stod(l[want[0]]), mm = std::stod(m[want[0]]);
    EXPECT_TRUE(std::isfinite(mm) && mm > 0) << mpi;
    EXPECT_LE(std::abs(mm - lm) / lm, 0.05) << loss << ": single-node " << lm << " vs mpi " << mm;
    // summary.json names the same metric.
    EXPECT_FALSE(std::isnan(JsonNumber(ReadFile(b.File("summary.json")), want[0])));
  }
}

TEST_F(MpiTrainTest, BspModelIsTheSameOnEveryTopology) {
  TempDir local, one, two;
  const std::string bsp = "--set train.consistency=bsp";
  Train(FmpsBinary(), local.path(), bsp + " --set cluster.local_workers=2");
  Train(Mpirun(3), one.path(), bsp + " --set cluster.servers=1");
  Train(Mpirun(4), two.path(), bsp + " --set cluster.servers=2");
  const Model reference = Model::Load(local.File("model.fmps"));
  EXPECT_LE(MaxAbsDiff(reference, Model::Load(one.File("model.fmps"))), 1e-5);
  EXPECT_LE(MaxAbsDiff(reference, Model::Load(two.File("model.fmps"))), 1e-5);
}

TEST_F(MpiTrainTest, WarmStartLoadsTheModelOnEveryServer) {
  TempDir first, warm;
  Train(FmpsBinary(), first.path(), "--set train.epochs=1");
  const std::string fresh = ReadFile(first.File("summary.json"));
  // Two servers each load their share of the keys of a single-node model.
  const std::string resumed = Train(Mpirun(4), warm.path(),
                                    "--set train.epochs=1 --set cluster.servers=2 "
                                    "--set train.init_model=" +
                                        first.File("model.fmps"));
  EXPECT_LT(JsonNumber(resumed, "train_logloss"), JsonNumber(fresh, "train_logloss") - 0.005);
  EXPECT_EQ(Model::Load(warm.File("model.fmps")).keys(),
            Model::Load(first.File("model.fmps")).keys());
}

// SIGKILL of one rank mid-job, then --resume (1 server + 2 workers, bsp, a checkpoint
// every 0.2 s): the job must end promptly, naming the dead rank, leave no model behind, and
// the resumed job must give the very model of an uninterrupted run.
class MpiKillTest : public MpiTrainTest {
 protected:
  static constexpr const char* kBsp = "--set train.consistency=bsp --set train.batch_size=64";
  static constexpr int kAttempts = 3;

  // One killed run in `out` with `sets`: waits for the job's first complete checkpoint in
  // `ckpt`, freezes every rank (SIGSTOP), and only if the job is still training (the root has
  // not logged the last epoch's evaluation, so no rank is past the collectives before the
  // model is written) SIGKILLs rank `victim` before letting the others go on. A kill that
  // comes after training (the machine so loaded that the whole job ran out in between)
  // leaves out/late instead. Files in `out`: log, rc, ended, killed or late.
  static void RunAndKill(int victim, const std::string& ckpt, const std::string& sets,
                         const TempDir& out) {
    const std::string ranks = "for p in $(pgrep -f 'fmps train " + config_ +
                              "'); do "
                              "tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | grep -q";
    std::string script = "(";
    script += Mpirun(3) + " train " + config_ + " --set output.dir=" + out.path() + " ";
    script += sets + " > " + out.File("log") + " 2>&1; echo $? > " + out.File("rc");
    script += "; date +%s.%N > " + out.File("ended") + ") & ";
    script += "until ls " + ckpt + "/*/MANIFEST >/dev/null 2>&1 || [ -e " + out.File("rc") +
              " ]; do sleep 0.025; done; ";
    script += "all=; victim=; " + ranks + " '^OMPI_COMM_WORLD_RANK=' && all=\"$all $p\"; done; ";
    script += "[ -n \"$all\" ] && kill -STOP $all; ";
    script += ranks + "x OMPI_COMM_WORLD_RANK=" + std::to_string(victim) + " && victim=$p; done; ";
    // The fixture trains 2 epochs: the root logs epoch 2's evaluation when training is over.
    script += "if grep -q '\"event\":\"eval\",\"time_s\":[^,]*,\"epoch\":2,' " +
              out.File("metrics.jsonl") + " 2>/dev/null; then touch " + out.File("late") + "; ";
    script += "elif [ -n \"$victim\" ]; then kill -9 $victim && date +%s.%N > " +
              out.File("killed") + "; fi; ";
    script += "[ -n \"$all\" ] && kill -CONT $all; wait";
    std::string ignored;
    RunCommand("bash " + out.Write("kill.sh", script), &ignored);
  }

  // Kills rank `victim` mid-training (retrying a run the kill came too late for), checks how
  // the job ended, then resumes it and checks the result.
  static void KillAndResume(int victim) {
    TempDir plain, ckpt_root;
    const std::string reference = Train(Mpirun(3), plain.path(), kBsp);
    std::vector<std::unique_ptr<TempDir>> runs;
    std::string with_ckpt;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      runs.push_back(std::make_unique<TempDir>());
      const std::string ckpt = ckpt_root.File("attempt" + std::to_string(attempt));
      with_ckpt = std::string(kBsp) + " --set checkpoint.dir=" + ckpt +
                  " --set checkpoint.every_seconds=0.2 --set checkpoint.keep=2";
      RunAndKill(victim, ckpt, with_ckpt, *runs.back());
      if (!std::filesystem::exists(runs.back()->File("late"))) break;
      std::cout << "attempt " << attempt << ": training was over before the kill; again\n";
    }
    const TempDir& killed = *runs.back();
    const std::string log = ReadFile(killed.File("log"));
    ASSERT_TRUE(std::filesystem::exists(killed.File("killed")))
        << "rank " << victim << " not killed mid-training in " << kAttempts << " attempts: " << log;
    EXPECT_NE(ReadFile(killed.File("rc")), "0\n") << "the job ended before the kill: " << log;
    const double kill_to_exit =
        std::stod(ReadFile(killed.File("ended"))) - std::stod(ReadFile(killed.File("killed")));
    std::cout << "rank " << victim << " killed: the job ended " << kill_to_exit
              << " s later; its output:\n"
              << log;
    EXPECT_LT(kill_to_exit, 10.0) << log;
    // mpirun names the dead rank ("process rank 0 with PID ... exited on signal 9").
    EXPECT_NE(log.find("rank " + std::to_string(victim)), std::string::npos) << log;
    EXPECT_FALSE(std::filesystem::exists(killed.File("model.fmps")));
    // Relaunch with --resume: it continues from the newest complete checkpoint.
    TempDir resumed;
    const std::string after = Train(Mpirun(3), resumed.path(), with_ckpt + " --resume");
    EXPECT_EQ(JsonNumber(after, "rows_trained"), 200000);
    const double a = JsonNumber(reference, "test_logloss"), b = JsonNumber(after, "test_logloss");
    EXPECT_LE(std::abs(a - b) / a, 0.01);
    // bsp, one server, same topology: the very same model.
    EXPECT_LE(
        MaxAbsDiff(Model::Load(plain.File("model.fmps")), Model::Load(resumed.File("model.fmps"))),
        1e-6);
  }
};

TEST_F(MpiKillTest, KilledWorkerResumesFromTheLastCheckpoint) { KillAndResume(/*victim=*/2); }

TEST_F(MpiKillTest, KilledServerEndsTheJobAndResumesFromTheLastCheckpoint) {
  KillAndResume(/*victim=*/0);
}

TEST(MpiRealDataTest, A9aOnTwoWorkersReachesAuc090) {
  FMPS_REQUIRE_SHARED_DATA(train, "a9a/a9a");
  TempDir dir;
  const std::string cfg = dir.Write(
      "a9a.yaml", "data:\n  train: " + train + "\n  test: " + testing::SharedData("a9a/a9a.t") +
                      "\n  format: libsvm\nmodel:\n  k: 4\n  l2_v: 0.0001\noptimizer:\n  lr: 0.05\n"
                      "train:\n  epochs: 5\n  batch_size: 64\noutput:\n  dir: " +
                      dir.File("run") + "\n");
  std::string log;
  ASSERT_EQ(RunCommand(Mpirun(3) + " train " + cfg, &log), 0) << log;
  const std::string summary = ReadFile(dir.File("run/summary.json"));
  EXPECT_EQ(JsonNumber(summary, "workers"), 2);
  EXPECT_GE(JsonNumber(summary, "test_auc"), 0.90);
}

// A failing job ends non-zero, promptly, with one message naming the cause.
void ExpectPromptFailure(const std::string& command, const std::string& needle) {
  std::string log;
  const auto start = std::chrono::steady_clock::now();
  const int rc = RunCommand(command, &log);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(rc, 0) << log;
  EXPECT_LT(seconds, 10.0) << log;
  EXPECT_NE(log.find(needle), std::string::npos) << log;
}

TEST_F(MpiTrainTest, MissingTrainingFileEndsTheJob) {
  TempDir out;
  ExpectPromptFailure(Mpirun(3) + " train " + config_ + " --set data.train=" +
                          out.File("nope.libsvm") + " --set output.dir=" + out.path(),
                      "nope.libsvm");
}

TEST_F(MpiTrainTest, WorldTooSmallForTheServersIsRejected) {
  TempDir out;
  std::string log;
  ExpectPromptFailure(Mpirun(2) + " train " + config_ + " --set cluster.servers=2 " +
                          "--set output.dir=" + out.path(),
                      "cluster.servers");
  // Reported once, by one rank.
  RunCommand(Mpirun(2) + " train " + config_ + " --set cluster.servers=2", &log);
  EXPECT_EQ(log.find("cluster.servers"), log.rfind("cluster.servers: ")) << log;
}

TEST_F(MpiTrainTest, BadRowUnderFailAbortsEveryRank) {
  TempDir dir;
  // Worker 1's half of the file holds a malformed row.
  std::string rows;
  for (int i = 0; i < 2000; ++i) rows += (i % 3 ? "1 1:1 2:1\n" : "0 3:1\n");
  rows += "1 7:oops\n";
  for (int i = 0; i < 2000; ++i) rows += "0 4:1 5:1\n";
  const std::string bad = dir.Write("bad.libsvm", rows);
  ExpectPromptFailure(Mpirun(3) + " train " + config_ + " --set data.train=" + bad +
                          " --set data.on_error=fail --set output.dir=" + dir.File("run"),
                      "bad.libsvm:2001");
}

// Field-aware FM (model.kind ffm) under mpirun: the bsp model is the same on every
// topology (single-node with two workers, MPI 1 server + 2 workers, and with `two_servers`
// 2 servers + 2 workers), so FFM's wider rows travel and shard correctly. `sets`: more
// --set options for every run.
void CheckFfmBspTopologies(const std::string& sets, bool two_servers) {
  TempDir dir, local, one, two;
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " synth --out " + dir.File("d") +
                           " --format libffm --model ffm --fields 4 --vocab 200 --k 4 "
                           "--rows 20000 --test-rows 2000 --seed 7",
                       &out),
            0)
      << out;
  const std::string cfg =
      dir.Write("exp.yaml", "data:\n  train: " + dir.File("d/train.libffm") +
                                "\n  test: " + dir.File("d/test.libffm") +
                                "\n  format: libffm\nmodel:\n  kind: ffm\n  fields: 4\n  k: 4\n"
                                "train:\n  epochs: 2\n  batch_size: 256\n  consistency: bsp\n");
  auto train = [&](const std::string& command, const TempDir& o, const std::string& more) {
    EXPECT_EQ(RunCommand(command + " train " + cfg + " --set output.dir=" + o.path() + " " + more +
                             " " + sets + " 2>&1",
                         &out),
              0)
        << out;
  };
  train(FmpsBinary(), local, "--set cluster.local_workers=2");
  train(Mpirun(3), one, "--set cluster.servers=1");
  if (two_servers) train(Mpirun(4), two, "--set cluster.servers=2");
  const Model reference = Model::Load(local.File("model.fmps"));
  EXPECT_EQ(reference.shape(), FfmShape(4, 4));
  EXPECT_LE(MaxAbsDiff(reference, Model::Load(one.File("model.fmps"))), 1e-5);
  if (two_servers) {
    EXPECT_LE(MaxAbsDiff(reference, Model::Load(two.File("model.fmps"))), 1e-5);
  }
}

TEST(FfmMpiTest, BspModelIsTheSameOnEveryTopology) { CheckFfmBspTopologies("", true); }

// Row-wise AdaGrad state (optimizer.rowwise) under mpirun: the servers' row-wise stores give
// the single-node model.
TEST(FfmMpiTest, RowwiseBspModelIsTheSameUnderMpirun) {
  CheckFfmBspTopologies("--set optimizer.rowwise=true", false);
}

}  // namespace
}  // namespace fmps
