// Recall models: the score decomposition behind embed, exact top-k against a brute-force
// sort, Faiss against exact, and the ranking metrics on a hand-made case.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/config/sides.h"
#include "common/data/reader.h"
#include "common/model/embedding.h"
#include "common/model/model_file.h"
#include "tests/util/test_util.h"
#include "worker/predict/recall_index.h"
#include "worker/predict/recall_metrics.h"

namespace fmps {
namespace {

using testing::TempDir;

// csv: label y, user side (u, age), item side (i, g multi-valued).
FeatureSpec RecallSpec() {
  FeatureSpec spec;
  spec.data.format = DataFormat::kCsv;
  spec.data.csv.label = "y";
  spec.data.csv.numeric = {"age"};
  spec.data.csv.categorical = {"u", "i", "g"};
  spec.data.csv.multi = {"g"};
  spec.data.csv.transform = NumericTransform::kNone;
  spec.sides.user = {"u", "age"};
  spec.sides.item = {"i", "g"};
  return spec;
}

// A model with random parameters for every key of `block`.
Model RandomModel(const TempDir& dir, const FeatureSpec& spec, const RowBlock& block, int k) {
  std::vector<Key> keys(block.keys.begin(), block.keys.end());
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<float> params(keys.size() * (k + 1));
  for (float& p : params) p = normal(rng);
  ModelMeta meta;
  meta.shape = FmShape(k);
  meta.bias = 0.3f;
  meta.num_keys = keys.size();
  meta.features = spec;
  ModelWriter w(dir.File("m.fmps"), meta);
  w.Append(keys, params);
  w.Finish();
  return Model::Load(dir.File("m.fmps"));
}

TEST(RecallTest, MultiValuedCsvColumnGivesOneFeaturePerValueInItsField) {
  const FeatureSpec spec = RecallSpec();
  LineParser parser(spec, {"y", "u", "age", "i", "g"});
  RowBlock b;
  ASSERT_TRUE(parser.Parse("1,u1,2.5,i1,a|b||c", &b, nullptr));
  ASSERT_TRUE(parser.Parse("0,u1,2.5,i1,c", &b, nullptr));
  ASSERT_EQ(b.offsets[1], 6u);  // u, age, i, then a, b, c (the empty value adds nothing)
  for (std::size_t i = 3; i < 6; ++i) EXPECT_EQ(b.fields[i], 3u);  // age 0, u 1, i 2, g 3
  EXPECT_EQ(b.keys[5], b.keys[b.offsets[2] - 1]);                  // "c" alone is the same feature
  std::set<Key> genres(b.keys.begin() + 3, b.keys.begin() + 6);
  EXPECT_EQ(genres.size(), 3u);
}

TEST(RecallTest, AugmentedInnerProductPlusUserTermsIsTheFmScore) {
  const FeatureSpec spec = RecallSpec();
  LineParser parser(spec, {"y", "u", "age", "i", "g"});
  std::mt19937 rng(3);
  RowBlock block;
  const char* genres[] = {"a", "b", "a|b", "c|a|d", ""};
  for (int r = 0; r < 200; ++r) {
    const std::string line = "1," + std::to_string(rng() % 10) + "," +
                             std::to_string(static_cast<double>(rng() % 1000) / 100.0) + "," +
                             std::to_string(rng() % 20) + "," + genres[rng() % 5];
    ASSERT_TRUE(parser.Parse(line, &block, nullptr)) << line;
  }
  TempDir dir;
  const int k = 6;
  const Model model = RandomModel(dir, spec, block, k);
  std::vector<std::uint32_t> local;
  std::vector<float> scores(block.rows());
  model.Score(block, &local, scores.data());
  const SideMap sides = ModelSides(model, "test");
  EmbedScratch scratch;
  std::vector<float> users(block.rows() * (k + 1)), items(block.rows() * (k + 1));
  std::vector<float> own(block.rows()), item_own(block.rows());
  EmbedSide(model, sides, block, Side::kUser, &scratch, users.data(), own.data());
  EmbedSide(model, sides, block, Side::kItem, &scratch, items.data(), item_own.data());
  double worst = 0.0;
  for (std::size_t r = 0; r < block.rows(); ++r) {
    double dot = 0.0;
    for (int f = 0; f <= k; ++f) dot += users[r * (k + 1) + f] * items[r * (k + 1) + f];
    EXPECT_EQ(users[r * (k + 1) + k], 1.0f);
    EXPECT_EQ(items[r * (k + 1) + k], item_own[r]);
    worst = std::max(worst, std::fabs(dot + own[r] - scores[r]));
  }
  EXPECT_LT(worst, 1e-4);
  EXPECT_GT(std::fabs(scores[0]), 1e-3);  // not a trivial model
}

std::vector<float> RandomMatrix(std::size_t rows, int dim, unsigned seed, bool coarse) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> m(rows * dim);
  // coarse: few distinct values, so that many scores tie.
  for (float& x : m) x = coarse ? static_cast<float>(static_cast<int>(rng() % 3)) : normal(rng);
  return m;
}

std::vector<float> Scores(const std::vector<float>& users, std::size_t u,
                          const std::vector<float>& items, std::size_t n, int dim) {
  std::vector<float> s(n);
  for (std::size_t i = 0; i < n; ++i) {
    float dot = 0.0f;
    for (int f = 0; f < dim; ++f) dot += users[u * dim + f] * items[i * dim + f];
    s[i] = dot;
  }
  return s;
}

// n items and 150 users (several item and user blocks) of 5 dimensions drawn from seeds
// `seed` and seed + 1; every third user excludes five items; top-17.
struct SearchCase {
  SearchCase(std::size_t items_n, unsigned seed, bool coarse)
      : n(items_n),
        items(RandomMatrix(n, dim, seed, coarse)),
        users(RandomMatrix(nu, dim, seed + 1, coarse)),
        exclude(nu) {
    for (std::size_t u = 0; u < nu; u += 3) {
      exclude[u] = {0, 7, 2047, 2048, static_cast<std::uint32_t>(n - 1)};
    }
  }
  RecallQuery Query() const { return {users.data(), nu, k, exclude}; }

