// KeyIndex (common/base/key_index.h) against std::unordered_map, and the worker's minibatch
// deduplication built on it.
#include "common/base/key_index.h"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>
#include <vector>

#include "worker/batch_prefetcher.h"

namespace fmps {
namespace {

TEST(KeyIndexTest, MatchesUnorderedMapThroughGrowthAndClears) {
  KeyIndex index(4);  // small: forces several rehashes
  std::mt19937_64 rng(7);
  for (int round = 0; round < 4; ++round) {
    std::unordered_map<Key, std::uint32_t> ref;
    std::vector<Key> order;
    const int n = round == 2 ? 50 : 20000;  // a small round exercises the sparse Clear
    for (int i = 0; i < n; ++i) {
      // Zero (the dummy slot's key), kBiasKey and repeats included.
      const Key key = i % 7 == 0    ? 0
                      : i % 11 == 0 ? kBiasKey
                                    : rng() % 5000 + (rng() & 1) * (1ull << 40);
      bool inserted = false;
      const std::uint32_t idx = index.Insert(key, &inserted);
      const auto [it, fresh] = ref.emplace(key, static_cast<std::uint32_t>(order.size()));
      if (fresh) order.push_back(key);
      ASSERT_EQ(inserted, fresh) << "key " << key;
      ASSERT_EQ(idx, it->second) << "key " << key;
    }
    ASSERT_EQ(index.size(), order.size());
    ASSERT_TRUE(std::equal(order.begin(), order.end(), index.keys().begin(), index.keys().end()));
    for (const auto& [key, idx] : ref) ASSERT_EQ(index.Find(key), idx);
    EXPECT_EQ(index.Find(123456789ull << 20), KeyIndex::kNotFound);
    // FindMany agrees with Find, for present and absent keys, across its pipeline stages.
    std::vector<Key> probe;
    for (int i = 0; i < 3000; ++i)
      probe.push_back(i % 3 == 0 ? rng() : order[rng() % order.size()]);
    for (std::size_t m : {std::size_t{0}, std::size_t{1}, std::size_t{17}, probe.size()}) {
      std::vector<std::uint32_t> got(m, 12345u);
      index.FindMany(probe.data(), m, got.data());
      for (std::size_t i = 0; i < m; ++i) ASSERT_EQ(got[i], index.Find(probe[i])) << i;
    }
    index.Clear();
    EXPECT_EQ(index.size(), 0u);
    for (const auto& [key, idx] : ref) ASSERT_EQ(index.Find(key), KeyIndex::kNotFound);
  }
}

TEST(KeyIndexTest, DeduplicateCountsEveryOccurrence) {
  PreparedBatch b;
  const std::vector<std::vector<Key>> rows = {{5, 9, 5}, {9}, {0, 7, 5}};
  for (const auto& r : rows) {
    for (Key k : r) {
      b.block.keys.push_back(k);
      b.block.values.push_back(1.0f);
    }
    b.block.labels.push_back(1.0f);
    b.block.offsets.push_back(b.block.keys.size());
  }
  KeyIndex index;
  for (int pass = 0; pass < 2; ++pass) {  // a reused batch and index give the same result
    b.Deduplicate(&index);
    const std::vector<Key> want_keys = {kBiasKey, 5, 9, 0, 7};
    EXPECT_EQ(b.keys, want_keys);
    EXPECT_EQ(b.counts, (std::vector<std::uint32_t>{3, 3, 2, 1, 1}));
    EXPECT_EQ(b.local, (std::vector<std::uint32_t>{1, 2, 1, 2, 3, 4, 1}));
  }
  // Without counting: the same keys and indices, no counts.
  b.Deduplicate(&index, /*count=*/false);
  EXPECT_EQ(b.keys, (std::vector<Key>{kBiasKey, 5, 9, 0, 7}));
  EXPECT_EQ(b.local, (std::vector<std::uint32_t>{1, 2, 1, 2, 3, 4, 1}));
  EXPECT_TRUE(b.counts.empty());
}

}  // namespace
}  // namespace fmps
