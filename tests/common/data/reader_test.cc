// Reader formats, fields, bad rows and line numbers.

#include "common/data/reader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "tests/common/data/reader_test_util.h"

namespace fmps {
namespace {

using namespace ::fmps::reader_testing;  // NOLINT: the shared helpers

// ---- Formats ----

TEST(ReaderTest, LibsvmParsesLabelsKeysAndValues) {
  TempDir dir;
  const std::string path = dir.Write("a.txt",
                                     "1 3:1 10:0.5\n"
                                     "-1\t2:2.5e1   4:-3\n"
                                     "+1 7:0 8:1\n"  // value 0 dropped
                                     "0 1:1e-3\n"
                                     "1.0\n"
                                     "-1.0 18446744073709551614:2\n");
  for (int bits : {0, 20}) {
    RowBlock b = ReadAll(Spec(DataFormat::kLibsvm, bits), {path});
    ASSERT_EQ(b.rows(), 6u);
    EXPECT_EQ(b.labels, (std::vector<float>{1, 0, 1, 0, 1, 0}));
    auto k = [&](std::uint64_t id) { return KeyFromId(id, bits); };
    EXPECT_EQ(RowFeatures(b, 0), (std::vector<Feature>{{k(3), 1.0f}, {k(10), 0.5f}}));
    EXPECT_EQ(RowFeatures(b, 1), (std::vector<Feature>{{k(2), 25.0f}, {k(4), -3.0f}}));
    EXPECT_EQ(RowFeatures(b, 2), (std::vector<Feature>{{k(8), 1.0f}}));
    EXPECT_EQ(RowFeatures(b, 3), (std::vector<Feature>{{k(1), 0.001f}}));
    EXPECT_TRUE(RowFeatures(b, 4).empty());
    EXPECT_EQ(RowFeatures(b, 5), (std::vector<Feature>{{k(18446744073709551614ull), 2.0f}}));
    EXPECT_EQ(b.fields, std::vector<std::uint32_t>(7, 0));  // libsvm has no fields: all 0
  }
  EXPECT_NE(KeyFromId(3, 20), 3u);  // hashing really applied above
}

// data.normalize: instance scales each row to unit L2 norm (3-4-5: 0.6, 0.8); a row without
// features stays empty; the other rows of the block are untouched.
TEST(ReaderTest, NormalizeInstanceScalesRowsToUnitNorm) {
  TempDir dir;
  const std::string path = dir.Write("a.txt", "1 3:3 10:-4\n0\n1 5:0.5\n0 1:1 2:1 3:1 4:1\n");
  FeatureSpec spec = Spec(DataFormat::kLibsvm, 0);
  spec.data.normalize = Normalize::kInstance;
  RowBlock b = ReadAll(spec, {path});
  ASSERT_EQ(b.rows(), 4u);
  EXPECT_EQ(RowFeatures(b, 0), (std::vector<Feature>{{3, 0.6f}, {10, -0.8f}}));
  EXPECT_TRUE(RowFeatures(b, 1).empty());
  EXPECT_EQ(RowFeatures(b, 2), (std::vector<Feature>{{5, 1.0f}}));
  EXPECT_EQ(RowFeatures(b, 3), (std::vector<Feature>{{1, 0.5f}, {2, 0.5f}, {3, 0.5f}, {4, 0.5f}}));
  // LineParser (predict's path) applies it too, to the new row only.
  LineParser parser(spec, {});
  RowBlock c;
  c.AddFeature(7, 7.0f);
  c.FinishRow(1.0f);
  ASSERT_TRUE(parser.Parse("1 1:6 2:8", &c, nullptr));
  EXPECT_EQ(RowFeatures(c, 0), (std::vector<Feature>{{7, 7.0f}}));
  EXPECT_EQ(RowFeatures(c, 1), (std::vector<Feature>{{1, 0.6f}, {2, 0.8f}}));
}

// NormalizeLastRow's shortcut for rows of ones gives the bits of the general sum-of-squares
// formula (double sum, 1 / sqrt, each value times it) for every row length up to 300, and
// rows with one value other than 1 still take the general path.
TEST(ReaderTest, NormalizeRowOfOnesEqualsTheGeneralFormulaBitForBit) {
  for (std::size_t n = 1; n <= 300; ++n) {
    for (const float odd : {1.0f, 2.0f, 0.5f}) {
      RowBlock b;
      for (std::size_t i = 0; i < n; ++i) b.AddFeature(i, i + 1 == n ? odd : 1.0f);
      b.FinishRow(1.0f);
      std::vector<float> want = b.values;
      double sum = 0.0;
      for (const float v : want) sum += static_cast<double>(v) * v;
      const double inv = 1.0 / std::sqrt(sum);
      for (float& v : want) v = static_cast<float>(v * inv);
      b.NormalizeLastRow();
      ASSERT_EQ(b.values, want) << "n " << n << ", last value " << odd;
    }
  }
}

// The sparse parsers normalise as they read (RowSquares gathered value by value): the same
// bits as normalising each parsed row afterwards, for rows of ones, of mixed values (every
// sign and scale, zeros dropped), of one value and empty rows, libsvm and libffm.
TEST(ReaderTest, NormalizeWhileParsingEqualsNormalizingTheParsedRowBitForBit) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::string svm, ffm;
  for (int r = 0; r < 2000; ++r) {
    const int n = static_cast<int>(rng() % 60);
    const bool ones = rng() % 2 == 0;
    svm.append(r % 2 == 0 ? "1" : "0");
    ffm.append(r % 2 == 0 ? "1" : "0");
    for (int i = 0; i < n; ++i) {
      const float x = ones              ? 1.0f
                      : rng() % 10 == 0 ? 0.0f
                                        : normal(rng) * std::ldexp(1.0f, i % 30 - 15);
      char v[64];
      std::snprintf(v, sizeof(v), " %d:%.9g", i * 7 + 1, static_cast<double>(x));
      svm.append(v);
      std::snprintf(v, sizeof(v), " %d:%d:%.9g", i % 5, i * 7 + 1, static_cast<double>(x));
      ffm.append(v);
    }
    svm.append("\n");
    ffm.append("\n");
  }
  TempDir dir;
  for (const auto& [format, text] :
       {std::pair{DataFormat::kLibsvm, svm}, {DataFormat::kLibffm, ffm}}) {
    const std::string path = dir.Write("a.txt", text);
    FeatureSpec spec = Spec(format, 0);
    const RowBlock plain = ReadAll(spec, {path});
    spec.data.normalize = Normalize::kInstance;
    const RowBlock normalized = ReadAll(spec, {path});
    ASSERT_EQ(plain.rows(), 2000u);
    ASSERT_EQ(normalized.offsets, plain.offsets);
    ASSERT_EQ(normalized.keys, plain.keys);
    for (std::size_t r = 0; r < plain.rows(); ++r) {
      RowBlock row;
      for (std::size_t i = plain.offsets[r]; i < plain.offsets[r + 1]; ++i) {
        row.AddFeature(plain.keys[i], plain.values[i]);
      }
      row.FinishRow(plain.labels[r]);
      row.NormalizeLastRow();
      if (row.values.empty()) continue;  // memcmp may not be given the null data() of a row
      ASSERT_EQ(0, std::memcmp(row.values.data(), normalized.values.data() + plain.offsets[r],
                               row.values.size() * sizeof(float)))
          << "row " << r;
    }
  }
}

TEST(ReaderTest, SquaredLossAcceptsRealLabels) {
  TempDir dir;
  const std::string path = dir.Write("a.txt", "2.5 1:1\n-7 2:1\n1e2 3:1\n");
  RowBlock b = ReadAll(Spec(DataFormat::kLibsvm, 0, Loss::kSquared), {path});
  EXPECT_EQ(b.labels, (std::vector<float>{2.5f, -7.0f, 100.0f}));
}

TEST(ReaderTest, LibffmParsesAndKeepsFieldAsWritten) {
  TempDir dir;
  const std::string path = dir.Write("a.ffm",
                                     "1 0:0:0.3651 2:1163:0.3651 17:2434:0.50000\n"
                                     "0 5:9:0 6:10:2 4294967294:11:1 007:12:1\n");
  for (int bits : {0, 24}) {
    RowBlock b = ReadAll(Spec(DataFormat::kLibffm, bits), {path});
    ASSERT_EQ(b.rows(), 2u);
    EXPECT_EQ(b.labels, (std::vector<float>{1, 0}));
    auto k = [&](std::uint64_t id) { return KeyFromId(id, bits); };
    EXPECT_EQ(RowFeatures(b, 0),
              (std::vector<Feature>{{k(0), 0.3651f}, {k(1163), 0.3651f}, {k(2434), 0.5f}}));
    EXPECT_EQ(RowFeatures(b, 1),
              (std::vector<Feature>{{k(10), 2.0f}, {k(11), 1.0f}, {k(12), 1.0f}}));
    // The field of each non-zero as written; 2^32 - 2 is the largest; value 0 adds nothing.
    EXPECT_EQ(RowFields(b, 0), (std::vector<std::uint32_t>{0, 2, 17}));
    EXPECT_EQ(RowFields(b, 1), (std::vector<std::uint32_t>{6, 4294967294u, 7}));
  }
}

std::string BucketToken(double v) { return std::to_string(LogBucket(v)); }

TEST(ReaderTest, CriteoParsesIntegersAsBucketsAndCategoricals) {
  TempDir dir;
  // Row 1: all 40 cells with empties and a decimal/negative integer cell.
  std::string row1 = "1\t5\t\t260.0\t-1";
  for (int i = 5; i <= 13; ++i) row1 += Num("\t", i * 10);
  for (int c = 1; c <= 26; ++c) row1 += c == 3 ? std::string("\t") : Num("\tc", c);
  // Row 2: ragged, cut after C2.
  std::string row2 = "0\t\t\t\t\t\t\t\t\t\t\t\t\t1\t68fd1e64\t80e26c9b";
  const std::string path = dir.Write("t.txt", row1 + "\n" + row2 + "\n0\n");
  for (int bits : {0, 22}) {
    RowBlock b = ReadAll(Spec(DataFormat::kCriteo, bits), {path});
    ASSERT_EQ(b.rows(), 3u);
    EXPECT_EQ(b.labels, (std::vector<float>{1, 0, 0}));
    std::vector<Feature> e1 = {{KeyFromToken(1, BucketToken(5), bits), 1.0f},
                               {KeyFromToken(3, "30", bits), 1.0f},
                               {KeyFromToken(4, "-1", bits), 1.0f}};
    for (int i = 5; i <= 13; ++i) {
      e1.push_back({KeyFromToken(static_cast<std::uint32_t>(i), BucketToken(i * 10), bits), 1.0f});
    }
    for (int c = 1; c <= 26; ++c) {
      if (c == 3) continue;
      e1.push_back({KeyFromToken(static_cast<std::uint32_t>(13 + c), Num("c", c), bits), 1.0f});
    }
    EXPECT_EQ(RowFeatures(b, 0), e1);
    EXPECT_EQ(RowFeatures(b, 1),
              (std::vector<Feature>{{KeyFromToken(13, "1", bits), 1.0f},
                                    {KeyFromToken(14, "68fd1e64", bits), 1.0f},
                                    {KeyFromToken(15, "80e26c9b", bits), 1.0f}}));
    EXPECT_TRUE(RowFeatures(b, 2).empty());
    // Fields: the column index 0..38 (I1..I13 then C1..C26); empty cells (I2, C3) skipped.
    std::vector<std::uint32_t> f1 = {0, 2};
    for (std::uint32_t f = 3; f <= 38; ++f) {
      if (f != 15) f1.push_back(f);  // C3 is column 13 + 3 - 1
    }
    EXPECT_EQ(RowFields(b, 0), f1);
    EXPECT_EQ(RowFields(b, 1), (std::vector<std::uint32_t>{12, 13, 14}));
    EXPECT_TRUE(RowFields(b, 2).empty());
  }
}

TEST(ReaderTest, CsvColumnIdentityComesFromNamesNotPositions) {
  TempDir dir;
  const std::string f1 = dir.Write("1.csv", "id,y,n,a,b\n1,1,2.5,x,x\n2,0,,,v\n3,-1,-4,z,\n");
  const std::string f2 = dir.Write("2.csv", "b,a,n,y,id\nx,x,2.5,1,9\nv,,,0,9\n,z,-4,-1,9\n");
  for (auto t : {NumericTransform::kNone, NumericTransform::kLogBucket}) {
    RowBlock b1 = ReadAll(CsvSpec3(t), {f1});
    RowBlock b2 = ReadAll(CsvSpec3(t), {f2});
    ASSERT_EQ(b1.rows(), 3u);
    EXPECT_EQ(b1.labels, (std::vector<float>{1, 0, 0}));
    ASSERT_EQ(b1.offsets, (std::vector<std::size_t>{0, 3, 4, 6}));
    // Same features per row, in each file's column order.
    for (std::size_t r = 0; r < 3; ++r) {
      auto r1 = RowFeatures(b1, r), r2 = RowFeatures(b2, r);
      std::sort(r1.begin(), r1.end(), [](auto& x, auto& y) { return x.key < y.key; });
      std::sort(r2.begin(), r2.end(), [](auto& x, auto& y) { return x.key < y.key; });
      EXPECT_EQ(r1, r2) << "row " << r;
    }
    // Fields: index in numeric {n} then categorical {a, b}, whatever the file's column order.
    EXPECT_EQ(RowFields(b1, 0), (std::vector<std::uint32_t>{0, 1, 2}));
    EXPECT_EQ(RowFields(b1, 1), (std::vector<std::uint32_t>{2}));
    EXPECT_EQ(RowFields(b1, 2), (std::vector<std::uint32_t>{0, 1}));
    EXPECT_EQ(RowFields(b2, 0), (std::vector<std::uint32_t>{2, 1, 0}));  // columns b, a, n
    for (std::size_t j = 0; j < b2.nnz(); ++j) {
      const auto at = std::find(b1.keys.begin(), b1.keys.end(), b2.keys[j]) - b1.keys.begin();
      ASSERT_LT(static_cast<std::size_t>(at), b1.nnz());
      EXPECT_EQ(b2.fields[j], b1.fields[static_cast<std::size_t>(at)]) << "non-zero " << j;
    }
    // Row 0: n, a=x, b=x. The same token in different columns hashes differently.
    EXPECT_NE(b1.keys[1], b1.keys[2]);
    if (t == NumericTransform::kNone) {
      EXPECT_EQ(b1.values[0], 2.5f);
      EXPECT_EQ(b1.keys[0], b1.keys[4]);  // one key per numeric column
      EXPECT_EQ(b1.values[4], -4.0f);
    }
  }
  // log_bucket: numeric "n" = 260.0 gives the key of categorical "n" = "30".
  const std::string f3 = dir.Write("3.csv", "id,y,n,a,b\n1,1,260.0,,\n");
  FeatureSpec cat = CsvSpec3();
  cat.data.csv.numeric = {};
  cat.data.csv.categorical = {"a", "b", "n"};
  const std::string f4 = dir.Write("4.csv", "id,y,n,a,b\n1,1,30,,\n");
  RowBlock b3 = ReadAll(CsvSpec3(NumericTransform::kLogBucket), {f3});
  RowBlock b4 = ReadAll(cat, {f4});
  ASSERT_EQ(b3.nnz(), 1u);
  EXPECT_EQ(RowFeatures(b3, 0), RowFeatures(b4, 0));
}

// A csv column's field is its index in data.csv.numeric followed by data.csv.categorical
// (the config's order), not its position in the header; label and ignored columns have none.
TEST(ReaderTest, CsvFieldsFollowTheConfigOrder) {
  FeatureSpec spec = Spec(DataFormat::kCsv);
  spec.data.csv.label = "y";
  spec.data.csv.numeric = {"n2", "n1"};
  spec.data.csv.categorical = {"c2", "c1"};
  spec.data.csv.ignore = {"id"};
  for (auto t : {NumericTransform::kNone, NumericTransform::kLogBucket}) {
    spec.data.csv.transform = t;
    LineParser parser(spec, {"c1", "id", "n1", "y", "c2", "n2"});
    RowBlock b;
    std::string reason;
    ASSERT_TRUE(parser.Parse("x,7,3,1,y,4", &b, &reason)) << reason;
    ASSERT_TRUE(parser.Parse("x,7,,0,,4", &b, &reason)) << reason;  // empty cells: no field
    EXPECT_EQ(RowFields(b, 0), (std::vector<std::uint32_t>{3, 1, 2, 0}));
    EXPECT_EQ(RowFields(b, 1), (std::vector<std::uint32_t>{3, 0}));
  }
}

TEST(ReaderTest, CsvQuotingAndDelimiter) {
  TempDir dir;
  FeatureSpec spec = Spec(DataFormat::kCsv, 0, Loss::kSquared);
  spec.data.csv.label = "r";
  spec.data.csv.categorical = {"title", "g"};
  const std::string quoted = dir.Write(
      "q.csv", "r,\"title\",g\n4,\"Hello, \"\"World\"\"\",x\n3,\"\",\"a,b\"\n5,plain,\"\"\"\"\n");
  spec.data.csv.delimiter = ',';
  RowBlock q = ReadAll(spec, {quoted});
  spec.data.csv.delimiter = ';';
  const std::string semi =
      dir.Write("s.csv", "r;title;g\n4;Hello, \"World\";x\n3;;a,b\n5;plain;\"\"\"\"\n");
  RowBlock s = ReadAll(spec, {semi});
  ASSERT_EQ(q.rows(), 3u);
  EXPECT_EQ(q.labels, (std::vector<float>{4, 3, 5}));
  EXPECT_EQ(q.offsets, (std::vector<std::size_t>{0, 2, 3, 5}));  // empty title: no feature
  EXPECT_EQ(Diff(q, s), "");
  spec.data.csv.delimiter = '\t';
  const std::string tab =
      dir.Write("t.tsv", "r\ttitle\tg\n4\tHello, \"World\"\tx\n3\t\ta,b\n5\tplain\t\"\"\"\"\n");
  EXPECT_EQ(Diff(q, ReadAll(spec, {tab})), "");
}

TEST(ReaderTest, CsvStandardizeUsesStats) {
  TempDir dir;
  const std::string f = dir.Write("s.csv", "id,y,n,a,b\n1,1,5,,\n2,0,1,,\n");
  FeatureSpec spec = CsvSpec3(NumericTransform::kStandardize);
  spec.numeric_stats = {{"n", 3.0, 2.0}};
  RowBlock s = ReadAll(spec, {f});
  RowBlock none = ReadAll(CsvSpec3(NumericTransform::kNone), {f});
  ASSERT_EQ(s.nnz(), 2u);
  EXPECT_EQ(s.keys, none.keys);
  EXPECT_EQ(s.values, (std::vector<float>{1.0f, -1.0f}));
  EXPECT_EQ(none.values, (std::vector<float>{5.0f, 1.0f}));
  // No statistics for a numeric column: ConfigError at construction.
  spec.numeric_stats.clear();
  EXPECT_THROW(ShardReader(spec, {f}, 0, 1), ConfigError);
  EXPECT_THROW(LineParser(spec, {"id", "y", "n", "a", "b"}), ConfigError);
}

TEST(ReaderTest, ComputeNumericStatsMatchesHandComputation) {
  TempDir dir;
  // Column u: 1,2,3,4 plus an empty and an unparsable cell (left out) -> mean 2.5,
  // population std sqrt(1.25). Column v constant -> std 1. Two files, different order.
  const std::string f1 = dir.Write("1.csv", "y,u,v\n1,1,7\n0,2,7\n1,,7\n0,x,7\n");
  const std::string f2 = dir.Write("2.csv", "v,y,u\n7,1,3\n7,0,4\n7,1,2,9\n");  // last: bad row
  FeatureSpec spec = Spec(DataFormat::kCsv);
  spec.data.csv.label = "y";
  spec.data.csv.numeric = {"u", "v"};
  std::vector<NumericStat> stats = ComputeNumericStats(spec, {f1, f2});
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].column, "u");
  EXPECT_DOUBLE_EQ(stats[0].mean, 2.5);
  EXPECT_DOUBLE_EQ(stats[0].std, std::sqrt(1.25));
  EXPECT_EQ(stats[1].column, "v");
  EXPECT_DOUBLE_EQ(stats[1].mean, 7.0);
  EXPECT_DOUBLE_EQ(stats[1].std, 1.0);
}

