// SIGTERM and SIGINT in single-node mode, through the binary: the job stops with one line
// and the exit status 128 + signal, leaves no incomplete checkpoint or output file, and
// with checkpoint.dir set SIGTERM first writes a checkpoint that `--resume` continues from
// without losing anything (bsp: the same model as an uninterrupted run).
#include <gtest/gtest.h>

#include <string>

#include "tests/util/signal_job.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::FmpsBinary;

constexpr int kRows = 300000;

class SignalTest : public testing::SignalJobTest {
 protected:
  SignalTest() : SignalJobTest(kRows) {}
  // A bsp job of 3 epochs with 2 local workers.
  std::string Config(const std::string& run, bool ckpt) const {
    return SignalJobTest::Config(run, ckpt, 3, "  local_workers: 2\n");
  }
  const Launch launch_{FmpsBinary(), "kill -", " $pid", 3};
};

TEST_F(SignalTest, SigtermWritesACheckpointAndResumeLosesNothing) {
  ExpectSigtermCheckpointsAndResumeLosesNothing(launch_, Config("run", true),
                                                Config("plain", false));
}

TEST_F(SignalTest, SigintWithoutCheckpointsLeavesNoOutput) {
  ExpectSigintLeavesNoOutput(launch_, Config("run", false));
}

}  // namespace
}  // namespace fmps
