// MpiCollectives between real MPI ranks (run by ctest under mpiexec with 3 ranks): every
// operation over MPI_COMM_WORLD, variable-length gathers with an empty rank, progress posts
// settled by FinishProgress, and the collectives of a sub-communicator (the worker ranks of
// a job whose rank 0 is a server).
#include <gtest/gtest.h>
#include <mpi.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/comm/mpi/mpi_collectives.h"

namespace fmps {
namespace {

int WorldSize() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

TEST(MpiCollectivesTest, GatherAndVariableLengthGathersKeepRankOrder) {
  MpiCollectives c(MPI_COMM_WORLD, 2);
  ASSERT_EQ(c.size(), WorldSize());
  const std::array<double, 2> mine = {static_cast<double>(c.rank()), c.rank() + 0.25};
  const std::vector<double> all = c.Gather(mine);
  std::vector<float> floats;
  for (int i = 0; i < c.rank(); ++i) floats.push_back(c.rank() * 100.0f + i);  // rank 0: none
  const std::vector<float> all_floats = c.GatherV(floats);
  const std::vector<std::string> all_bytes =
      c.GatherBytes(std::string(c.rank(), static_cast<char>('a' + c.rank())));
  if (!c.is_root()) {
    EXPECT_TRUE(all.empty());
    EXPECT_TRUE(all_floats.empty());
    EXPECT_TRUE(all_bytes.empty());
    return;
  }
  std::vector<double> want;
  std::vector<float> want_floats;
  std::vector<std::string> want_bytes;
  for (int r = 0; r < c.size(); ++r) {
    want.insert(want.end(), {static_cast<double>(r), r + 0.25});
    for (int i = 0; i < r; ++i) want_floats.push_back(r * 100.0f + i);
    want_bytes.push_back(std::string(r, static_cast<char>('a' + r)));
  }
  EXPECT_EQ(all, want);
  EXPECT_EQ(all_floats, want_floats);
  EXPECT_EQ(all_bytes, want_bytes);
}

TEST(MpiCollectivesTest, AllReduceAndBroadcastReachEveryRank) {
  MpiCollectives c(MPI_COMM_WORLD, 2);
  const std::uint64_t r = c.rank(), n = c.size();
  std::array<std::uint64_t, 2> sum = {r + 1, 1000 * r};
  c.AllReduce(sum, ReduceOp::kSum);
  EXPECT_EQ(sum[0], n * (n + 1) / 2);
  EXPECT_EQ(sum[1], 1000 * n * (n - 1) / 2);
  std::array<std::uint64_t, 2> max = {7 * r, 100 - r};
  c.AllReduce(max, ReduceOp::kMax);
  EXPECT_EQ(max[0], 7 * (n - 1));
  EXPECT_EQ(max[1], 100u);
  std::string text = c.is_root() ? std::string("from the root") : std::string(50, 'x');
  c.Broadcast(&text);
  EXPECT_EQ(text, "from the root");
  c.Barrier();
}

TEST(MpiCollectivesTest, FinishProgressDeliversEveryPostToTheRoot) {
  MpiCollectives c(MPI_COMM_WORLD, 2);
  for (int i = 1; i <= 20; ++i) {
    const std::array<double, 2> counters = {static_cast<double>(c.rank()), static_cast<double>(i)};
    c.PostProgress(counters);
    if (c.is_root()) c.LatestProgress();  // non-blocking; may see any earlier post
  }
  c.FinishProgress();
  if (!c.is_root()) return;
  const std::vector<double> latest = c.LatestProgress();
  ASSERT_EQ(latest.size(), static_cast<std::size_t>(2 * c.size()));
  for (int r = 0; r < c.size(); ++r) {
    EXPECT_EQ(latest[2 * r], r);
    EXPECT_EQ(latest[2 * r + 1], 20) << "rank " << r << "'s last post";
  }
}

TEST(MpiCollectivesTest, WorkerSubCommunicatorExcludesTheServerRank) {
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  const bool server = world_rank == 0;
  MPI_Comm workers = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, server ? 0 : 1, world_rank, &workers);
  if (!server) {
    MpiCollectives c(workers, 1);
    EXPECT_EQ(c.size(), WorldSize() - 1);
    EXPECT_EQ(c.rank(), world_rank - 1);
    std::vector<float> mine(world_rank * 3, static_cast<float>(world_rank));
    const std::vector<float> all = c.GatherV(mine);
    if (c.is_root()) {
      std::vector<float> want;
      for (int w = 1; w < WorldSize(); ++w) want.insert(want.end(), w * 3, static_cast<float>(w));
      EXPECT_EQ(all, want);
    }
  }
  MPI_Comm_free(&workers);
}

}  // namespace
}  // namespace fmps
