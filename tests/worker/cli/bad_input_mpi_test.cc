// The one bad-input case that needs mpirun (kept apart so that bad_input_test, labelled
// single-node, also runs under the sanitizers): cluster.servers must leave a worker rank.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/util/test_util.h"

namespace fmps {
namespace {

using ::fmps::testing::FmpsBinary;
using ::fmps::testing::Lines;
using ::fmps::testing::ReadFile;
using ::fmps::testing::RunCommand;
using ::fmps::testing::TempDir;

TEST(BadInputMpiTest, ServersAtLeastWorldSize) {
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0) GTEST_SKIP() << "no mpirun";
  TempDir dir;
  std::string rows;
  for (int i = 0; i < 100; ++i)
    rows += std::to_string(i % 2) + " " + std::to_string(i % 7) + ":1\n";
  const std::string data = dir.Write("data.libsvm", rows);
  const std::string out = dir.File("run");
  const std::string cfg = dir.Write(
      "exp.yaml", "data:\n  train: " + data +
                      "\n  format: libsvm\nmodel:\n  k: 2\noutput:\n  dir: " + out + "\n");
  for (const char* servers : {"2", "3"}) {
    SCOPED_TRACE(servers);
    std::string ignored;
    const std::string err_path = dir.File("stderr.txt");
    std::string cmd =
        "(timeout 60 mpirun --allow-run-as-root --oversubscribe --bind-to none --mca "
        "mpi_yield_when_idle 1 -np 2 ";
    cmd += FmpsBinary() + " train " + cfg + " --set cluster.servers=" + servers + " 2>" + err_path +
           ")";
    const int code = RunCommand(cmd, &ignored);
    const std::string err = ReadFile(err_path);
    EXPECT_NE(code, 0) << err;
    EXPECT_NE(code, 124) << "timed out";
    int errors = 0;
    for (const auto& l : Lines(err)) errors += l.rfind("fmps: error: ", 0) == 0;
    EXPECT_EQ(errors, 1) << err;  // one rank reports it, once
    EXPECT_NE(err.find("cluster.servers"), std::string::npos) << err;
    EXPECT_FALSE(std::filesystem::exists(out + "/model.fmps"));
  }
}

}  // namespace
}  // namespace fmps
