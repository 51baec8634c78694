#include "server/store/param_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <numbers>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/base/hash.h"

namespace fmps {
namespace {

std::unique_ptr<Optimizer> MakeNamed(OptimizerName name) {
  OptimizerConfig c;
  c.name = name;
  c.lr = 0.1f;
  c.l1 = name == OptimizerName::kFtrl ? 0.01f : 0.0f;
  return MakeOptimizer(c);
}

constexpr OptimizerName kAllOptimizers[] = {OptimizerName::kSgd, OptimizerName::kAdagrad,
                                            OptimizerName::kAdam, OptimizerName::kFtrl};

std::vector<float> PullOne(ParamStore& store, Key key, bool create) {
  std::vector<float> row(store.row_width());
  store.Pull(&key, 1, create, row.data());
  return row;
}

std::vector<float> Embedding(std::uint64_t seed, Key key, int k, float std) {
  std::vector<float> v(k);
  InitialEmbedding(seed, key, k, std, v.data());
  return v;
}

// Unique random keys (never kBiasKey).
std::vector<Key> RandomKeys(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Key> keys(n);
  for (Key& k : keys) {
    do {
      k = rng();
    } while (k == kBiasKey);
  }
  std::vector<Key> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
  return keys;
}

TEST(ParamStoreTest, PullCreatesRowsWithInitialValues) {
  StoreOptions o{.shape = FmShape(4), .init_std = 0.1f, .seed = 7};
  ParamStore store(o, MakeNamed(OptimizerName::kAdagrad));
  EXPECT_EQ(store.shape(), FmShape(4));
  EXPECT_EQ(store.row_width(), 5);
  const Key keys[3] = {1, 2, 42};
  std::vector<float> out(15, -1.0f);
  store.Pull(keys, 3, true, out.data());
  EXPECT_EQ(store.size(), 3u);
  EXPECT_EQ(store.embedded(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(out[i * 5], 0.0f);
    const std::vector<float> v = Embedding(7, keys[i], 4, 0.1f);
    for (int f = 0; f < 4; ++f) EXPECT_EQ(out[i * 5 + 1 + f], v[f]) << i << " " << f;
    // Not all zero: the embedding is really there.
    EXPECT_NE(std::count(v.begin(), v.end(), 0.0f), 4);
  }
  // Pulling again returns the same rows and creates nothing.
  std::vector<float> again(15);
  store.Pull(keys, 3, true, again.data());
  EXPECT_EQ(again, out);
  EXPECT_EQ(store.size(), 3u);
}

// Pull copies rows with code specialised by width (whole 8-float blocks, then 4, 2, 1):
// every width up to 5 blocks and a wide one, with and without lazily allocated v, returns
// exactly what Set stored, and writes nothing past the row.
TEST(ParamStoreTest, PullCopiesRowsOfEveryWidthExactly) {
  for (int k : {1, 2, 3, 4, 5, 7, 8, 9, 11, 15, 16, 17, 23, 24, 31, 32, 33, 39, 40, 47, 100}) {
    for (std::uint32_t min_count : {0u, 2u}) {
      const StoreOptions o{
          .shape = FmShape(k), .init_std = 0.1f, .seed = 5, .min_count = min_count};
      ParamStore store(o, MakeNamed(OptimizerName::kAdagrad));
      const int w = store.row_width();
      const Key keys[2] = {11, 12};
      for (int i = 0; i < 2; ++i) {
        std::vector<float> row(w);
        for (int f = 0; f < w; ++f) row[f] = static_cast<float>(1000 * i + f + 1);
        store.Set(keys[i], row.data());
      }
      std::vector<float> out(2 * w + 1, -7.0f);
      store.Pull(keys, 2, false, out.data());
      for (int i = 0; i < 2; ++i) {
        for (int f = 0; f < w; ++f) {
          ASSERT_EQ(out[i * w + f], static_cast<float>(1000 * i + f + 1))
              << "k " << k << " min_count " << min_count << " key " << i << " float " << f;
        }
      }
      EXPECT_EQ(out[2 * w], -7.0f) << "k " << k;
    }
  }
}

TEST(ParamStoreTest, RowsDoNotDependOnInsertionOrderOrOtherKeys) {
  const StoreOptions o{.shape = FmShape(8), .init_std = 0.05f, .seed = 3};
  const std::vector<Key> shared = RandomKeys(3000, 1);
  const std::vector<Key> others = RandomKeys(20000, 2);
  ParamStore a(o, MakeNamed(OptimizerName::kFtrl));
  ParamStore b(o, MakeNamed(OptimizerName::kFtrl));
  // a: shared keys in order, one at a time. b: other keys interleaved, shared reversed,
  // in large batches (different table sizes and row positions when they are created).
  for (Key k : shared) PullOne(a, k, true);
  std::vector<Key> mixed;
  std::size_t next_shared = 0;
  for (std::size_t i = 0; i < others.size(); ++i) {
    mixed.push_back(others[i]);
    if (i % 6 == 0 && next_shared < shared.size()) {
      mixed.push_back(shared[shared.size() - 1 - next_shared++]);
    }
  }
  while (next_shared < shared.size()) mixed.push_back(shared[shared.size() - 1 - next_shared++]);
  std::vector<float> sink(mixed.size() * b.row_width());
  b.Pull(mixed.data(), mixed.size(), true, sink.data());
  ASSERT_EQ(b.size(), others.size() + shared.size());
  // The same push on the shared keys in both.
  std::vector<float> grads(shared.size() * 9);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  for (float& g : grads) g = normal(rng);
  a.Push(shared.data(), shared.size(), grads.data(), nullptr);
  b.Push(shared.data(), shared.size(), grads.data(), nullptr);
  std::vector<float> ra(shared.size() * 9);
  std::vector<float> rb(shared.size() * 9);
  a.Pull(shared.data(), shared.size(), false, ra.data());
  b.Pull(shared.data(), shared.size(), false, rb.data());
  EXPECT_EQ(ra, rb);
}

TEST(InitialEmbeddingTest, IsNormalWithTheGivenStd) {
  const int k = 16;
  const int keys = 20000;
  const double std_target = 0.01;
  std::vector<double> sum(k, 0.0), sum2(k, 0.0);
  double all_sum = 0, all_sum2 = 0, all_sum4 = 0, cross = 0;
  std::vector<float> v(k);
  for (int i = 0; i < keys; ++i) {
    InitialEmbedding(11, static_cast<Key>(i), k, static_cast<float>(std_target), v.data());
    for (int f = 0; f < k; ++f) {
      const double x = v[f] / std_target;
      sum[f] += x;
      sum2[f] += x * x;
      all_sum += x;
      all_sum2 += x * x;
      all_sum4 += x * x * x * x;
    }
    cross += (v[0] / std_target) * (v[1] / std_target);  // a Box-Muller pair
  }
  const double n = static_cast<double>(keys) * k;
  const double mean = all_sum / n;
  const double var = all_sum2 / n - mean * mean;
  // Standard errors: mean 1/sqrt(n) = 0.0018, std 1/sqrt(2n) = 0.0013, kurtosis
  // sqrt(24/n) = 0.0087: bounds of 5-10 standard errors.
  EXPECT_LT(std::fabs(mean), 0.01);
  EXPECT_NEAR(std::sqrt(var), 1.0, 0.01);
  EXPECT_NEAR(all_sum4 / n / (var * var), 3.0, 0.08);  // normal, not uniform (1.8)
  EXPECT_LT(std::fabs(cross / keys), 0.04);
  for (int f = 0; f < k; ++f) {
    // Per field: standard errors 0.007 (mean) and 0.005 (std).
    const double m = sum[f] / keys;
    EXPECT_LT(std::fabs(m), 0.04) << "field " << f;
    EXPECT_NEAR(std::sqrt(sum2[f] / keys - m * m), 1.0, 0.03) << "field " << f;
  }
}

// InitialEmbedding's angles come from a cos/sin table plus a Taylor-series residual: they
// must agree with std::cos / std::sin of the same Box-Muller angle (the formula it replaced)
// to float precision, over every table entry (keys spread the angles uniformly).
TEST(InitialEmbeddingTest, MatchesBoxMullerWithLibmCosSin) {
  const int k = 8;
  const float std_dev = 0.1f;
  std::vector<float> v(k);
  double worst = 0.0;
  for (Key key = 0; key < 50000; ++key) {
    InitialEmbedding(3, key, k, std_dev, v.data());
    const std::uint64_t base = Mix64(key ^ Mix64(3 + 0x2545f4914f6cdd1dULL));
    for (int f = 0; f < k; f += 2) {
      const std::uint64_t h =
          Mix64(base + static_cast<std::uint64_t>(f / 2 + 1) * 0x9e3779b97f4a7c15ULL);
      const double u1 = (static_cast<double>(h >> 32) + 1.0) * 0x1p-32;
      const double a = 2.0 * std::numbers::pi * static_cast<double>(h & 0xffffffffu) * 0x1p-32;
      const double r = std::sqrt(-2.0 * std::log(u1)) * std_dev;
      // Relative to the pair's radius: a wrong angle shows as an error of order r.
      worst = std::max(worst, std::fabs(v[f] - r * std::cos(a)) / r);
      worst = std::max(worst, std::fabs(v[f + 1] - r * std::sin(a)) / r);
    }
  }
  EXPECT_LT(worst, 1e-6);
}

// The bits of the initial embeddings are part of every trained model (and of the golden
// losses): a digest of them over widths that exercise every block and tail of the
// vectorised code, pinned to the value the pair-at-a-time code gave.
TEST(InitialEmbeddingTest, BitsArePinnedAcrossWidths) {
  std::uint64_t digest = 1469598103934665603ULL;  // FNV-1a over the floats' bits
  std::vector<float> v(312);
  for (int k : {1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 312}) {
    for (std::uint64_t i = 1; i <= 1000; ++i) {
      InitialEmbedding(5, i * 0x9e3779b97f4a7c15ULL, k, 0.01f, v.data());
      for (int f = 0; f < k; ++f) {
        std::uint32_t bits;
        std::memcpy(&bits, &v[f], sizeof(bits));
        digest = (digest ^ bits) * 1099511628211ULL;
      }
    }
  }
  EXPECT_EQ(digest, 0xdffe6d6e26deea76ULL);
}

TEST(InitialEmbeddingTest, DependsOnSeedKeyAndFieldOnly) {
  const std::vector<float> a = Embedding(1, 1234, 8, 0.1f);
  EXPECT_EQ(a, Embedding(1, 1234, 8, 0.1f));
  EXPECT_NE(a, Embedding(2, 1234, 8, 0.1f));
  EXPECT_NE(a, Embedding(1, 1235, 8, 0.1f));
  // A longer row extends the shorter one (field f does not depend on k); odd k works.
  const std::vector<float> b = Embedding(1, 1234, 13, 0.1f);
  for (int f = 0; f < 8; ++f) EXPECT_EQ(a[f], b[f]);
  // Fields differ from each other, scale is linear in std, std = 0 gives zeros.
  EXPECT_EQ(std::count(b.begin(), b.end(), b[0]), 1);
  const std::vector<float> c = Embedding(1, 1234, 8, 0.2f);
  for (int f = 0; f < 8; ++f) EXPECT_NEAR(c[f], 2 * a[f], 1e-6f);
  for (float x : Embedding(1, 1234, 8, 0.0f)) EXPECT_EQ(x, 0.0f);
}

TEST(ParamStoreTest, PushAppliesExactlyOneOptimizerStepPerKey) {
  for (OptimizerName name : kAllOptimizers) {
    SCOPED_TRACE(ToString(name));
    const int k = 4;
    const StoreOptions o{
        .shape = FmShape(k), .init_std = 0.1f, .seed = 9, .l2_w = 0.01f, .l2_v = 0.02f};
    ParamStore store(o, MakeNamed(name));
    auto opt = MakeNamed(name);
    const int s = opt->state_floats();
    const std::vector<Key> keys = {3, 99, 123456789};
    // The reference: each key's groups updated by hand with a separate optimizer.
    struct Manual {
      float w = 0;
      std::vector<float> v, ws, vs;
      std::uint32_t step_w = 0, step_v = 0;
    };
    std::map<Key, Manual> manual;
    std::set<Key> created;
    for (Key key : keys) {
      Manual& m = manual[key];
      m.v = Embedding(9, key, k, 0.1f);
      m.ws.assign(s, 0.0f);
      m.vs.assign(s * k, 0.0f);
      opt->InitState(&m.w, m.ws.data(), 1, 0.01f);
      opt->InitState(m.v.data(), m.vs.data(), k, 0.02f);
    }
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    // Push 1: keys 3 and 99 (created by the push). Push 2: all keys (123456789 new).
    // Push 3: key 99 only.
    const std::vector<std::vector<Key>> pushes = {{3, 99}, {123456789, 99, 3}, {99}};
    for (const auto& push : pushes) {
      std::vector<float> grads(push.size() * (1 + k));
      for (float& g : grads) g = normal(rng);
      store.Push(push.data(), push.size(), grads.data(), nullptr);
      for (std::size_t i = 0; i < push.size(); ++i) {
        created.insert(push[i]);
        Manual& m = manual[push[i]];
        const float* g = grads.data() + i * (1 + k);
        opt->Update(&m.w, m.ws.data(), g, 1, 0.01f, &m.step_w);
        opt->Update(m.v.data(), m.vs.data(), g + 1, k, 0.02f, &m.step_v);
      }
      for (Key key : keys) {
        const std::vector<float> row = PullOne(store, key, false);
        const Manual& m = manual[key];
        if (created.count(key) == 0) {
          EXPECT_EQ(row, std::vector<float>(1 + k, 0.0f)) << "key " << key;
          continue;
        }
        EXPECT_EQ(row[0], m.w) << "key " << key;
        for (int f = 0; f < k; ++f) EXPECT_EQ(row[1 + f], m.v[f]) << "key " << key;
      }
    }
    EXPECT_EQ(store.size(), 3u);
  }
}

TEST(ParamStoreTest, NonFiniteGradientRowsAreSkippedAndCounted) {
  const StoreOptions o{.shape = FmShape(2), .init_std = 0.1f, .seed = 1, .min_count = 2};
  ParamStore store(o, MakeOptimizer({.name = OptimizerName::kSgd, .lr = 0.5f}));
  const Key keys[2] = {77, 78};
  const std::vector<float> init = PullOne(store, 77, true);
  const float nan = std::nanf("");
  // Key 77's row has a NaN in v, key 78's an inf in w: neither is touched, not even its
  // occurrence count (one more push of count 1 must not embed it).
  const float bad[6] = {1.0f, nan, 1.0f, INFINITY, 1.0f, 2.0f};
  const std::uint32_t counts[2] = {1, 1};
  EXPECT_EQ(store.Push(keys, 2, bad, counts), 2u);
  EXPECT_EQ(PullOne(store, 77, false), init);
  EXPECT_EQ(store.embedded(), 0u);
  const float good[6] = {1.0f, 1.0f, 1.0f, 2.0f, 1.0f, 1.0f};
  EXPECT_EQ(store.Push(keys, 2, good, counts), 0u);
  std::vector<float> row = PullOne(store, 77, false);
  EXPECT_EQ(row[0], -0.5f);
  EXPECT_EQ(PullOne(store, 78, false)[0], -1.0f);
  EXPECT_EQ(store.embedded(), 0u);  // counts now 1 each: below min_count
  // The same through row handles.
  std::vector<float> out(6);
  ParamStore::RowHandle rows[2];
  store.Pull(keys, 2, false, out.data(), rows);
  EXPECT_EQ(store.PushRows(rows, 2, bad, counts), 2u);
  EXPECT_EQ(PullOne(store, 77, false), row);
  EXPECT_EQ(store.embedded(), 0u);
}

// PushRows (handles from Pull) applies exactly what Push (keys) does, for every optimizer,
// with eager and lazy (min_count) embeddings, and rejects a handle that is not a row.
TEST(ParamStoreTest, PushRowsMatchesPush) {
  for (OptimizerName name : kAllOptimizers) {
    for (std::uint32_t min_count : {0u, 3u}) {
      const StoreOptions o{
          .shape = FmShape(5), .init_std = 0.1f, .seed = 3, .min_count = min_count};
      ParamStore by_key(o, MakeNamed(name));
      ParamStore by_row(o, MakeNamed(name));
      std::vector<Key> pool = RandomKeys(300, 11);
      pool.push_back(kBiasKey);
      std::mt19937_64 rng(5);
      std::normal_distribution<float> normal;
      for (int step = 0; step < 40; ++step) {
        std::vector<Key> keys = pool;
        std::shuffle(keys.begin(), keys.end(), rng);
        keys.resize(1 + rng() % 200);
        const std::size_t n = keys.size();
        std::vector<float> grads(n * 6);
        for (float& g : grads) g = normal(rng);
        std::vector<std::uint32_t> counts(n);
        for (auto& c : counts) c = 1 + rng() % 2;
        std::vector<float> a(n * 6), b(n * 6);
        std::vector<ParamStore::RowHandle> rows(n);
        by_key.Pull(keys.data(), n, true, a.data());
        by_row.Pull(keys.data(), n, true, b.data(), rows.data());
        ASSERT_EQ(a, b);
        by_key.Push(keys.data(), n, grads.data(), counts.data());
        by_row.PushRows(rows.data(), n, grads.data(), counts.data());
      }
      std::map<Key, std::vector<float>> ra, rb;
      by_key.ForEach([&](Key k, const float* r) { ra[k].assign(r, r + 6); });
      by_row.ForEach([&](Key k, const float* r) { rb[k].assign(r, r + 6); });
      EXPECT_EQ(ra, rb) << ToString(name) << " min_count " << min_count;
      const ParamStore::RowHandle bad = static_cast<ParamStore::RowHandle>(by_row.size());
      const float g[6] = {};
      EXPECT_THROW(by_row.PushRows(&bad, 1, g, nullptr), std::out_of_range);
    }
  }
}

TEST(ParamStoreTest, PullWithoutCreateCreatesNothing) {
  const StoreOptions o{.shape = FmShape(3), .init_std = 0.1f};
  ParamStore store(o, MakeNamed(OptimizerName::kAdam));
  const std::size_t empty_bytes = store.MemoryBytes();
  const Key keys[4] = {5, 6, kBiasKey, 8};
  std::vector<float> out(16, 1.0f);
  store.Pull(keys, 4, false, out.data());
  for (float x : out) EXPECT_EQ(x, 0.0f);
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(store.MemoryBytes(), empty_bytes);
  // Mixed present and missing keys.
  PullOne(store, 6, true);
  std::fill(out.begin(), out.end(), 1.0f);
  store.Pull(keys, 4, false, out.data());
  EXPECT_EQ(store.size(), 1u);
  const std::vector<float> v6 = Embedding(0, 6, 3, 0.1f);
  for (int i = 0; i < 4; ++i) {
    for (int f = 0; f < 4; ++f) {
      const float expected = (keys[i] == 6 && f > 0) ? v6[f - 1] : 0.0f;
      EXPECT_EQ(out[i * 4 + f], expected) << i << " " << f;
    }
  }
}

TEST(ParamStoreTest, MinCountDelaysEmbeddings) {
  const int k = 4;
  const StoreOptions o{.shape = FmShape(k), .init_std = 0.1f, .seed = 4, .min_count = 3};
  ParamStore store(o, MakeOptimizer({.name = OptimizerName::kSgd, .lr = 0.5f}));
  const Key a = 1001;
  const Key b = 2002;
  const std::vector<float> va = Embedding(4, a, k, 0.1f);
  const std::vector<float> vb = Embedding(4, b, k, 0.1f);
  // Pull(create) makes a row without v.
  std::vector<float> row = PullOne(store, a, true);
  EXPECT_EQ(row, std::vector<float>(5, 0.0f));
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(store.embedded(), 0u);
  const float g[5] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  const std::uint32_t one = 1;
  // Pushes 1 and 2 of `a` (counts 1 each): w trains, v grads dropped, v reads 0.
  for (int t = 1; t <= 2; ++t) {
    store.Push(&a, 1, g, &one);
    row = PullOne(store, a, false);
    EXPECT_EQ(row[0], -0.5f * t);
    for (int f = 0; f < k; ++f) EXPECT_EQ(row[1 + f], 0.0f);
    EXPECT_EQ(store.embedded(), 0u);
  }
  // Push 3 reaches min_count: v appears at its initial value (this push's v grads dropped).
  store.Push(&a, 1, g, &one);
  row = PullOne(store, a, false);
  EXPECT_EQ(row[0], -1.5f);
  for (int f = 0; f < k; ++f) EXPECT_EQ(row[1 + f], va[f]);
  EXPECT_EQ(store.embedded(), 1u);
  // Push 4: v trains.
  store.Push(&a, 1, g, &one);
  row = PullOne(store, a, false);
  EXPECT_EQ(row[0], -2.0f);
  for (int f = 0; f < k; ++f) EXPECT_FLOAT_EQ(row[1 + f], va[f] - 0.5f);
  // Counts accumulate within a push: b with count 2 then 5 (null counts = 1 each).
  const std::uint32_t two = 2;
  store.Push(&b, 1, g, &two);
  EXPECT_EQ(store.embedded(), 1u);
  store.Push(&b, 1, g, nullptr);
  EXPECT_EQ(store.embedded(), 2u);
  row = PullOne(store, b, false);
  for (int f = 0; f < k; ++f) EXPECT_EQ(row[1 + f], vb[f]);
  // A single push with a large count embeds at once.
  const Key c = 3003;
  const std::uint32_t many = 1000;
  store.Push(&c, 1, g, &many);
  EXPECT_EQ(store.embedded(), 3u);
  // ForEach sees v = 0 for an unembedded key and the v of embedded ones.
  const Key d = 4004;
  store.Push(&d, 1, g, &one);
  int seen = 0;
  store.ForEach([&](Key key, const float* r) {
    ++seen;
    if (key == d) {
      EXPECT_EQ(r[0], -0.5f);
      for (int f = 0; f < k; ++f) EXPECT_EQ(r[1 + f], 0.0f);
    }
    if (key == b) {
      for (int f = 0; f < k; ++f) EXPECT_EQ(r[1 + f], vb[f]);
    }
  });
  EXPECT_EQ(seen, 4);
}

TEST(ParamStoreTest, AdamStepsAreCountedPerGroup) {
  // With min_count 2, w trains from the first push while v only exists from the second: at
  // the third push w takes its step 3 and v its step 1. A fresh Adam group at step 1 moves
  // by lr * g / |g| exactly (bias-corrected m / sqrt(s) = g / |g|); at step 3 with history
  // it would not.
  const int k = 2;
  const float lr = 0.1f;
  const StoreOptions o{.shape = FmShape(k), .init_std = 0.1f, .seed = 2, .min_count = 2};
  ParamStore store(o, MakeOptimizer({.name = OptimizerName::kAdam, .lr = lr}));
  const Key key = 31;
  const float g[3] = {0.5f, 0.25f, -2.0f};
  store.Push(&key, 1, g, nullptr);  // w step 1; count 1
  store.Push(&key, 1, g, nullptr);  // w step 2; count 2: v created, its grads dropped
  std::vector<float> row = PullOne(store, key, false);
  const std::vector<float> v0 = Embedding(2, key, k, 0.1f);
  EXPECT_EQ(row[1], v0[0]);
  EXPECT_EQ(row[2], v0[1]);
  store.Push(&key, 1, g, nullptr);  // w step 3, v step 1
  row = PullOne(store, key, false);
  EXPECT_NEAR(row[1], v0[0] - lr, 1e-6f);
  EXPECT_NEAR(row[2], v0[1] + lr, 1e-6f);
  // w: the same gradient three times gives m^ = g and s^ = g^2 at every step, so each step
  // is lr as well: w = -3 lr.
  EXPECT_NEAR(row[0], -3 * lr, 1e-5f);
  // The same pushes by hand with a group whose counter says 3 give a different v.
  auto opt = MakeOptimizer({.name = OptimizerName::kAdam, .lr = lr});
  float v[2] = {v0[0], v0[1]};
  float state[4] = {0, 0, 0, 0};
  std::uint32_t step = 2;
  opt->Update(v, state, g + 1, k, 0.0f, &step);
  EXPECT_GT(std::fabs(v[0] - row[1]), 1e-3f);
}

TEST(ParamStoreTest, BiasKeyIsNeverEmbedded) {
  for (std::uint32_t min_count : {0u, 1u, 2u}) {
    SCOPED_TRACE(min_count);
    const StoreOptions o{.shape = FmShape(3), .init_std = 0.1f, .min_count = min_count};
    ParamStore store(o, MakeOptimizer({.name = OptimizerName::kSgd, .lr = 0.5f}));
    const Key keys[2] = {kBiasKey, 12};
    std::vector<float> out(8);
    store.Pull(keys, 2, true, out.data());
    for (int f = 0; f < 4; ++f) EXPECT_EQ(out[f], 0.0f);
    const float g[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    const std::uint32_t counts[2] = {100, 100};
    for (int t = 0; t < 3; ++t) store.Push(keys, 2, g, counts);
    store.Pull(keys, 2, false, out.data());
    EXPECT_EQ(out[0], -1.5f);
    for (int f = 1; f < 4; ++f) EXPECT_EQ(out[f], 0.0f);
    EXPECT_EQ(out[4], -1.5f);
    EXPECT_NE(out[5], 0.0f);
    EXPECT_EQ(store.size(), 2u);
    EXPECT_EQ(store.embedded(), 1u);
    // Set cannot give it a v either.
    const float row[4] = {2, 3, 4, 5};
    store.Set(kBiasKey, row);
    const std::vector<float> got = PullOne(store, kBiasKey, false);
    EXPECT_EQ(got, std::vector<float>({2, 0, 0, 0}));
    EXPECT_EQ(store.embedded(), 1u);
  }
}

TEST(ParamStoreTest, GrowthKeepsEveryKey) {
  const int k = 8;
  const std::size_t n = 1000000;
  const StoreOptions o{.shape = FmShape(k), .init_std = 0.01f, .seed = 21};
  const float lr = 0.25f;  // power of two: w = -lr * g exactly
  ParamStore store(o, MakeOptimizer({.name = OptimizerName::kSgd, .lr = lr}));
  const std::vector<Key> keys = RandomKeys(n, 77);
  // Gradient of key: w grad = a key-derived small integer, v grads = 1.
  auto w_grad = [](Key key) { return static_cast<float>(Mix64(key) % 64) - 32.0f; };
  const std::size_t batch = 4096;
  std::vector<float> grads(batch * (1 + k), 1.0f);
  for (std::size_t base = 0; base < n; base += batch) {
    const std::size_t m = std::min(batch, n - base);
    for (std::size_t i = 0; i < m; ++i) grads[i * (1 + k)] = w_grad(keys[base + i]);
    store.Push(keys.data() + base, m, grads.data(), nullptr);
  }
  ASSERT_EQ(store.size(), n);
  ASSERT_EQ(store.embedded(), n);
  // Check every key, pulled in a different order and batching.
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(3));
  std::vector<Key> shuffled(n);
  for (std::size_t i = 0; i < n; ++i) shuffled[i] = keys[order[i]];
  std::vector<float> out(n * (1 + k));
  store.Pull(shuffled.data(), n, false, out.data());
  EXPECT_EQ(store.size(), n);
  std::size_t bad = 0;
  std::vector<float> v(k);
  for (std::size_t i = 0; i < n; ++i) {
    const Key key = shuffled[i];
    const float* r = out.data() + i * (1 + k);
    InitialEmbedding(21, key, k, 0.01f, v.data());
    bool ok = r[0] == -lr * w_grad(key);
    for (int f = 0; f < k; ++f) ok &= r[1 + f] == v[f] - lr;
    if (!ok && ++bad < 5) ADD_FAILURE() << "key " << key << " at " << i;
  }
  EXPECT_EQ(bad, 0u);
}

TEST(ParamStoreTest, ForEachVisitsEachKeyOnce) {
  const StoreOptions o{.shape = FmShape(2), .init_std = 0.1f};
  ParamStore store(o, MakeNamed(OptimizerName::kAdagrad));
  std::vector<Key> keys = RandomKeys(5000, 8);
  keys.push_back(kBiasKey);
  std::vector<float> out(keys.size() * 3);
  store.Pull(keys.data(), keys.size(), true, out.data());
  std::unordered_map<Key, int> visits;
  store.ForEach([&](Key key, const float* row) {
    ++visits[key];
    const std::vector<float> pulled = PullOne(store, key, false);
    EXPECT_EQ(std::vector<float>(row, row + 3), pulled);
  });
  EXPECT_EQ(visits.size(), keys.size());
  for (Key key : keys) EXPECT_EQ(visits[key], 1) << key;
}

TEST(ParamStoreTest, SetOverwritesRowAndResetsState) {
  // FTRL: after Set, a zero-gradient push keeps the set values (z re-derived from them).
  {
    const StoreOptions o{.shape = FmShape(2), .init_std = 0.1f, .l2_w = 0.1f, .l2_v = 0.2f};
    ParamStore store(o, MakeNamed(OptimizerName::kFtrl));
    const Key key = 5;
    const float g[3] = {1.0f, -2.0f, 0.5f};
    store.Push(&key, 1, g, nullptr);  // some history
    const float row[3] = {0.5f, -0.25f, 0.125f};
    store.Set(key, row);
    EXPECT_EQ(PullOne(store, key, false), std::vector<float>(row, row + 3));
    const float zero[3] = {0, 0, 0};
    store.Push(&key, 1, zero, nullptr);
    const std::vector<float> after = PullOne(store, key, false);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(after[i], row[i], 1e-6f) << i;
    // Set creates missing keys.
    const Key other = 6;
    store.Set(other, row);
    EXPECT_EQ(store.size(), 2u);
    EXPECT_EQ(PullOne(store, other, false), std::vector<float>(row, row + 3));
  }
  // Adam: after Set, the next push is a first step (step counters reset).
  {
    const StoreOptions o{.shape = FmShape(2), .init_std = 0.1f};
    ParamStore store(o, MakeNamed(OptimizerName::kAdam));
    const Key key = 5;
    const float g[3] = {1.0f, -2.0f, 0.5f};
    for (int t = 0; t < 5; ++t) store.Push(&key, 1, g, nullptr);
    const float row[3] = {0.5f, -0.25f, 0.125f};
    store.Set(key, row);
    store.Push(&key, 1, g, nullptr);
    // First Adam step: each parameter moves by lr = 0.1 against its gradient's sign.
    const std::vector<float> after = PullOne(store, key, false);
    EXPECT_NEAR(after[0], 0.4f, 1e-6f);
    EXPECT_NEAR(after[1], -0.15f, 1e-6f);
    EXPECT_NEAR(after[2], 0.025f, 1e-6f);
  }
  // min_count > 1: Set embeds a key only when its v is non-zero.
  {
    const StoreOptions o{.shape = FmShape(2), .init_std = 0.1f, .min_count = 5};
    ParamStore store(o, MakeNamed(OptimizerName::kSgd));
    const float with_v[3] = {1.0f, 2.0f, 3.0f};
    const float without_v[3] = {1.0f, 0.0f, 0.0f};
    store.Set(10, with_v);
    store.Set(11, without_v);
    EXPECT_EQ(store.size(), 2u);
    EXPECT_EQ(store.embedded(), 1u);
    EXPECT_EQ(PullOne(store, 10, false), std::vector<float>(with_v, with_v + 3));
    EXPECT_EQ(PullOne(store, 11, false), std::vector<float>(without_v, without_v + 3));
  }
}

// Raw payload of a key: the key, (1 + k) parameters and their optimizer state.
double RawBytesPerKey(int k, int state_floats) { return 8.0 + 4.0 * (1 + k) * (1 + state_floats); }

// Row-wise AdaGrad shrinks FFM's state: at 39 fields, k 8 a key holds w, 312 v floats and
// 1 + 39 accumulators, a raw payload of 8 + 4 * (313 + 40) = 1420 bytes (element-wise: 2512);
// the store keeps at most 1.1x that per key (rows padded to 1472 bytes, 23 cache lines, plus
// table slots and the 2 MiB chunks, amortised from 10^5 keys: 5 * 10^4 keys measured 1563).
TEST(ParamStoreTest, RowwiseFfmBytesPerKey) {
  const ModelShape shape = FfmShape(8, 39);
  const std::size_t n = 100000;
  const std::vector<Key> keys = RandomKeys(n, 5);
  std::vector<float> buf(1024 * static_cast<std::size_t>(shape.row_width()));
  ParamStore store({.shape = shape, .init_std = 0.01f}, MakeAdagrad({.rowwise = true}));
  for (std::size_t base = 0; base < n; base += 1024) {
    store.Pull(keys.data() + base, std::min<std::size_t>(1024, n - base), true, buf.data());
  }
  const double per_key = static_cast<double>(store.MemoryBytes()) / n;
  std::cout << "[ memory ] ffm 39x8 row-wise adagrad: " << per_key << " bytes/key (raw 1420)\n";
  EXPECT_LE(per_key, 1.1 * 1420);
  EXPECT_GE(per_key, 1420);
  EXPECT_EQ(store.format().state_floats, 1);
  EXPECT_TRUE(store.format().rowwise);
  EXPECT_EQ(VStateFloats(store.format()), 39);
  EXPECT_EQ(VStateFloats(ParamStore({.shape = shape}, MakeAdagrad({})).format()), 312);
}

TEST(ParamStoreTest, MemoryBoundAndSpeedAtMillionKeys) {
  const int k = 8;
  const std::size_t n = 1000000;
  const std::vector<Key> keys = RandomKeys(n, 99);
  std::vector<Key> shuffled = keys;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(4));
  const std::size_t batch = 4096;
  std::vector<float> buf(batch * (1 + k));
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  std::vector<float> grads(n * (1 + k));
  for (float& g : grads) g = normal(rng);
  using Clock = std::chrono::steady_clock;
  for (OptimizerName name : kAllOptimizers) {
    SCOPED_TRACE(ToString(name));
    const StoreOptions o{.shape = FmShape(k), .init_std = 0.01f};
    ParamStore store(o, MakeNamed(name));
    const double raw = RawBytesPerKey(k, MakeNamed(name)->state_floats());
    double worst = 0.0;
    const auto t0 = Clock::now();
    for (std::size_t base = 0; base < n; base += batch) {
      const std::size_t m = std::min(batch, n - base);
      store.Pull(keys.data() + base, m, true, buf.data());
      // The bound holds at every fill level of the table once the store is large enough for
      // the 2 MiB arena chunks not to matter (>= 3 * 10^5 keys at k = 8).
      if (store.size() >= 300000) {
        worst = std::max(worst, static_cast<double>(store.MemoryBytes()) / store.size());
      }
    }
    const auto t1 = Clock::now();
    for (std::size_t base = 0; base < n; base += batch) {
      const std::size_t m = std::min(batch, n - base);
      store.Pull(shuffled.data() + base, m, false, buf.data());
    }
    const auto t2 = Clock::now();
    for (std::size_t base = 0; base < n; base += batch) {
      const std::size_t m = std::min(batch, n - base);
      store.Push(shuffled.data() + base, m, grads.data() + base * (1 + k), nullptr);
    }
    const auto t3 = Clock::now();
    ASSERT_EQ(store.size(), n);
    auto ns = [&](Clock::time_point a, Clock::time_point b) {
      return std::chrono::duration<double, std::nano>(b - a).count() / n;
    };
    const double per_key = static_cast<double>(store.MemoryBytes()) / n;
    std::cout << "[ memory ] " << ToString(name) << ": " << per_key << " bytes/key at 10^6 keys"
              << " (raw " << raw << ", ratio " << per_key / raw << ", worst ratio from 3e5 keys "
              << worst / raw << "); create " << ns(t0, t1) << " ns/key, pull " << ns(t1, t2)
              << " ns/key, push " << ns(t2, t3) << " ns/key\n";
    EXPECT_LE(per_key, 1.5 * raw);
    EXPECT_LE(worst, 1.5 * raw);
  }
  // min_count > 1 with no key embedded: only the w part of the rows is paid for.
  {
    const StoreOptions o{.shape = FmShape(k), .init_std = 0.01f, .min_count = 10};
    ParamStore store(o, MakeNamed(OptimizerName::kAdam));
    for (std::size_t base = 0; base < n; base += batch) {
      store.Pull(keys.data() + base, std::min(batch, n - base), true, buf.data());
    }
    const double per_key = static_cast<double>(store.MemoryBytes()) / n;
    std::cout << "[ memory ] adam, min_count 10, nothing embedded: " << per_key << " bytes/key\n";
    // key 8 + w 4 + Adam state 8 + steps 8 + count and v ref 8 = 36, plus table slots.
    EXPECT_LE(per_key, 36.0 + 20.0);
    EXPECT_EQ(store.embedded(), 0u);
  }
}

}  // namespace
}  // namespace fmps
