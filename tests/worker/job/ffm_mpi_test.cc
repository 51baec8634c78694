// Field-aware FM under mpirun: the bsp model is the same on every topology (single-node with
// two workers, MPI 1 server + 2 workers, MPI 2 servers + 2 workers), so FFM's wider rows
// travel and shard correctly; the model written by the coordinator is an FFM model.
#include <gtest/gtest.h>

#include <string>

#include "common/model/model_file.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::FmpsBinary;
using testing::MaxAbsDiff;
using testing::RunCommand;
using testing::TempDir;

std::string Mpirun(int ranks) {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 "
         "-np " +
         std::to_string(ranks) + " " + FmpsBinary();
}

TEST(FfmMpiTest, BspModelIsTheSameOnEveryTopology) {
  TempDir dir, local, one, two;
  std::string out;
  ASSERT_EQ(RunCommand(FmpsBinary() + " synth --out " + dir.File("d") +
                           " --format libffm --model ffm --fields 4 --vocab 200 --k 4 "
                           "--rows 20000 --test-rows 2000 --seed 7",
                       &out),
            0)
      << out;
  const std::string cfg = dir.Write(
      "exp.yaml", "data:\n  train: " + dir.File("d/train.libffm") + "\n  test: " +
                      dir.File("d/test.libffm") +
                      "\n  format: libffm\nmodel:\n  kind: ffm\n  fields: 4\n  k: 4\n"
                      "train:\n  epochs: 2\n  batch_size: 256\n  consistency: bsp\n");
  auto train = [&](const std::string& command, const TempDir& o, const std::string& sets) {
    EXPECT_EQ(RunCommand(command + " train " + cfg + " --set output.dir=" + o.path() + " " + sets +
                             " 2>&1",
                         &out),
              0)
        << out;
  };
  train(FmpsBinary(), local, "--set cluster.local_workers=2");
  train(Mpirun(3), one, "--set cluster.servers=1");
  train(Mpirun(4), two, "--set cluster.servers=2");
  const Model reference = Model::Load(local.File("model.fmps"));
  EXPECT_EQ(reference.shape(), FfmShape(4, 4));
  EXPECT_LE(MaxAbsDiff(reference, Model::Load(one.File("model.fmps"))), 1e-5);
  EXPECT_LE(MaxAbsDiff(reference, Model::Load(two.File("model.fmps"))), 1e-5);
}

}  // namespace
}  // namespace fmps
