// Sampled negatives under mpirun: a bsp job of 1 server + 2 worker ranks trains the same
// model as single-node mode with 2 worker threads (the negatives depend on the rows only).
#include <gtest/gtest.h>

#include <string>

#include "tests/util/test_util.h"
#include "tests/worker/cli/recall_fixture.h"

namespace fmps {
namespace {

using testing::Fmps;
using testing::FmpsBinary;
using testing::Planted;
using testing::ReadFile;
using testing::RunCommand;

TEST(RecallMpiTest, NegativesGiveTheSameBspModelUnderMpirunAsSingleNode) {
  Planted p;
  Fmps("train " + p.config + " --set output.dir=" + p.dir.File("local"));
  std::string out;
  ASSERT_EQ(
      RunCommand("mpirun --allow-run-as-root --oversubscribe --bind-to none --mca "
                 "mpi_yield_when_idle 1 -np 3 " +
                     FmpsBinary() + " train " + p.config + " --set output.dir=" + p.dir.File("mpi"),
                 &out),
      0)
      << out;
  for (const char* run : {"local", "mpi"}) {
    Fmps(std::string("export --model ") + p.dir.File(run) + "/model.fmps --out " + p.dir.File(run) +
         "/export.txt");
  }
  EXPECT_EQ(ReadFile(p.dir.File("mpi/export.txt")), ReadFile(p.dir.File("local/export.txt")));
}

}  // namespace
}  // namespace fmps
