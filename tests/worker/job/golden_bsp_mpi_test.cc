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

using GoldenBspMpiTest = golden::GoldenFixture;

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
