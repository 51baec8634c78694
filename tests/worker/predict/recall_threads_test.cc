// Exact recall search on several threads (worker/predict/recall_index.h): a test of its own,
// labelled threaded so that the ThreadSanitizer run covers the search threads (recall_test
// also runs Faiss, whose OpenMP runtime ThreadSanitizer cannot see into).

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "worker/predict/recall_index.h"

namespace fmps {
namespace {

TEST(RecallThreadsTest, ExactSearchGivesTheBruteForceListsOnAnyThreadCount) {
  const int dim = 4, k = 9;
  const std::size_t n = 3000, nu = 200;  // users over several threads and blocks
  std::mt19937 rng(3);
  std::vector<float> items(n * dim), users(nu * dim);
  for (float& x : items) x = static_cast<float>(rng() % 3);  // coarse: many ties
  for (float& x : users) x = static_cast<float>(rng() % 3);
  std::vector<std::vector<std::uint32_t>> exclude(nu);
  for (std::size_t u = 0; u < nu; u += 2) exclude[u] = {1, 2, 2999};
  const RecallQuery q{users.data(), nu, k, exclude};
  for (int threads : {1, 2, 5}) {
    std::vector<TopK> got;
    MakeRecallIndex("exact", items.data(), n, dim, threads)->Search(q, &got);
    ASSERT_EQ(got.size(), nu);
    for (std::size_t u = 0; u < nu; ++u) {
      std::vector<float> scores(n, 0.0f);
      for (std::size_t i = 0; i < n; ++i) {
        for (int f = 0; f < dim; ++f) scores[i] += users[u * dim + f] * items[i * dim + f];
      }
      EXPECT_EQ(got[u].items, BruteForceTopK(scores, k, exclude[u]).items)
          << "user " << u << ", " << threads << " threads";
    }
  }
}

}  // namespace
}  // namespace fmps
