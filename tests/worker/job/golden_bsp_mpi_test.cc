// Golden per-epoch test losses of a fixed bsp job under mpirun, 2 servers + 2 workers
// (see golden_bsp.h): the same values as in single-node mode. And a 3-worker bsp job under
// mpirun gives the single-node model bit for bit.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/model/model_file.h"
#include "tests/util/test_util.h"
#include "tests/worker/job/golden_bsp.h"

namespace fmps {
namespace {

using testing::TempDir;

class GoldenBspMpiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    data_ = new SynthResult(golden::MakeData(dir_->File("synth")));
  }
  static void TearDownTestSuite() {
    delete data_;
    delete dir_;
  }
  // Runs `fmps train` (under mpirun with `ranks` ranks, or single-node when 0) with the
  // golden config and `sets`; output in `out`.
  static void Train(int ranks, const std::string& optimizer, const std::string& out,
                    const std::string& sets = "") {
    const std::string config =
        dir_->Write(optimizer + ".yaml", golden::ConfigYaml(*data_, optimizer));
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
  static TempDir* dir_;
  static SynthResult* data_;
};
TempDir* GoldenBspMpiTest::dir_ = nullptr;
SynthResult* GoldenBspMpiTest::data_ = nullptr;

TEST_F(GoldenBspMpiTest, TwoServersTwoWorkersMatchTheGoldenLosses) {
  for (const char* optimizer : {"sgd", "adagrad"}) {
    TempDir out;
    Train(4, optimizer, out.path());
    golden::ExpectGolden(golden::EpochLoglosses(out.File("metrics.jsonl")),
                         optimizer[0] == 's' ? golden::kSgdLoglosses : golden::kAdagradLoglosses,
                         optimizer);
  }
}

// Three workers (where the order of a step's sum shows): 1 server rank + 3 worker ranks
// equal 3 server threads + 3 worker threads exactly.
TEST_F(GoldenBspMpiTest, ThreeWorkersGiveTheSingleNodeModelBitForBit) {
  TempDir local, mpi;
  Train(0, "adagrad", local.path(), "--set cluster.local_workers=3 --set cluster.local_servers=3");
  Train(4, "adagrad", mpi.path(), "--set cluster.servers=1");
  const Model a = Model::Load(local.File("model.fmps")), b = Model::Load(mpi.File("model.fmps"));
  EXPECT_EQ(testing::MaxAbsDiff(a, b), 0.0);
  EXPECT_EQ(a.meta().bias, b.meta().bias);
}

}  // namespace
}  // namespace fmps