TEST(ReaderTest, CsvHeaderRoleMismatchesAreConfigErrors) {
  TempDir dir;
  const std::string f = dir.Write("h.csv", "id,y,n,a,b,extra\n1,1,2,x,y,z\n");
  auto message = [&](const FeatureSpec& spec, const std::string& file) -> std::string {
    try {
      ShardReader reader(spec, {file}, 0, 1);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "no error";
  };
  std::string m = message(CsvSpec3(), f);
  EXPECT_NE(m.find("data.csv"), std::string::npos) << m;
  EXPECT_NE(m.find("'extra'"), std::string::npos) << m;
  EXPECT_NE(m.find(f), std::string::npos) << m;

  const std::string g = dir.Write("g.csv", "id,y,a,b\n1,1,x,y\n");
  m = message(CsvSpec3(), g);
  EXPECT_NE(m.find("data.csv.numeric"), std::string::npos) << m;
  EXPECT_NE(m.find("'n'"), std::string::npos) << m;

  FeatureSpec twice = CsvSpec3();
  twice.data.csv.ignore = {"id", "a"};
  m = message(twice, dir.Write("t.csv", "id,y,n,a,b\n"));
  EXPECT_NE(m.find("'a'"), std::string::npos) << m;
  EXPECT_NE(m.find("more than one role"), std::string::npos) << m;

  FeatureSpec nolabel = CsvSpec3();
  nolabel.data.csv.label = "label";
  m = message(nolabel, dir.Write("l.csv", "id,y,n,a,b\n"));
  EXPECT_NE(m.find("data.csv.label"), std::string::npos) << m;
}

TEST(ReaderTest, MissingFileIsIoErrorNamingPath) {
  try {
    ShardReader reader(Spec(DataFormat::kLibsvm), {"/nonexistent/fmps/x.txt"}, 0, 1);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/fmps/x.txt"), std::string::npos);
  }
}

// ---- Bad rows ----

struct BadCase {
  DataFormat format;
  std::string line;
  std::string reason_part;
  Loss loss = Loss::kLogistic;
  int bits = 0;
};

TEST(ReaderTest, EveryBadRowReason) {
  std::string too_many = "1";
  for (int i = 0; i < 40; ++i) too_many += "\t5";
  const std::vector<BadCase> cases = {
      {DataFormat::kLibsvm, "", "missing label"},
      {DataFormat::kLibsvm, "3:1 4:1", "missing label (first token '3:1' is a feature)"},
      {DataFormat::kLibffm, "1:3:1", "missing label"},
      {DataFormat::kLibsvm, "2 3:1", "label '2' is not 0/1 or -1/+1 for logistic loss"},
      {DataFormat::kLibsvm, "0.5 3:1", "label '0.5' is not 0/1"},
      {DataFormat::kLibsvm, "yes 3:1", "bad number 'yes' in label"},
      {DataFormat::kLibsvm, "nan 3:1", "non-finite value 'nan' in label", Loss::kSquared},
      {DataFormat::kLibsvm, "1e400 3:1", "non-finite value", Loss::kSquared},
      {DataFormat::kLibsvm, "1 -3:1", "id out of range"},
      {DataFormat::kLibsvm, "1 18446744073709551616:1", "id out of range"},
      {DataFormat::kLibsvm, "1 18446744073709551615:1", "id out of range"},  // kBiasKey, bits 0
      {DataFormat::kLibsvm, "1 3:abc", "bad number 'abc' in feature 1"},
      {DataFormat::kLibsvm, "1 3:1 4:", "bad number '' in feature 2"},
      {DataFormat::kLibsvm, "1 3:1e400", "non-finite value '1e400'"},
      {DataFormat::kLibsvm, "1 3:nan", "non-finite value 'nan'"},
      {DataFormat::kLibsvm, "1 3:-inf", "non-finite value '-inf'"},
      {DataFormat::kLibsvm, "1 3:1 7", "missing ':value'"},
      {DataFormat::kLibsvm, "1 x:1", "bad id 'x:1'"},
      {DataFormat::kLibffm, "1 3:5", "missing part"},
      {DataFormat::kLibffm, "1 3::1", "missing part"},
      {DataFormat::kLibffm, "1 3:5:", "missing part"},
      {DataFormat::kLibffm, "1 :5:1", "missing part"},
      {DataFormat::kLibffm, "1 f:5:1", "bad field"},
      {DataFormat::kLibffm, "1 4294967295:5:1", "bad field id '4294967295:5:1' in feature 1"},
      {DataFormat::kLibffm, "1 2:5:1 18446744073709551616:5:1", "bad field id '1844"},
      {DataFormat::kLibffm, "1 -1:5:1", "bad field id '-1:5:1' in feature 1"},
      {DataFormat::kLibffm, "1 1:-5:1", "id out of range"},
      {DataFormat::kLibffm, "1 1:5:abc", "bad number 'abc'"},
      {DataFormat::kLibffm, "1 1:5:1e99", "non-finite value"},
      {DataFormat::kLibffm, "3 1:5:1", "label '3'"},
      {DataFormat::kCriteo, too_many, "too many columns (41, at most 40)"},
      {DataFormat::kCriteo, "\t1\t2", "missing label"},
      {DataFormat::kCriteo, "1\t1\tabc", "bad number 'abc' in column I2"},
      {DataFormat::kCriteo, "1\t1e999", "non-finite value '1e999' in column I1"},
      {DataFormat::kCriteo, "-2\t1", "label '-2'"},
  };
  for (const BadCase& c : cases) {
    const std::string reason = ParseReason(Spec(c.format, c.bits, c.loss), c.line);
    EXPECT_NE(reason.find(c.reason_part), std::string::npos)
        << "line '" << c.line << "' gave '" << reason << "', expected '" << c.reason_part << "'";
  }
  // A field that is no integer keeps its message; 2^32 - 2 is the largest field id.
  EXPECT_EQ(ParseReason(Spec(DataFormat::kLibffm), "1 f:5:1"), "bad field 'f:5:1' in feature 1");
  EXPECT_EQ(ParseReason(Spec(DataFormat::kLibffm), "1 4294967294:5:1"), "");
  // With hashing, the raw id 2^64-1 is an ordinary id.
  EXPECT_EQ(ParseReason(Spec(DataFormat::kLibsvm, 20), "1 18446744073709551615:1"), "");
  // A valid line parses (sanity of the helper); trailing '\r' tolerated.
  EXPECT_EQ(ParseReason(Spec(DataFormat::kLibsvm), "-1 3:1\r"), "");
  EXPECT_EQ(ParseReason(Spec(DataFormat::kCriteo), "1\t260.0\t\t-5"), "");
}

TEST(ReaderTest, EveryCsvBadRowReason) {
  const std::vector<std::string> header = {"id", "y", "n", "a", "b"};
  const std::vector<std::pair<std::string, std::string>> csv_cases = {
      {"1,1,2,x", "expected 5 columns, found 4"},
      {"1,1,2,x,y,z", "expected 5 columns, found 6"},
      {"1,1,2,\"x,y", "unterminated quote"},
      {"1,1,2,\"x\"y,z", "after closing quote"},
      {"1,,2,x,y", "missing label"},
      {"1,7,2,x,y", "label '7'"},
      {"1,1,abc,x,y", "bad number 'abc' in column 'n'"},
      {"1,1,1e400,x,y", "non-finite value '1e400' in column 'n'"},
  };
  for (const auto& [line, part] : csv_cases) {
    const std::string reason = ParseReason(CsvSpec3(), line, header);
    EXPECT_NE(reason.find(part), std::string::npos)
        << "line '" << line << "' gave '" << reason << "', expected '" << part << "'";
  }
  EXPECT_EQ(ParseReason(CsvSpec3(), "1,1,2,\"x,\"\"q\"\"\",y", header), "");
  // none transform: a double beyond float's range is non-finite.
  EXPECT_NE(ParseReason(CsvSpec3(), "1,1,1e300,x,y", header).find("non-finite"), std::string::npos);
  EXPECT_EQ(ParseReason(CsvSpec3(NumericTransform::kLogBucket), "1,1,1e300,x,y", header), "");
}

TEST(ReaderTest, LongTokensAreTruncatedInReasons) {
  const std::string reason =
      ParseReason(Spec(DataFormat::kLibsvm), "1 3:" + std::string(100000, 'x'));
  EXPECT_LT(reason.size(), 200u);
  EXPECT_NE(reason.find("bad number"), std::string::npos);
}

// The message of the DataError that reading all of `path` under on_error: fail throws, or
// "no DataError".
std::string FailModeError(FeatureSpec spec, const std::string& path) {
  spec.data.on_error = OnError::kFail;
  ShardReader reader(spec, {path}, 0, 1);
  RowBlock block;
  try {
    while (reader.Read(100, &block) > 0) {
    }
  } catch (const DataError& e) {
    return e.what();
  }
  return "no DataError";
}

TEST(ReaderTest, SkipCountsReportsFirstFiveAndFailThrows) {
  TempDir dir;
  std::string text;
  for (int i = 1; i <= 20; ++i) text += (i % 2 == 0 ? "5 1:1\n" : "1 1:1\n");
  const std::string path = dir.Write("bad.txt", text);
  BadRowStats bad;
  RowBlock b = ReadAll(Spec(DataFormat::kLibsvm), {path}, 0, 1, &bad);
  EXPECT_EQ(b.rows(), 10u);
  EXPECT_EQ(bad.count, 10u);
  ASSERT_EQ(bad.first.size(), 5u);
  EXPECT_EQ(bad.first[0], path + ":2: label '5' is not 0/1 or -1/+1 for logistic loss");
  EXPECT_EQ(bad.first[4], path + ":10: label '5' is not 0/1 or -1/+1 for logistic loss");

  const std::string thrown = FailModeError(Spec(DataFormat::kLibsvm), path);
  EXPECT_NE(thrown.find(path + ":2: label '5'"), std::string::npos) << thrown;
}

TEST(ReaderTest, BadFieldIdIsABadRowNamingFileAndLine) {
  TempDir dir;
  const std::string path =
      dir.Write("f.ffm", "1 0:1:1\n1 4294967295:2:1\n0 3:3:1 99999999999:4:1\n1 5:5:1\n");
  BadRowStats bad;
  RowBlock b = ReadAll(Spec(DataFormat::kLibffm), {path}, 0, 1, &bad);
  EXPECT_EQ(b.rows(), 2u);
  EXPECT_EQ(b.fields, (std::vector<std::uint32_t>{0, 5}));
  EXPECT_EQ(bad.count, 2u);
  EXPECT_EQ(bad.first,
            (std::vector<std::string>{path + ":2: bad field id '4294967295:2:1' in feature 1",
                                      path + ":3: bad field id '99999999999:4:1' in feature 2"}));
  EXPECT_EQ(FailModeError(Spec(DataFormat::kLibffm), path),
            path + ":2: bad field id '4294967295:2:1' in feature 1");
}

// A file whose bad rows sit at known lines, with a BOM, CRLF and LF lines, blank and
// whitespace-only lines and no final newline; every shard must report exact line numbers.
TEST(ReaderTest, ShardsStartingMidFileReportExactLineNumbers) {
  TempDir dir;
  const std::set<int> bad_lines = {2, 333, 334, 1500, 3000};
  std::string text = "\xEF\xBB\xBF";
  std::set<std::string> expected;
  const std::string path = dir.File("lines.txt");
  int good = 0;
  for (int i = 1; i <= 3000; ++i) {
    std::string line;
    if (bad_lines.count(i)) {
      line = std::to_string(i) + " 1:1";
      expected.insert(path + ":" + std::to_string(i) + ": label '" + std::to_string(i) +
                      "' is not 0/1 or -1/+1 for logistic loss");
    } else if (i % 97 == 0) {
      line = "";
    } else if (i % 89 == 0) {
      line = " \t ";
    } else {
      line = "1 " + std::to_string(i) + ":1";
      ++good;
    }
    text += line;
    if (i < 3000) text += (i % 2 == 0 ? "\r\n" : "\n");
  }
  dir.Write("lines.txt", text);
  RowBlock all = ReadAll(Spec(DataFormat::kLibsvm), {path});
  ASSERT_EQ(all.rows(), static_cast<std::size_t>(good));
  EXPECT_EQ(all.keys.front(), 1u);  // BOM stripped: line 1 is "1 1:1"
  FeatureSpec fail = Spec(DataFormat::kLibsvm);
  fail.data.on_error = OnError::kFail;
  for (int n = 1; n <= 7; ++n) {
    std::set<std::string> got;
    for (int s = 0; s < n; ++s) {
      BadRowStats bad;
      ReadAll(Spec(DataFormat::kLibsvm), {path}, s, n, &bad);
      ASSERT_LE(bad.count, 5u);  // each shard reports all of its bad rows
      ASSERT_EQ(bad.first.size(), bad.count);
      got.insert(bad.first.begin(), bad.first.end());
      // on_error: fail throws the shard's first bad row.
      ShardReader reader(fail, {path}, s, n);
      RowBlock block;
      std::string thrown;
      try {
        while (reader.Read(64, &block) > 0) {
        }
      } catch (const DataError& e) {
        thrown = e.what();
      }
      EXPECT_EQ(thrown, bad.first.empty() ? "" : bad.first[0]) << "n=" << n << " s=" << s;
    }
    EXPECT_EQ(got, expected) << "n=" << n;
  }
  // Also across a file boundary: line numbers restart per file.
  const std::string second = dir.Write("second.txt", "1 1:1\n\n9 1:1\n");
  BadRowStats bad;
  ReadAll(Spec(DataFormat::kLibsvm), {path, second}, 1, 2, &bad);
  ASSERT_FALSE(bad.first.empty());
  EXPECT_EQ(bad.first.back(), second + ":3: label '9' is not 0/1 or -1/+1 for logistic loss");
}

TEST(ReaderTest, BomCrlfBlankLinesAndMissingFinalNewline) {
  TempDir dir;
  const std::string lf = dir.Write("lf.txt", "1 1:1\n0 2:1\n1 3:1\n");
  const std::string odd = dir.Write("odd.txt",
                                    "\xEF\xBB\xBF"
                                    "1 1:1\r\n\r\n   \n\t\n0 2:1\r\n\n1 3:1");
  RowBlock a = ReadAll(Spec(DataFormat::kLibsvm), {lf});
  BadRowStats bad;
  RowBlock b = ReadAll(Spec(DataFormat::kLibsvm), {odd}, 0, 1, &bad);
  EXPECT_EQ(bad.count, 0u);
  EXPECT_EQ(a.rows(), 3u);
  EXPECT_EQ(Diff(a, b), "");
  // Same for csv: BOM before the header, CRLF.
  const std::string csv1 = dir.Write("a.csv", "id,y,n,a,b\n1,1,2,x,y\n2,0,3,z,\n");
  const std::string csv2 =
      dir.Write("b.csv", "\xEF\xBB\xBFid,y,n,a,b\r\n1,1,2,x,y\r\n\r\n2,0,3,z,");
  EXPECT_EQ(Diff(ReadAll(CsvSpec3(), {csv1}), ReadAll(CsvSpec3(), {csv2})), "");
  // Empty and newline-only files yield nothing.
  const std::string empty = dir.Write("e.txt", "");
  const std::string nl = dir.Write("n.txt", "\n\n");
  EXPECT_EQ(ReadAll(Spec(DataFormat::kLibsvm), {empty, nl, lf, empty}).rows(), 3u);
}

TEST(ReaderTest, TenMegabyteLine) {
  TempDir dir;
  std::string big = "1";
  int features = 0;
  while (big.size() < 10'500'000) {
    big += Num(" ", 100000 + features);
    big += ":1";
    ++features;
  }
  const std::string path = dir.Write("big.txt", "0 1:1\n" + big + "\n1 2:1\n" + big);
  for (int n : {1, 3}) {
    RowBlock all;
    for (int s = 0; s < n; ++s) Append(ReadAll(Spec(DataFormat::kLibsvm), {path}, s, n), &all);
    ASSERT_EQ(all.rows(), 4u);
    EXPECT_EQ(all.offsets, (std::vector<std::size_t>{0, 1, 1 + static_cast<std::size_t>(features),
                                                     2 + static_cast<std::size_t>(features),
                                                     2 + 2 * static_cast<std::size_t>(features)}));
    EXPECT_EQ(all.keys[1], 100000u);
    EXPECT_EQ(all.keys.back(), 100000u + static_cast<Key>(features) - 1);
  }
}

TEST(ReaderTest, RewindGivesTheSameRowsAgain) {
  FMPS_REQUIRE_SHARED_DATA(path, "agaricus/agaricus.txt.train");
  ShardReader reader(Spec(DataFormat::kLibsvm), {path}, 1, 3);
  RowBlock first, second;
  while (reader.Read(100, &first) > 0) {
  }
  EXPECT_EQ(reader.bytes_consumed(), reader.bytes_in_shard());
  reader.Rewind();
  EXPECT_EQ(reader.bytes_consumed(), 0u);
  std::uint64_t last = 0;
  while (reader.Read(100, &second) > 0) {
    EXPECT_GE(reader.bytes_consumed(), last);
    last = reader.bytes_consumed();
  }
  EXPECT_GT(first.rows(), 1000u);
  EXPECT_EQ(Diff(first, second), "");
  EXPECT_EQ(reader.rows_read(), 2 * first.rows());
}

TEST(ReaderTest, ShardsConcatenateToTheWholeOnRealData) {
  FMPS_REQUIRE_SHARED_DATA(base, "");
  for (const ShardCase& c : ShardCases()) {
    std::vector<std::string> files;
    for (const auto& f : c.files) files.push_back(base + f);
    BadRowStats bad;
    RowBlock whole = ReadAll(c.spec, files, 0, 1, &bad);
    EXPECT_EQ(whole.rows(), c.rows) << c.name;
    EXPECT_EQ(bad.count, 0u) << c.name << ": " << (bad.first.empty() ? "" : bad.first[0]);
    EXPECT_GT(whole.nnz(), whole.rows()) << c.name;
    for (int n = 2; n <= 7; ++n) {
      RowBlock joined;
      for (int s = 0; s < n; ++s) Append(ReadAll(c.spec, files, s, n), &joined);
      EXPECT_EQ(Diff(joined, whole), "") << c.name << " n=" << n;
    }
  }
}

TEST(ReaderTest, MovielensQuotedTitleIsOneCell) {
  FMPS_REQUIRE_SHARED_DATA(path, "deepctr_samples/movielens_sample.txt");
  FeatureSpec spec = ShardCases().back().spec;
  RowBlock b = ReadAll(spec, {path});
  ASSERT_EQ(b.rows(), 200u);
  EXPECT_EQ(b.labels[0], 4.0f);  // squared loss keeps ratings
  EXPECT_EQ(b.labels[2], 4.0f);
  ASSERT_EQ(b.offsets[3] - b.offsets[2], 8u);
  // Row 3 is 517,105,4,...,"Bridges of Madison County, The (1995)",Drama|Romance,F,25,14,55408
  LineParser parser(spec, {"user_id", "movie_id", "rating", "timestamp", "title", "genres",
                           "gender", "age", "occupation", "zip"});
  RowBlock one;
  std::string reason;
  ASSERT_TRUE(
      parser.Parse("517,105,4,0,\"Bridges of Madison County, The (1995)\","
                   "Drama|Romance,F,25,14,55408",
                   &one, &reason))
      << reason;
  EXPECT_EQ(RowFeatures(one, 0), RowFeatures(b, 2));
}

}  // namespace
}  // namespace fmps