  static constexpr int dim = 5, k = 17;
  static constexpr std::size_t nu = 150;
  std::size_t n;
  std::vector<float> items, users;
  std::vector<std::vector<std::uint32_t>> exclude;
};

void ExpectExactMatchesBruteForce(bool coarse) {
  const SearchCase c(5000, 1, coarse);
  const auto index = MakeRecallIndex("exact", c.items.data(), c.n, c.dim, 3);
  std::vector<TopK> got;
  index->Search(c.Query(), &got);
  ASSERT_EQ(got.size(), c.nu);
  for (std::size_t u = 0; u < c.nu; ++u) {
    const std::vector<float> s = Scores(c.users, u, c.items, c.n, c.dim);
    const std::vector<std::uint32_t>& ex = c.exclude[u];
    EXPECT_EQ(got[u].items, BruteForceTopK(s, c.k, ex).items) << "user " << u;
    for (std::uint32_t i : got[u].items) {
      EXPECT_FALSE(std::binary_search(ex.begin(), ex.end(), i));
    }
  }
}

TEST(RecallTest, ExactTopKEqualsBruteForceSortWithExclusions) {
  ExpectExactMatchesBruteForce(false);
}

TEST(RecallTest, ExactTopKBreaksTiesByLowerItemIndex) { ExpectExactMatchesBruteForce(true); }

TEST(RecallTest, FaissIndexesAgreeWithExactOnASmallCatalogue) {
  const int dim = 9, k = 10;
  const std::size_t n = 4000, nu = 100;
  const std::vector<float> items = RandomMatrix(n, dim, 5, false);
  const std::vector<float> users = RandomMatrix(nu, dim, 6, false);
  std::vector<std::vector<std::uint32_t>> exclude(nu);
  std::vector<TopK> exact, approx;
  RecallQuery q{users.data(), nu, k, exclude};
  MakeRecallIndex("exact", items.data(), n, dim, 2)->Search(q, &exact);
  auto lists = [](const std::vector<TopK>& t) {
    std::vector<std::vector<std::uint32_t>> l;
    for (const TopK& x : t) l.push_back(x.items);
    return l;
  };
  MakeRecallIndex("faiss:Flat", items.data(), n, dim, 2)->Search(q, &approx);
  EXPECT_EQ(ListOverlap(lists(approx), lists(exact), k), 1.0);
  MakeRecallIndex("faiss:IVF16,Flat?nprobe=16", items.data(), n, dim, 2)->Search(q, &approx);
  EXPECT_EQ(ListOverlap(lists(approx), lists(exact), k), 1.0);  // every list probed
  MakeRecallIndex("faiss:IVF64,Flat?nprobe=8", items.data(), n, dim, 2)->Search(q, &approx);
  EXPECT_GE(ListOverlap(lists(approx), lists(exact), k), 0.6);
  MakeRecallIndex("faiss:HNSW32?efSearch=256", items.data(), n, dim, 2)->Search(q, &approx);
  EXPECT_GE(ListOverlap(lists(approx), lists(exact), k), 0.6);
  // Excluded items never appear, with Faiss either.
  exclude[0] = exact[0].items;
  std::sort(exclude[0].begin(), exclude[0].end());
  MakeRecallIndex("faiss:Flat", items.data(), n, dim, 2)->Search(q, &approx);
  ASSERT_EQ(approx[0].items.size(), static_cast<std::size_t>(k));
  for (std::uint32_t i : approx[0].items) {
    EXPECT_FALSE(std::binary_search(exclude[0].begin(), exclude[0].end(), i));
  }
  EXPECT_THROW(MakeRecallIndex("faiss:NoSuchIndex", items.data(), n, dim, 1), ConfigError);
  EXPECT_THROW(MakeRecallIndex("annoy", items.data(), n, dim, 1), ConfigError);
}

// An IVF index probing every list returns the exact lists, ties included (to the lower item
// index, as exact search), whatever the thread count: on a coarse catalogue most scores tie.
TEST(RecallTest, FaissIvfProbingEveryListBreaksTiesAsExactOnAnyThreadCount) {
  const SearchCase c(4000, 7, true);  // users in several search blocks
  std::vector<TopK> exact, approx;
  MakeRecallIndex("exact", c.items.data(), c.n, c.dim, 2)->Search(c.Query(), &exact);
  for (int threads : {1, 3}) {
    MakeRecallIndex("faiss:IVF32,Flat?nprobe=32", c.items.data(), c.n, c.dim, threads)
        ->Search(c.Query(), &approx);
    ASSERT_EQ(approx.size(), c.nu);
    for (std::size_t u = 0; u < c.nu; ++u) {
      EXPECT_EQ(approx[u].items, exact[u].items) << "user " << u << ", " << threads << " threads";
      EXPECT_EQ(approx[u].scores, exact[u].scores) << "user " << u;
    }
  }
}

TEST(RecallTest, RankingMetricsOnAHandMadeCase) {
  // user 0: truth {5}, hit at rank 2 (0-based); user 1: truth {1, 9}, hits at ranks 0 and 3;
  // user 2: truth {4}, no hit; user 3: no truth (left out).
  const std::vector<std::vector<std::uint32_t>> lists = {
      {7, 8, 5, 1}, {1, 2, 3, 9}, {0, 1, 2, 3}, {4}};
  const std::vector<std::vector<std::uint32_t>> truth = {{5}, {9, 1}, {4}, {}};
  const RankingMetricsAtK m2 = RankingMetrics(lists, truth, 2);
  EXPECT_EQ(m2.users, 3u);
  EXPECT_DOUBLE_EQ(m2.hit_rate, 1.0 / 3);
  EXPECT_DOUBLE_EQ(m2.recall, 0.5 / 3);
  // user 1: dcg 1, idcg 1 + 1/log2(3).
  EXPECT_NEAR(m2.ndcg, (1.0 / (1.0 + 1.0 / std::log2(3.0))) / 3, 1e-12);
  EXPECT_DOUBLE_EQ(m2.mrr, 1.0 / 3);
  const RankingMetricsAtK m4 = RankingMetrics(lists, truth, 4);
  EXPECT_DOUBLE_EQ(m4.hit_rate, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m4.recall, (1.0 + 1.0) / 3);
  const double u0 = (1.0 / 2.0) / 1.0;  // 1/log2(4)
  const double u1 = (1.0 + 1.0 / std::log2(5.0)) / (1.0 + 1.0 / std::log2(3.0));
  EXPECT_NEAR(m4.ndcg, (u0 + u1) / 3, 1e-12);
  EXPECT_DOUBLE_EQ(m4.mrr, (1.0 / 3 + 1.0) / 3);
  // Overlap: half of user 0's exact top-2 and all of user 1's.
  EXPECT_DOUBLE_EQ(ListOverlap({{7, 1}, {2, 1}}, {{7, 8}, {1, 2}}, 2), 0.75);
}

}  // namespace
}  // namespace fmps
