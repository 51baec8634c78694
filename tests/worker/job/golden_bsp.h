// Golden per-epoch test losses of a fixed bsp job (2 servers x 2 workers, 3 epochs, sgd and
// adagrad) on a small deterministic synthetic data set, shared by golden_bsp_test (single
// node) and golden_bsp_mpi_test (mpirun). bsp is reproducible bit for bit whatever the
// topology, so every run must reproduce these values. The config fixes data.normalize: none
// and adagrad's initial_accumulator: 0, and optimizer.gradient: key_mean (these values predate
// those defaults; the math they pin is unchanged).
//
// Regenerating (only when the training math changes on purpose: the FM kernel, the loss,
// an optimizer, initialisation, batching, the reader or the synthetic generator): run
//   golden_bsp_test --gtest_also_run_disabled_tests --gtest_filter='*PrintGolden*'
// which prints the new constants in this file's syntax, paste them below, and say in the
// commit why the numbers moved. An unexplained change means the math changed by accident.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/data/synth.h"
#include "tests/util/test_util.h"

namespace fmps::golden {

// test_logloss after epochs 1, 2, 3.
inline const std::vector<double> kSgdLoglosses = {0.560898097, 0.555041017, 0.552088899};
inline const std::vector<double> kAdagradLoglosses = {0.550578654, 0.553877572, 0.558321178};
// Relative tolerance: the golden values have 9 significant digits; the evaluation sums
// per-row losses in double, whose order may differ between single-node and MPI runs.
inline constexpr double kRelTolerance = 1e-7;

inline SynthResult MakeData(const std::string& dir) {
  SynthOptions o;
  o.out_dir = dir;
  o.rows = 20000;
  o.test_rows = 2000;
  o.fields = 8;
  o.vocab = 500;
  o.k = 4;
  o.seed = 17;
  return Synthesize(o);
}

// The job's config file (2 servers x 2 workers in either mode; outputs go to --set).
inline std::string ConfigYaml(const SynthResult& data, const std::string& optimizer) {
  return "data:\n  train: " + data.train_path + "\n  test: " + data.test_path +
         "\n  format: libsvm\n  normalize: none\nmodel:\n  k: 4\noptimizer:\n  name: " + optimizer +
         "\n  gradient: key_mean\n  lr: " +
         (optimizer == "sgd" ? "0.01" : "0.05\n  initial_accumulator: 0") +
         "\ntrain:\n  epochs: 3\n  batch_size: 128\n  consistency: bsp\n  seed: 9\n"
         "cluster:\n  servers: 2\n  local_servers: 2\n  local_workers: 2\n";
}

// test_logloss of every evaluation event in metrics.jsonl, in order.
inline std::vector<double> EpochLoglosses(const std::string& metrics_path) {
  std::vector<double> out;
  for (const std::string& line : testing::Lines(testing::ReadFile(metrics_path))) {
    if (line.find("\"event\":\"eval\"") != std::string::npos) {
      out.push_back(testing::JsonNumber(line, "test_logloss"));
    }
  }
  return out;
}

// v with 9 significant digits.
inline std::string G9(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

// Makes the data once per test suite; trains with the golden config.
class GoldenFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    data_ = new SynthResult(MakeData(dir_->File("synth")));
  }
  static void TearDownTestSuite() {
    delete data_;
    delete dir_;
  }
  // Runs `fmps train` (under mpirun with `ranks` ranks, or single-node when 0) with the
  // config of `optimizer` and the --set options `sets`; outputs in `out`.
  static void Train(int ranks, const std::string& optimizer, const std::string& out,
                    const std::string& sets = "") {
    const std::string config = dir_->Write(optimizer + ".yaml", ConfigYaml(*data_, optimizer));
    const std::string launcher =
        ranks == 0 ? ""
                   : "timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none "
                     "--mca mpi_yield_when_idle 1 -np " +
                         std::to_string(ranks) + " ";
    std::string log;
    const int rc = testing::RunCommand(launcher + testing::FmpsBinary() + " train " + config +
                                           " --set output.dir=" + out + " " + sets,
                                       &log);
    ASSERT_EQ(rc, 0) << log;
  }
  inline static testing::TempDir* dir_ = nullptr;
  inline static SynthResult* data_ = nullptr;
};

inline void ExpectGolden(const std::vector<double>& got, const std::vector<double>& want,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t e = 0; e < want.size(); ++e) {
    EXPECT_NEAR(got[e], want[e], kRelTolerance * want[e])
        << what << ", epoch " << e + 1 << ": got " << G9(got[e]);
  }
}

}  // namespace fmps::golden
