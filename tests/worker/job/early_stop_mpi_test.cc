// Early stopping under mpirun (2 servers + 2 workers, bsp): the golden early-stopping job
// stops at the same epoch as in single-node mode and writes the best epoch's model, also
// when resumed from a checkpoint taken after the best epoch.
#include <gtest/gtest.h>

#include <string>

#include "tests/util/test_util.h"
#include "tests/worker/job/early_stop_util.h"
#include "tests/worker/job/golden_bsp.h"

namespace fmps {
namespace {

using testing::TempDir;
namespace es = early_stop_golden;

using EarlyStopMpiTest = golden::GoldenFixture;

TEST_F(EarlyStopMpiTest, BspStopsAtTheGoldenEpochAndKeepsItAcrossResume) {
  const std::string valid = data_->test_path;
  {
    TempDir out;
    Train(4, "adagrad", out.path(), es::Sets(valid));
    es::ExpectGoldenRun(out, valid);
  }
  TempDir out, ckpt;
  const std::string sets =
      es::Sets(valid) + " --set checkpoint.dir=" + ckpt.path() + " --set checkpoint.keep=1";
  Train(4, "adagrad", out.path(), sets + " --set train.epochs=5");
  Train(4, "adagrad", out.path(), sets + " --resume");
  es::ExpectGoldenRun(out, valid);
}

}  // namespace
}  // namespace fmps
