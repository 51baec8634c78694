// Sampled negatives (data.negatives): their distribution, never the positive item, and
// determinism independent of the sharding.

#include "common/data/negatives.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::TempDir;

// Items 0..4 with genres; item i occurs in 0, 1, 2, 4, 8 training rows... (item 4 never).
struct Fixture {
  TempDir dir;
  FeatureSpec spec;
  Fixture(NegativeDistribution distribution, double exponent) {
    const std::string items = dir.Write("items.csv", "i,g\n0,a\n1,b|c\n2,\n3,a\n4,d\n");
    std::string train = "y,u,i,g\n";
    const int counts[] = {1, 2, 4, 8, 0};
    int user = 0;
    for (int i = 0; i < 5; ++i) {
      for (int n = 0; n < counts[i]; ++n) {
        train += "1,u";
        train += std::to_string(user++ % 5);
        train += ",";
        train += std::to_string(i);
        train += ",a|b\n";
      }
    }
    spec.data.format = DataFormat::kCsv;
    spec.data.train = {dir.Write("train.csv", train)};
    spec.data.csv.label = "y";
    spec.data.csv.categorical = {"u", "i", "g"};
    spec.data.csv.multi = {"g"};
    spec.sides.user = {"u"};
    spec.sides.item = {"i", "g"};
    spec.data.negatives.per_positive = 3;
    spec.data.negatives.items = items;
    spec.data.negatives.distribution = distribution;
    spec.data.negatives.exponent = exponent;
    spec.data.negatives.seed = 5;
  }
};

// Chi-square statistic of `counts` against probabilities `p` (cells with p > 0).
double ChiSquare(const std::vector<double>& counts, const std::vector<double>& p, double n) {
  double chi = 0.0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] > 0) chi += (counts[i] - n * p[i]) * (counts[i] - n * p[i]) / (n * p[i]);
  }
  return chi;
}

std::vector<double> DrawCounts(const NegativeSampler& s, Key positive, int draws) {
  std::vector<double> counts(s.items(), 0.0);
  for (int d = 0; d < draws; ++d) counts[s.Draw(Mix64(d + 1), d % 3, positive)] += 1.0;
  return counts;
}

TEST(NegativesTest, UniformDrawsPassAChiSquareBound) {
  Fixture f(NegativeDistribution::kUniform, 0.75);
  const NegativeSampler s(f.spec);
  ASSERT_EQ(s.items(), 5u);
  const int n = 50000;
  const std::vector<double> p(5, 0.2);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(s.Probability(i), 0.2);
  // 4 degrees of freedom: P(chi2 > 18.47) = 0.001.
  EXPECT_LT(ChiSquare(DrawCounts(s, 0, n), p, n), 18.47);
}

TEST(NegativesTest, PopularityDrawsFollowCountToTheExponent) {
  Fixture f(NegativeDistribution::kPopularity, 1.0);
  const NegativeSampler s(f.spec);
  const std::vector<double> p = {1.0 / 15, 2.0 / 15, 4.0 / 15, 8.0 / 15, 0.0};
  for (std::size_t i = 0; i < 5; ++i) EXPECT_NEAR(s.Probability(i), p[i], 1e-12);
  const int n = 50000;
  const std::vector<double> counts = DrawCounts(s, 0, n);
  EXPECT_EQ(counts[4], 0.0);                  // never seen in data.train: weight 0
  EXPECT_LT(ChiSquare(counts, p, n), 16.27);  // 3 dof, P = 0.001
  Fixture g(NegativeDistribution::kPopularity, 0.5);
  EXPECT_NEAR(NegativeSampler(g.spec).Probability(3),
              std::sqrt(8.0) / (1 + std::sqrt(2.0) + 2 + std::sqrt(8.0)), 1e-12);
}

TEST(NegativesTest, NeverThePositiveItem) {
  Fixture f(NegativeDistribution::kPopularity, 1.0);
  const NegativeSampler s(f.spec);
  for (std::size_t positive = 0; positive < 4; ++positive) {
    const std::vector<double> counts = DrawCounts(s, s.item_id(positive), 20000);
    EXPECT_EQ(counts[positive], 0.0) << positive;
  }
}

// Every row of `files` read as `shards` shards, as text ("label key:field ..."), sorted.
std::vector<std::string> AllRows(const FeatureSpec& spec, int shards, int passes) {
  std::vector<std::string> rows;
  for (int shard = 0; shard < shards; ++shard) {
    ShardReader reader(spec, spec.data.train, shard, shards);
    for (int pass = 0; pass < passes; ++pass) reader.Rewind();
    RowBlock b;
    while (reader.Read(7, &b) > 0) {
    }
    for (std::size_t r = 0; r < b.rows(); ++r) {
      std::string row = std::to_string(b.labels[r]);
      for (std::size_t i = b.offsets[r]; i < b.offsets[r + 1]; ++i) {
        row += ' ';
        row += std::to_string(b.keys[i]);
        row += ':';
        row += std::to_string(b.fields[i]);
      }
      rows.push_back(row);
    }
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

TEST(NegativesTest, ReaderJoinsEachPositiveDeterministicallyWhateverTheSharding) {
  Fixture f(NegativeDistribution::kUniform, 0.75);
  f.spec.sample_negatives = true;
  ShardReader reader(f.spec, f.spec.data.train, 0, 1);
  RowBlock b;
  ASSERT_EQ(reader.Read(8, &b), 8u);  // 2 positives, each with 3 negatives
  ASSERT_EQ(b.rows(), 8u);
  const SideMap sides(f.spec.data, f.spec.sides);
  for (std::size_t pos : {0u, 4u}) {
    EXPECT_EQ(b.labels[pos], 1.0f);
    Key user = 0, item = 0;
    for (std::size_t i = b.offsets[pos]; i < b.offsets[pos + 1]; ++i) {
      if (b.fields[i] == 0) user = b.keys[i];
      if (b.fields[i] == sides.item_id_field()) item = b.keys[i];
    }
    for (std::size_t r = pos + 1; r < pos + 4; ++r) {
      EXPECT_EQ(b.labels[r], 0.0f);
      EXPECT_EQ(b.keys[b.offsets[r]], user);  // the user part first
      for (std::size_t i = b.offsets[r]; i < b.offsets[r + 1]; ++i) EXPECT_NE(b.keys[i], item);
    }
  }
  const std::vector<std::string> one = AllRows(f.spec, 1, 1);
  EXPECT_EQ(one.size(), 15u * 4);
  EXPECT_EQ(AllRows(f.spec, 3, 1), one);
  EXPECT_EQ(AllRows(f.spec, 1, 1), one);
  EXPECT_NE(AllRows(f.spec, 1, 2), one);  // the next pass draws anew
  f.spec.data.negatives.seed = 6;
  EXPECT_NE(AllRows(f.spec, 1, 1), one);
}

TEST(NegativesTest, CatalogueErrorsNameTheKey) {
  Fixture f(NegativeDistribution::kUniform, 0.75);
  f.spec.data.negatives.items = f.dir.Write("empty.csv", "i,g\n");
  EXPECT_THROW(NegativeSampler{f.spec}, ConfigError);
  f.spec.data.negatives.items = f.dir.Write("noid.csv", "i,g\n,a\n");
  try {
    NegativeSampler s(f.spec);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("data.negatives.items"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fmps
