// Ranking metrics of top-k lists: see recall_metrics.h.

#include "worker/predict/recall_metrics.h"

#include <algorithm>
#include <cmath>

namespace fmps {
namespace {

bool Contains(std::vector<std::uint32_t> sorted, std::uint32_t item) {
  return std::binary_search(sorted.begin(), sorted.end(), item);
}

}  // namespace

RankingMetricsAtK RankingMetrics(const std::vector<std::vector<std::uint32_t>>& lists,
                                 const std::vector<std::vector<std::uint32_t>>& truth, int k) {
  RankingMetricsAtK m;
  m.k = k;
  for (std::size_t u = 0; u < truth.size(); ++u) {
    if (truth[u].empty()) continue;
    std::vector<std::uint32_t> t = truth[u];
    std::sort(t.begin(), t.end());
    t.erase(std::unique(t.begin(), t.end()), t.end());
    ++m.users;
    const std::vector<std::uint32_t> empty;
    const std::vector<std::uint32_t>& l = u < lists.size() ? lists[u] : empty;
    const std::size_t n = std::min<std::size_t>(l.size(), static_cast<std::size_t>(k));
    double dcg = 0.0, hits = 0.0, first = 0.0;
    for (std::size_t r = 0; r < n; ++r) {
      if (!Contains(t, l[r])) continue;
      dcg += 1.0 / std::log2(static_cast<double>(r) + 2.0);
      if (hits == 0.0) first = 1.0 / static_cast<double>(r + 1);
      hits += 1.0;
    }
    double ideal = 0.0;
    for (std::size_t r = 0; r < std::min<std::size_t>(t.size(), k); ++r) {
      ideal += 1.0 / std::log2(static_cast<double>(r) + 2.0);
    }
    m.hit_rate += hits > 0.0 ? 1.0 : 0.0;
    m.recall += hits / static_cast<double>(t.size());
    m.ndcg += dcg / ideal;
    m.mrr += first;
  }
  if (m.users > 0) {
    const double n = static_cast<double>(m.users);
    m.hit_rate /= n;
    m.recall /= n;
    m.ndcg /= n;
    m.mrr /= n;
  }
  return m;
}

double ListOverlap(const std::vector<std::vector<std::uint32_t>>& approx,
                   const std::vector<std::vector<std::uint32_t>>& exact, int k) {
  double sum = 0.0;
  std::size_t users = 0;
  for (std::size_t u = 0; u < exact.size(); ++u) {
    const std::size_t ne = std::min<std::size_t>(exact[u].size(), k);
    if (ne == 0) continue;
    std::vector<std::uint32_t> e(exact[u].begin(), exact[u].begin() + ne);
    std::sort(e.begin(), e.end());
    std::size_t common = 0;
    if (u < approx.size()) {
      const std::size_t na = std::min<std::size_t>(approx[u].size(), k);
      for (std::size_t r = 0; r < na; ++r) common += Contains(e, approx[u][r]) ? 1 : 0;
    }
    sum += static_cast<double>(common) / static_cast<double>(ne);
    ++users;
  }
  return users == 0 ? 0.0 : sum / static_cast<double>(users);
}

}  // namespace fmps
