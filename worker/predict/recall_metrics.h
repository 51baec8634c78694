// Ranking metrics of top-k lists against held-out items (`fmps recall --truth`).
//
// For a user with relevant set T (non-empty) and list L (best first), at cut-off K:
//   HitRate@K = 1 if some item of L[0..K) is in T, else 0;
//   Recall@K  = |L[0..K) ∩ T| / |T|;
//   NDCG@K    = sum over hits at 0-based rank r < K of 1/log2(r + 2), divided by the same sum
//               for min(|T|, K) hits at ranks 0, 1, ... (binary relevance);
//   MRR@K     = 1 / (rank + 1) of the first hit within K, else 0.
// Each is the mean over users with a non-empty T (users without a list count as empty
// lists). Overlap@K (approximate vs exact lists) = |A[0..K) ∩ E[0..K)| / |E[0..K)|, averaged
// over users with a non-empty exact list. Pure functions, O(users * K log K).
#pragma once

#include <cstdint>
#include <vector>

namespace fmps {

struct RankingMetricsAtK {
  int k = 0;
  std::size_t users = 0;  // users with a non-empty truth
  double hit_rate = 0.0, recall = 0.0, ndcg = 0.0, mrr = 0.0;
};

// lists[u] and truth[u] are item indices of user u (truth in any order).
RankingMetricsAtK RankingMetrics(const std::vector<std::vector<std::uint32_t>>& lists,
                                 const std::vector<std::vector<std::uint32_t>>& truth, int k);

double ListOverlap(const std::vector<std::vector<std::uint32_t>>& approx,
                   const std::vector<std::vector<std::uint32_t>>& exact, int k);

}  // namespace fmps
