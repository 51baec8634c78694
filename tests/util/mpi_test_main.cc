// main() of the MPI test executables (fmps_mpitest): MPI init/finalize around
// RUN_ALL_TESTS; ranks other than 0 print only their failures; the exit status is the same
// on every rank (non-zero if any rank failed a test).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "common/comm/mpi/mpi_transport.h"

namespace fmps {
namespace {

// On ranks other than 0: prints failures only, prefixed with the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed()) {
      std::printf("[rank %d] %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                  r.line_number(), r.message());
    }
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::printf("[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(), info.name());
    }
  }

 private:
  int rank_;
};

}  // namespace
}  // namespace fmps

int main(int argc, char** argv) {
  fmps::MpiSession session(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (session.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new fmps::RankFailurePrinter(session.rank()));
  }
  const int failed = RUN_ALL_TESTS() == 0 ? 0 : 1;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (session.rank() == 0 && any_failed) std::printf("some rank failed a test\n");
  std::fflush(stdout);
  session.Finalize();
  return any_failed;
}
