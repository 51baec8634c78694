// InProcCollectives between real threads: every operation with several workers (variable
// lengths, empty contributions, repeated rounds), the non-blocking progress post, and an
// abort that frees the workers waiting in a collective.
#include "common/comm/collectives.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/base/error.h"

namespace fmps {
namespace {

constexpr int kWorkers = 4;

// Runs fn(collectives) on kWorkers threads of one group and joins them.
void OnWorkers(InProcCollectiveGroup* group, const std::function<void(Collectives&)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < group->size(); ++r) {
    threads.emplace_back([group, r, &fn] {
      InProcCollectives c(group, r);
      fn(c);
    });
  }
  for (auto& t : threads) t.join();
}

TEST(InProcCollectivesTest, GatherCollectsEveryRankInOrderAtTheRootOnly) {
  InProcCollectiveGroup group(kWorkers, 2);
  std::vector<std::vector<double>> got(kWorkers);
  OnWorkers(&group, [&](Collectives& c) {
    const std::array<double, 2> mine = {static_cast<double>(c.rank()), 10.0 * c.rank() + 0.5};
    got[c.rank()] = c.Gather(mine);
  });
  EXPECT_EQ(got[0], (std::vector<double>{0, 0.5, 1, 10.5, 2, 20.5, 3, 30.5}));
  for (int r = 1; r < kWorkers; ++r) EXPECT_TRUE(got[r].empty()) << r;
}

TEST(InProcCollectivesTest, VariableLengthGathersKeepRankOrderIncludingEmptyRanks) {
  InProcCollectiveGroup group(kWorkers, 2);
  std::vector<std::vector<float>> floats(kWorkers);
  std::vector<std::vector<std::string>> bytes(kWorkers);
  OnWorkers(&group, [&](Collectives& c) {
    // Rank r contributes r floats r*100 + i (rank 0: none) and r copies of 'a' + r.
    std::vector<float> mine;
    for (int i = 0; i < c.rank(); ++i) mine.push_back(c.rank() * 100.0f + i);
    floats[c.rank()] = c.GatherV(mine);
    bytes[c.rank()] = c.GatherBytes(std::string(c.rank(), static_cast<char>('a' + c.rank())));
  });
  EXPECT_EQ(floats[0], (std::vector<float>{100, 200, 201, 300, 301, 302}));
  EXPECT_EQ(bytes[0], (std::vector<std::string>{"", "b", "cc", "ddd"}));
  for (int r = 1; r < kWorkers; ++r) {
    EXPECT_TRUE(floats[r].empty()) << r;
    EXPECT_TRUE(bytes[r].empty()) << r;
  }
}

TEST(InProcCollectivesTest, AllReduceAndBroadcastReachEveryRank) {
  InProcCollectiveGroup group(kWorkers, 2);
  std::vector<std::array<std::uint64_t, 2>> sums(kWorkers), maxes(kWorkers);
  std::vector<std::string> broadcast(kWorkers);
  OnWorkers(&group, [&](Collectives& c) {
    const std::uint64_t r = c.rank();
    sums[r] = {r + 1, 1000 * r};
    c.AllReduce(sums[r], ReduceOp::kSum);
    maxes[r] = {7 * r, 100 - r};
    c.AllReduce(maxes[r], ReduceOp::kMax);
    broadcast[r] = c.is_root() ? "from the root" : "ignored " + std::to_string(r);
    c.Broadcast(&broadcast[r]);
  });
  for (int r = 0; r < kWorkers; ++r) {
    EXPECT_EQ(sums[r], (std::array<std::uint64_t, 2>{10, 6000})) << r;
    EXPECT_EQ(maxes[r], (std::array<std::uint64_t, 2>{21, 100})) << r;
    EXPECT_EQ(broadcast[r], "from the root") << r;
  }
}

TEST(InProcCollectivesTest, ManyRoundsNeverMixContributionsOfDifferentRounds) {
  InProcCollectiveGroup group(kWorkers, 2);
  std::atomic<int> wrong{0};
  OnWorkers(&group, [&](Collectives& c) {
    for (int round = 0; round < 300; ++round) {
      const std::array<double, 1> mine = {static_cast<double>(round * kWorkers + c.rank())};
      const std::vector<double> all = c.Gather(mine);
      for (std::size_t i = 0; i < all.size(); ++i) {
        if (all[i] != round * kWorkers + static_cast<double>(i)) ++wrong;
      }
      std::array<std::uint64_t, 1> n = {static_cast<std::uint64_t>(round)};
      c.AllReduce(n, ReduceOp::kSum);
      if (n[0] != static_cast<std::uint64_t>(round) * kWorkers) ++wrong;
    }
  });
  EXPECT_EQ(wrong.load(), 0);
}

TEST(InProcCollectivesTest, ProgressPostsAreSeenByTheRootWithoutBlocking) {
  InProcCollectiveGroup group(3, 2);
  InProcCollectives root(&group, 0), one(&group, 1), two(&group, 2);
  EXPECT_EQ(root.LatestProgress(), (std::vector<double>{0, 0, 0, 0, 0, 0}));
  const std::array<double, 2> a = {1, 2}, b = {3, 4}, c = {5, 6};
  two.PostProgress(a);
  EXPECT_EQ(root.LatestProgress(), (std::vector<double>{0, 0, 0, 0, 1, 2}));
  one.PostProgress(b);
  two.PostProgress(c);  // the latest post replaces the earlier one
  EXPECT_EQ(root.LatestProgress(), (std::vector<double>{0, 0, 3, 4, 5, 6}));
  const std::array<double, 3> wrong_width = {1, 2, 3};
  EXPECT_THROW(one.PostProgress(wrong_width), std::logic_error);
}

TEST(InProcCollectivesTest, AbortFreesWorkersWaitingInACollective) {
  InProcCollectiveGroup group(kWorkers, 2);
  std::atomic<int> aborted{0};
  std::vector<std::thread> threads;
  for (int r = 1; r < kWorkers; ++r) {  // rank 0 never arrives
    threads.emplace_back([&, r] {
      InProcCollectives c(&group, r);
      try {
        c.Barrier();
      } catch (const TransportError& e) {
        if (std::string(e.what()).find("worker 0 failed") != std::string::npos) ++aborted;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  group.Abort("worker 0 failed");
  for (auto& t : threads) t.join();
  EXPECT_EQ(aborted.load(), kWorkers - 1);
  InProcCollectives late(&group, 0);
  EXPECT_THROW(late.Barrier(), TransportError);
}

}  // namespace
}  // namespace fmps
