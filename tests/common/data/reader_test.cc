#include "common/data/reader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <new>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "common/base/parse_number.h"
#include "tests/util/test_util.h"

// ---- Allocation counting: global operator new/delete replaced for this test binary. ----
namespace {
std::atomic<bool> g_counting{false};
std::atomic<std::size_t> g_allocations{0};
std::vector<int>* volatile g_sink = nullptr;

void* CountedAlloc(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* CountedAlignedAlloc(std::size_t n, std::align_val_t al) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  const auto a = static_cast<std::size_t>(al);
  void* p = std::aligned_alloc(a, (n + a - 1) / a * a);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) { return CountedAlloc(n); }
void* operator new[](std::size_t n) { return CountedAlloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return CountedAlloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return CountedAlloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t al) { return CountedAlignedAlloc(n, al); }
void* operator new[](std::size_t n, std::align_val_t al) { return CountedAlignedAlloc(n, al); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace fmps {
namespace {

using ::fmps::testing::TempDir;

// prefix followed by a decimal number (avoids GCC 12's false -Wrestrict on
// "literal" + std::to_string(...)).
std::string Num(std::string_view prefix, long long v) {
  std::string out(prefix);
  out.append(std::to_string(v));
  return out;
}

FeatureSpec Spec(DataFormat format, int hash_bits = 0, Loss loss = Loss::kLogistic) {
  FeatureSpec spec;
  spec.data.format = format;
  spec.data.hash_bits = hash_bits;
  spec.loss = loss;
  return spec;
}

// Reads the whole shard, appending to one block (batches of 333 rows).
RowBlock ReadAll(const FeatureSpec& spec, const std::vector<std::string>& files, int shard = 0,
                 int num_shards = 1, BadRowStats* bad = nullptr) {
  ShardReader reader(spec, files, shard, num_shards);
  RowBlock block;
  while (reader.Read(333, &block) > 0) {
  }
  EXPECT_EQ(reader.bytes_consumed(), reader.bytes_in_shard());
  EXPECT_EQ(reader.rows_read(), block.rows());
  if (bad != nullptr) *bad = reader.bad_rows();
  return block;
}

void Append(const RowBlock& src, RowBlock* dst) {
  for (std::size_t r = 0; r < src.rows(); ++r) {
    for (std::size_t j = src.offsets[r]; j < src.offsets[r + 1]; ++j) {
      dst->AddFeature(src.keys[j], src.values[j], src.fields[j]);
    }
    dst->FinishRow(src.labels[r]);
  }
}

// Empty string when equal (labels, rows, keys, values and fields), else where they first
// differ. Each block must have one field per non-zero.
std::string Diff(const RowBlock& a, const RowBlock& b) {
  if (a.fields.size() != a.nnz() || b.fields.size() != b.nnz()) return "fields not parallel";
  if (a.rows() != b.rows()) {
    return "rows " + std::to_string(a.rows()) + " vs " + std::to_string(b.rows());
  }
  for (std::size_t r = 0; r < a.rows(); ++r) {
    if (a.labels[r] != b.labels[r]) return "label of row " + std::to_string(r);
    if (a.offsets[r + 1] != b.offsets[r + 1]) return "length of row " + std::to_string(r);
  }
  for (std::size_t j = 0; j < a.nnz(); ++j) {
    if (a.keys[j] != b.keys[j] || a.values[j] != b.values[j] || a.fields[j] != b.fields[j]) {
      return "feature " + std::to_string(j);
    }
  }
  return "";
}

struct Feature {
  Key key;
  float value;
  bool operator==(const Feature&) const = default;
};
std::vector<Feature> RowFeatures(const RowBlock& b, std::size_t r) {
  std::vector<Feature> out;
  for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j)
    out.push_back({b.keys[j], b.values[j]});
  return out;
}
std::ostream& operator<<(std::ostream& os, const Feature& f) {
  return os << "(" << f.key << ", " << f.value << ")";
}
// The fields of row r (one per non-zero).
std::vector<std::uint32_t> RowFields(const RowBlock& b, std::size_t r) {
  EXPECT_EQ(b.fields.size(), b.nnz());
  return {b.fields.begin() + static_cast<std::ptrdiff_t>(b.offsets[r]),
          b.fields.begin() + static_cast<std::ptrdiff_t>(b.offsets[r + 1])};
}

// Parses one line with LineParser; returns the reason ("" on success).
std::string ParseReason(const FeatureSpec& spec, const std::string& line,
                        std::vector<std::string> header = {}) {
  LineParser parser(spec, std::move(header));
  RowBlock block;
  block.AddFeature(7, 7.0f);  // an earlier row must survive a failed parse
  block.FinishRow(1.0f);
  std::string reason;
  const bool ok = parser.Parse(line, &block, &reason);
  if (ok) return "";
  EXPECT_EQ(block.nnz(), 1u) << "failed parse must leave the block unchanged: "
                             << line.substr(0, 80);
  EXPECT_EQ(block.fields, std::vector<std::uint32_t>{0}) << line.substr(0, 80);
  EXPECT_EQ(block.rows(), 1u);
  EXPECT_FALSE(reason.empty());
  return reason;
}

// ---- Numbers ----

TEST(ParseNumberTest, IntegersDetectOverflowAndSign) {
  using internal::NumStatus;
  auto parse = [](std::string_view s, std::uint64_t* v) {
    return internal::ParseU64(s.data(), s.data() + s.size(), v);
  };
  std::uint64_t v = 0;
  EXPECT_EQ(parse("0", &v), NumStatus::kOk);
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(parse("18446744073709551615", &v), NumStatus::kOk);
  EXPECT_EQ(v, ~std::uint64_t{0});
  EXPECT_EQ(parse("18446744073709551616", &v), NumStatus::kOutOfRange);
  EXPECT_EQ(parse("99999999999999999999999", &v), NumStatus::kOutOfRange);
  EXPECT_EQ(parse("-3", &v), NumStatus::kOutOfRange);
  EXPECT_EQ(parse("", &v), NumStatus::kBad);
  EXPECT_EQ(parse("12a", &v), NumStatus::kBad);
  EXPECT_EQ(parse("1.5", &v), NumStatus::kBad);
}

TEST(ParseNumberTest, EightAtATimeIntegersMatchTheDigitLoop) {
  using internal::NumStatus;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const int len = 1 + static_cast<int>(rng() % 24);
    std::string digits;
    for (int d = 0; d < len; ++d) digits += static_cast<char>('0' + rng() % 10);
    if (i % 10 == 0) digits = std::string(static_cast<std::size_t>(rng() % 6), '0') + digits;
    // Digits, then a terminator, then digits that must not be picked up past `end`.
    std::string text = digits + (i % 2 ? ":" : "") + "98765432109876543210";
    const char* end = text.data() + digits.size() + (i % 2);
    const char* p = text.data();
    std::uint64_t got = 0, expect = 0;
    const NumStatus st = internal::ScanU64Padded(&p, end, &got);
    const NumStatus want =
        internal::ParseU64(digits.data(), digits.data() + digits.size(), &expect);
    ASSERT_EQ(st, want) << digits;
    ASSERT_EQ(p, text.data() + digits.size()) << digits;
    if (st == NumStatus::kOk) {
      ASSERT_EQ(got, expect) << digits;
    }
  }
  std::string edge = "18446744073709551615 18446744073709551616 0000000000000000000000001";
  edge.append(16, '\0');
  const char* p = edge.data();
  const char* end = edge.data() + edge.find('\0');
  std::uint64_t v = 0;
  EXPECT_EQ(internal::ScanU64Padded(&p, end, &v), NumStatus::kOk);
  EXPECT_EQ(v, ~std::uint64_t{0});
  ++p;
  EXPECT_EQ(internal::ScanU64Padded(&p, end, &v), NumStatus::kOutOfRange);
  ++p;
  EXPECT_EQ(internal::ScanU64Padded(&p, end, &v), NumStatus::kOk);
  EXPECT_EQ(v, 1u);
  EXPECT_EQ(p, end);
  EXPECT_EQ(internal::ScanU64Padded(&p, end, &v), NumStatus::kBad);
}

TEST(ParseNumberTest, FloatsAreCorrectlyRoundedLikeFromChars) {
  using internal::NumStatus;
  std::mt19937_64 rng(42);
  auto check = [](const std::string& s) {
    float expect = 0.0f;
    auto res = std::from_chars(s.data(), s.data() + s.size(), expect);
    float got = -12345.0f;
    if (res.ec == std::errc::result_out_of_range) {  // beyond float: overflow or underflow
      double d = 0.0;
      std::from_chars(s.data(), s.data() + s.size(), d);
      if (std::fabs(d) > 1.0) {
        EXPECT_EQ(internal::ParseFloat(s, &got), NumStatus::kNonFinite) << s;
      } else {
        EXPECT_EQ(internal::ParseFloat(s, &got), NumStatus::kOk) << s;
        EXPECT_EQ(got, 0.0f) << s;
      }
      return;
    }
    ASSERT_EQ(res.ec, std::errc()) << s;
    ASSERT_EQ(internal::ParseFloat(s, &got), NumStatus::kOk) << s;
    EXPECT_EQ(got, expect) << s;
    double dexpect = 0.0, dgot = 0.0;
    std::from_chars(s.data(), s.data() + s.size(), dexpect);
    ASSERT_EQ(internal::ParseDouble(s, &dgot), NumStatus::kOk) << s;
    EXPECT_EQ(dgot, dexpect) << s;
  };
  for (const char* s : {"0",
                        "1",
                        "-1",
                        "0.3651",
                        "0.50000",
                        "260.0",
                        "1e-3",
                        "2.5E+1",
                        "-0.333333",
                        "1.",
                        ".5",
                        "123456789012345678901234567890",
                        "0.000000000000000000001234",
                        "16777217",
                        "3.4028234e38",
                        "1.17549435e-38",
                        "1e-40",
                        "0.1",
                        "9007199254740993",
                        "33554431",
                        "16777215.5"}) {
    check(s);
  }
  // Random decimals of varying length and exponent, including float-midpoint-prone ones.
  for (int i = 0; i < 200000; ++i) {
    std::string s;
    if (rng() % 2) s += '-';
    const int int_digits = static_cast<int>(rng() % 12);
    const int frac_digits = static_cast<int>(rng() % 22);
    for (int d = 0; d < int_digits; ++d) s += static_cast<char>('0' + rng() % 10);
    if (int_digits == 0) s += '0';
    if (frac_digits > 0) {
      s += '.';
      for (int d = 0; d < frac_digits; ++d) s += static_cast<char>('0' + rng() % 10);
    }
    if (rng() % 3 == 0) s += Num("e", static_cast<int>(rng() % 60) - 30);
    check(s);
  }
  // Exact float midpoints written in full (double rounding would break these).
  for (int i = 0; i < 2000; ++i) {
    const float f = static_cast<float>(rng() % 100000000) / 1024.0f + 1.0f;
    const double mid = (static_cast<double>(f) + static_cast<double>(std::nextafter(f, 1e30f))) / 2;
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof(buf), mid, std::chars_format::fixed);
    check(std::string(buf, res.ptr));
  }
}

TEST(ParseNumberTest, RejectsGarbageAndNonFinite) {
  using internal::NumStatus;
  float v;
  for (const char* s :
       {"", "-", "+", "abc", "1e", "1e+", "1.2.3", "0x10", "1,5", "--1", "+-1", " 1", "1 "}) {
    EXPECT_EQ(internal::ParseFloat(s, &v), NumStatus::kBad) << s;
  }
  for (const char* s : {"nan", "NaN", "inf", "-inf", "infinity", "1e400", "-1e39", "3.5e38"}) {
    EXPECT_EQ(internal::ParseFloat(s, &v), NumStatus::kNonFinite) << s;
  }
  double d;
  EXPECT_EQ(internal::ParseDouble("1e400", &d), NumStatus::kNonFinite);
  EXPECT_EQ(internal::ParseDouble("1e300", &d), NumStatus::kOk);
  EXPECT_EQ(internal::ParseFloat("1e-400", &v), NumStatus::kOk);
  EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(internal::ParseFloat("+1.5", &v), NumStatus::kOk);
  EXPECT_EQ(v, 1.5f);
}

TEST(LogBucketTest, Values) {
  EXPECT_EQ(LogBucket(0), 0);
  EXPECT_EQ(LogBucket(1), 1);
  EXPECT_EQ(LogBucket(1.9), 1);
  EXPECT_EQ(LogBucket(2), 2);
  EXPECT_EQ(LogBucket(2.5), 0);   // ln(2.5)^2 = 0.84
  EXPECT_EQ(LogBucket(3), 1);     // 1.21
  EXPECT_EQ(LogBucket(10), 5);    // 5.30
  EXPECT_EQ(LogBucket(100), 21);  // 21.21
  EXPECT_EQ(LogBucket(1e6), 190);
  EXPECT_EQ(LogBucket(-1), -1);
  EXPECT_EQ(LogBucket(-0.5), -1);
  EXPECT_EQ(LogBucket(260.0), 30);  // ln(260)^2 = 30.92
}

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

FeatureSpec CsvSpec3(NumericTransform t = NumericTransform::kNone) {
  FeatureSpec spec = Spec(DataFormat::kCsv);
  spec.data.csv.label = "y";
  spec.data.csv.numeric = {"n"};
  spec.data.csv.categorical = {"a", "b"};
  spec.data.csv.ignore = {"id"};
  spec.data.csv.transform = t;
  return spec;
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

  // csv
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
  EXPECT_EQ(bad.first, (std::vector<std::string>{
                           path + ":2: bad field id '4294967295:2:1' in feature 1",
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

// ---- Sharding on real files ----

struct ShardCase {
  std::string name;
  FeatureSpec spec;
  std::vector<std::string> files;  // relative to shared data
  std::size_t rows;                // n = 1 row count (README)
};

FeatureSpec CriteoCsvSpec(const std::string& label, bool with_id) {
  FeatureSpec spec = Spec(DataFormat::kCsv, 24);
  spec.data.csv.label = label;
  for (int i = 1; i <= 13; ++i) spec.data.csv.numeric.push_back(Num("I", i));
  for (int i = 1; i <= 26; ++i) spec.data.csv.categorical.push_back(Num("C", i));
  if (with_id) spec.data.csv.ignore = {"Id"};
  spec.data.csv.transform = NumericTransform::kLogBucket;
  return spec;
}

std::vector<ShardCase> ShardCases() {
  std::vector<ShardCase> cases;
  cases.push_back({"a9a", Spec(DataFormat::kLibsvm), {"a9a/a9a"}, 32561});
  cases.push_back({"a9a+a9a.t", Spec(DataFormat::kLibsvm, 18), {"a9a/a9a", "a9a/a9a.t"}, 48842});
  cases.push_back({"agaricus", Spec(DataFormat::kLibsvm), {"agaricus/agaricus.txt.train"}, 6513});
  cases.push_back({"xlearn", Spec(DataFormat::kLibffm), {"xlearn_criteo/small_train.txt"}, 200});
  cases.push_back({"guestwalk",
                   CriteoCsvSpec("Label", true),
                   {"guestwalk_criteo_tiny/train.tiny.csv", "guestwalk_criteo_tiny/test.tiny.csv"},
                   3998});
  cases.push_back(
      {"jqsl", Spec(DataFormat::kCriteo, 20), {"jqsl_pytorchfm_criteo/train.txt"}, 1000});
  cases.push_back({"deepctr_criteo",
                   CriteoCsvSpec("label", false),
                   {"deepctr_samples/criteo_sample.txt"},
                   200});
  FeatureSpec movielens = Spec(DataFormat::kCsv, 0, Loss::kSquared);
  movielens.data.csv.label = "rating";
  movielens.data.csv.categorical = {"user_id", "movie_id", "title",      "genres",
                                    "gender",  "age",      "occupation", "zip"};
  movielens.data.csv.ignore = {"timestamp"};
  cases.push_back({"movielens", movielens, {"deepctr_samples/movielens_sample.txt"}, 200});
  return cases;
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

// ---- Byte ranges, Remaining() and resuming ----

std::uint64_t RangeBytes(const std::vector<ByteRange>& ranges) {
  std::uint64_t n = 0;
  for (const ByteRange& r : ranges) n += r.end - r.begin;
  return n;
}

std::string RangesText(const std::vector<ByteRange>& ranges) {
  std::string out;
  for (const ByteRange& r : ranges) {
    out.append(Num("[", static_cast<long long>(r.begin)));
    out.append(Num(",", static_cast<long long>(r.end)));
    out.append(")");
  }
  return out;
}

// Reads every row of `reader` into *block (batches of `batch`).
void Drain(ShardReader* reader, RowBlock* block, std::size_t batch = 100) {
  while (reader->Read(batch, block) > 0) {
  }
}

// A row as a comparable value, for multiset comparisons.
using RowValue = std::pair<float, std::vector<std::tuple<Key, float, std::uint32_t>>>;
std::vector<RowValue> SortedRows(const RowBlock& b) {
  std::vector<RowValue> rows;
  for (std::size_t r = 0; r < b.rows(); ++r) {
    RowValue v{b.labels[r], {}};
    for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j) {
      v.second.emplace_back(b.keys[j], b.values[j], b.fields[j]);
    }
    rows.push_back(std::move(v));
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

// Real files for the resume tests: a single libsvm file, the CRLF csv with its roles, the
// ragged criteo file, and two multi-file lists (ranges crossing file boundaries; csv headers).
std::vector<ShardCase> ResumeCases() {
  std::vector<ShardCase> cases;
  for (const ShardCase& c : ShardCases()) {
    if (c.name == "a9a" || c.name == "a9a+a9a.t" || c.name == "guestwalk" || c.name == "jqsl") {
      cases.push_back(c);
    }
  }
  ShardCase train_only = cases[2];
  train_only.name = "guestwalk train";
  train_only.files = {"guestwalk_criteo_tiny/train.tiny.csv"};
  train_only.rows = 0;
  cases.push_back(train_only);
  return cases;
}

TEST(ResumeTest, RemainingResumesExactlyTheRestOfTheShard) {
  FMPS_REQUIRE_SHARED_DATA(base, "");
  constexpr std::size_t kBatch = 97;
  for (const ShardCase& c : ResumeCases()) {
    std::vector<std::string> files;
    std::string all_bytes;  // the concatenation, to check where Remaining() starts
    std::vector<std::uint64_t> file_starts;
    for (const auto& f : c.files) {
      files.push_back(base + f);
      file_starts.push_back(all_bytes.size());
      all_bytes += ::fmps::testing::ReadFile(files.back());
    }
    ASSERT_EQ(TotalBytes(files), all_bytes.size());
    for (int n : {1, 3}) {
      for (int s = 0; s < n; ++s) {
        const std::string where = c.name + Num(" n=", n) + Num(" s=", s);
        const RowBlock full = ReadAll(c.spec, files, s, n);
        ASSERT_GT(full.rows(), 0u) << where;
        const std::size_t batches = (full.rows() + kBatch - 1) / kBatch;
        for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{2}, batches / 2,
                              batches - 1, batches, batches + 1}) {
          const std::string at = where + Num(" k=", static_cast<long long>(k));
          ShardReader reader(c.spec, files, s, n);
          EXPECT_EQ(reader.Remaining(),
                    (std::vector<ByteRange>{ShardRange(all_bytes.size(), s, n)}))
              << at;
          RowBlock rows;
          bool exhausted = false;
          for (std::size_t b = 0; b < k && !exhausted; ++b) {
            exhausted = reader.Read(kBatch, &rows) == 0;
            const std::vector<ByteRange> rem = reader.Remaining();
            ASSERT_EQ(reader.bytes_consumed() + RangeBytes(rem), reader.bytes_in_shard()) << at;
          }
          const std::vector<ByteRange> rem = reader.Remaining();
          ASSERT_LE(rem.size(), 1u) << at;
          if (exhausted) {
            EXPECT_TRUE(rem.empty()) << at;
          }
          if (k > 0 && !rem.empty()) {
            // Starts exactly at the first byte of the next unread line.
            const std::uint64_t p = rem[0].begin;
            const bool line_start = std::count(file_starts.begin(), file_starts.end(), p) > 0 ||
                                    all_bytes[p - 1] == '\n';
            EXPECT_TRUE(line_start) << at << " " << RangesText(rem);
            EXPECT_EQ(rem[0].end, ShardRange(all_bytes.size(), s, n).end) << at;
          }
          ShardReader resumed(c.spec, files, rem);
          EXPECT_EQ(resumed.bytes_in_shard(), RangeBytes(rem)) << at;
          Drain(&resumed, &rows, 50);
          EXPECT_TRUE(resumed.Remaining().empty()) << at;
          EXPECT_EQ(resumed.bytes_consumed(), resumed.bytes_in_shard()) << at;
          EXPECT_EQ(Diff(rows, full), "") << at;
        }
        // Rewind restarts at the first range, on a reader built from ranges too.
        ShardReader ranged(c.spec, files, {ShardRange(all_bytes.size(), s, n)});
        RowBlock once, twice;
        ranged.Read(kBatch, &once);
        ranged.Rewind();
        EXPECT_EQ(ranged.bytes_consumed(), 0u);
        EXPECT_EQ(ranged.Remaining(), (std::vector<ByteRange>{ShardRange(all_bytes.size(), s, n)}));
        Drain(&ranged, &twice);
        EXPECT_EQ(Diff(twice, full), "") << where;
      }
    }
  }
}

// Stops each of n1 readers after some batches, splits all their Remaining() ranges among n2
// new readers, stops those too, splits again among n3 and finishes: every row of the files
// must be read exactly once in total.
TEST(ResumeTest, ResumingWithADifferentWorkerCountReadsEveryRowOnce) {
  FMPS_REQUIRE_SHARED_DATA(base, "");
  constexpr std::size_t kBatch = 61;
  for (const ShardCase& c : ResumeCases()) {
    std::vector<std::string> files;
    for (const auto& f : c.files) files.push_back(base + f);
    const RowBlock whole = ReadAll(c.spec, files);
    if (c.rows != 0) {
      ASSERT_EQ(whole.rows(), c.rows) << c.name;
    }
    const std::vector<RowValue> expected = SortedRows(whole);
    // Reads `batches` batches from a reader on `ranges` into *seen; returns Remaining().
    auto partial = [&](const std::vector<ByteRange>& ranges, std::size_t batches, RowBlock* seen) {
      ShardReader reader(c.spec, files, ranges);
      for (std::size_t b = 0; b < batches; ++b) {
        if (reader.Read(kBatch, seen) == 0) break;
      }
      return reader.Remaining();
    };
    for (int n1 = 1; n1 <= 4; ++n1) {
      for (int n2 = 1; n2 <= 5; ++n2) {
        const std::string where = c.name + Num(" n1=", n1) + Num(" n2=", n2);
        RowBlock seen;
        std::vector<ByteRange> remaining;
        for (int s = 0; s < n1; ++s) {
          // Stop points vary: 0, a few batches, or past the end of the shard.
          const std::size_t stop = static_cast<std::size_t>((s * 7 + n2 * 3) % 11) * 3;
          ShardReader reader(c.spec, files, s, n1);
          for (std::size_t b = 0; b < stop; ++b) {
            if (reader.Read(kBatch, &seen) == 0) break;
          }
          for (const ByteRange& r : reader.Remaining()) remaining.push_back(r);
        }
        const auto parts = SplitRanges(remaining, n2);
        ASSERT_EQ(parts.size(), static_cast<std::size_t>(n2)) << where;
        std::vector<ByteRange> remaining2;
        for (int p = 0; p < n2; ++p) {
          const std::size_t stop = static_cast<std::size_t>((p * 5 + n1) % 4) * 2;
          for (const ByteRange& r : partial(parts[static_cast<std::size_t>(p)], stop, &seen)) {
            remaining2.push_back(r);
          }
        }
        const int n3 = 1 + (n1 + n2) % 3;
        for (const auto& part : SplitRanges(remaining2, n3)) {
          ShardReader reader(c.spec, files, part);
          Drain(&reader, &seen);
        }
        ASSERT_EQ(seen.rows(), whole.rows()) << where;
        EXPECT_TRUE(SortedRows(seen) == expected) << where;
      }
    }
  }
}

TEST(ResumeTest, SplitRangesBalancesBytesAndKeepsOrder) {
  using R = std::vector<ByteRange>;
  EXPECT_EQ(SplitRanges({{0, 10}}, 3), (std::vector<R>{{{0, 3}}, {{3, 6}}, {{6, 10}}}));
  EXPECT_EQ(SplitRanges({{0, 4}, {10, 12}, {20, 26}}, 2),
            (std::vector<R>{{{0, 4}, {10, 12}}, {{20, 26}}}));
  EXPECT_EQ(SplitRanges({{5, 7}}, 4), (std::vector<R>{{}, {{5, 6}}, {}, {{6, 7}}}));
  // Touching and empty input ranges are merged / dropped.
  EXPECT_EQ(SplitRanges({{0, 3}, {3, 3}, {3, 6}, {9, 9}}, 1), (std::vector<R>{{{0, 6}}}));
  EXPECT_EQ(SplitRanges({}, 3), (std::vector<R>{{}, {}, {}}));
  EXPECT_THROW(SplitRanges({{0, 5}}, 0), ConfigError);
  EXPECT_THROW(SplitRanges({{4, 8}, {2, 3}}, 2), ConfigError);
  EXPECT_THROW(SplitRanges({{0, 5}, {4, 8}}, 2), ConfigError);
  EXPECT_THROW(SplitRanges({{5, 4}}, 2), ConfigError);

  std::mt19937_64 rng(11);
  for (int iter = 0; iter < 2000; ++iter) {
    R in;
    std::uint64_t pos = rng() % 5;
    const int count = static_cast<int>(rng() % 8);
    for (int i = 0; i < count; ++i) {
      const std::uint64_t len = rng() % 4 == 0 ? 0 : rng() % (iter % 2 ? 1000 : 5);
      in.push_back({pos, pos + len});
      pos += len + (rng() % 3 == 0 ? 0 : rng() % 50);
    }
    // The union, as a list of bytes runs with touching ones merged.
    R merged;
    std::uint64_t total = 0;
    for (const ByteRange& r : in) {
      total += r.end - r.begin;
      if (r.begin == r.end) continue;
      if (!merged.empty() && merged.back().end == r.begin) {
        merged.back().end = r.end;
      } else {
        merged.push_back(r);
      }
    }
    const int n = 1 + static_cast<int>(rng() % 7);
    const auto parts = SplitRanges(in, n);
    ASSERT_EQ(parts.size(), static_cast<std::size_t>(n));
    R flat;
    for (const R& part : parts) {
      const std::uint64_t bytes = RangeBytes(part);
      // Within one byte of equal: floor(total / n) or that plus one.
      EXPECT_GE(bytes * static_cast<std::uint64_t>(n) + static_cast<std::uint64_t>(n), total + 1);
      EXPECT_LE(bytes * static_cast<std::uint64_t>(n), total + static_cast<std::uint64_t>(n) - 1);
      for (std::size_t i = 0; i < part.size(); ++i) {
        EXPECT_LT(part[i].begin, part[i].end);
        if (i > 0) {
          EXPECT_LT(part[i - 1].end, part[i].begin);  // sorted, not touching
        }
      }
      for (const ByteRange& r : part) {
        if (!flat.empty() && flat.back().end == r.begin) {
          flat.back().end = r.end;
        } else {
          flat.push_back(r);
        }
      }
    }
    EXPECT_EQ(flat, merged) << RangesText(in) << Num(" n=", n);  // same bytes, in order
  }
}

TEST(ResumeTest, RangeConstructorValidatesRanges) {
  TempDir dir;
  const std::string a = dir.Write("a.txt", "1 1:1\n0 2:1\n");  // 12 bytes
  const std::string b = dir.Write("b.txt", "1 3:1\n");         // 6 bytes
  EXPECT_EQ(TotalBytes({a, b}), 18u);
  EXPECT_THROW(TotalBytes({dir.File("missing.txt")}), IoError);
  EXPECT_THROW(ShardRange(10, 3, 3), ConfigError);
  EXPECT_THROW(ShardRange(10, 0, 0), ConfigError);
  const FeatureSpec spec = Spec(DataFormat::kLibsvm);
  EXPECT_THROW(ShardReader(spec, {a, b}, {{0, 19}}), ConfigError);
  EXPECT_THROW(ShardReader(spec, {a, b}, {{5, 9}, {8, 12}}), ConfigError);
  EXPECT_THROW(ShardReader(spec, {a, b}, {{9, 5}}), ConfigError);
  EXPECT_THROW(ShardReader(spec, {a, b}, 0, 0), ConfigError);
  // Ranges: only the rows starting in them, across the file boundary, touching ones merged.
  ShardReader r(spec, {a, b}, {{1, 6}, {6, 7}, {7, 7}, {12, 13}});
  EXPECT_EQ(r.bytes_in_shard(), 7u);
  EXPECT_EQ(r.Remaining(), (std::vector<ByteRange>{{1, 7}, {12, 13}}));
  RowBlock block;
  ASSERT_EQ(r.Read(1, &block), 1u);  // "0 2:1" at offset 6
  EXPECT_EQ(r.Remaining(), (std::vector<ByteRange>{{12, 13}}));
  EXPECT_EQ(r.bytes_consumed(), 6u);
  ASSERT_EQ(r.Read(5, &block), 1u);  // "1 3:1" at offset 12 (the start of b.txt)
  EXPECT_EQ(r.Read(5, &block), 0u);
  EXPECT_EQ(block.labels, (std::vector<float>{0, 1}));
  EXPECT_TRUE(r.Remaining().empty());
  EXPECT_EQ(r.bytes_consumed(), 7u);
  // No ranges: nothing.
  ShardReader none(spec, {a, b}, std::vector<ByteRange>{});
  EXPECT_EQ(none.Read(5, &block), 0u);
  EXPECT_EQ(none.bytes_in_shard(), 0u);
}

// Bad rows at known lines (BOM, CRLF and LF, blank lines); readers built from mid-file
// ranges, several per reader within one file, and readers resumed from Remaining() must all
// report exact line numbers.
TEST(ResumeTest, RangesStartingMidFileReportExactLineNumbers) {
  TempDir dir;
  const std::set<int> bad_lines = {2, 333, 334, 1500, 2999, 3000};
  const std::string path = dir.File("lines.txt");
  std::string text = "\xEF\xBB\xBF";
  std::set<std::string> expected;
  std::vector<std::uint64_t> line_start = {0, 0};  // 1-based: line_start[i]
  for (int i = 1; i <= 3000; ++i) {
    if (i > 1) line_start.push_back(text.size());
    std::string line;
    if (bad_lines.count(i)) {
      line = Num("", i) + " 1:1";
      expected.insert(path + Num(":", i) + Num(": label '", i) +
                      "' is not 0/1 or -1/+1 for logistic loss");
    } else if (i % 97 == 0) {
      line = "";
    } else {
      line = Num("1 ", i) + ":1";
    }
    text += line;
    if (i < 3000) text += (i % 2 == 0 ? "\r\n" : "\n");
  }
  dir.Write("lines.txt", text);
  const std::string second = dir.Write("second.txt", "1 1:1\n\n9 1:1\n");
  const std::vector<std::string> files = {path, second};
  const std::uint64_t total = TotalBytes(files);
  const std::string second_bad = second + ":3: label '9' is not 0/1 or -1/+1 for logistic loss";
  expected.insert(second_bad);
  const FeatureSpec skip = Spec(DataFormat::kLibsvm);
  FeatureSpec fail = skip;
  fail.data.on_error = OnError::kFail;

  // A single range starting mid-line, just before line 1500.
  {
    ShardReader reader(fail, files, {{line_start[1499] + 3, line_start[1501] + 1}});
    RowBlock block;
    try {
      Drain(&reader, &block);
      FAIL() << "no DataError";
    } catch (const DataError& e) {
      EXPECT_EQ(std::string(e.what()), path +
                                           ":1500: label '1500' is not 0/1 or -1/+1 for "
                                           "logistic loss");
    }
  }

  // Cut [0, total) into 40 random pieces; reader r of 3 gets pieces r, r+3, ... (many
  // ranges per file); also split each reader's pieces after a partial read (resume).
  std::mt19937_64 rng(5);
  for (int iter = 0; iter < 20; ++iter) {
    std::vector<std::uint64_t> cuts = {0, total};
    for (int i = 0; i < 39; ++i) cuts.push_back(rng() % total);
    std::sort(cuts.begin(), cuts.end());
    std::vector<std::vector<ByteRange>> readers(3);
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
      readers[i % 3].push_back({cuts[i], cuts[i + 1]});
    }
    std::set<std::string> got;
    std::size_t reported = 0;
    for (const auto& ranges : readers) {
      // Skip mode: all bad rows of these ranges, reading in small batches and resuming
      // from Remaining() halfway.
      ShardReader first(skip, files, ranges);
      RowBlock block;
      for (int b = 0; b < 5 && first.Read(37, &block) > 0; ++b) {
      }
      std::vector<std::string> messages = first.bad_rows().first;
      ShardReader rest(skip, files, first.Remaining());
      Drain(&rest, &block, 37);
      messages.insert(messages.end(), rest.bad_rows().first.begin(), rest.bad_rows().first.end());
      ASSERT_EQ(first.bad_rows().count + rest.bad_rows().count, messages.size());
      reported += messages.size();
      got.insert(messages.begin(), messages.end());
      // Fail mode: the first bad row of these ranges.
      ShardReader failing(fail, files, ranges);
      std::string thrown;
      try {
        Drain(&failing, &block, 64);
      } catch (const DataError& e) {
        thrown = e.what();
      }
      EXPECT_EQ(thrown, messages.empty() ? "" : messages[0]) << Num("iter=", iter);
    }
    EXPECT_EQ(reported, expected.size()) << Num("iter=", iter);
    EXPECT_EQ(got, expected) << Num("iter=", iter);
  }
}

// ---- No allocation per row ----

void ExpectNoAllocationsOnSecondPass(const std::string& name, const FeatureSpec& spec,
                                     const std::vector<std::string>& files) {
  ShardReader reader(spec, files, 0, 1);
  RowBlock block;
  std::vector<ByteRange> remaining;  // as the prefetcher asks after every batch
  std::size_t rows1 = 0;
  while (true) {  // warm-up pass, in batches
    block.Clear();
    const std::size_t n = reader.Read(256, &block);
    reader.Remaining(&remaining);
    if (n == 0) break;
    rows1 += n;
  }
  reader.Rewind();
  reader.Remaining(&remaining);
  std::size_t rows2 = 0;
  g_allocations = 0;
  while (true) {
    block.Clear();
    g_counting = true;
    const std::size_t n = reader.Read(256, &block);
    reader.Remaining(&remaining);
    g_counting = false;
    if (n == 0) break;
    rows2 += n;
  }
  EXPECT_EQ(g_allocations.load(), 0u) << name;
  EXPECT_EQ(rows1, rows2) << name;
  EXPECT_GT(rows2, 0u) << name;
}

TEST(ReaderTest, NoAllocationPerRow) {
  // The counter itself works.
  g_allocations = 0;
  g_counting = true;
  g_sink = new std::vector<int>(100);
  g_counting = false;
  delete g_sink;
  ASSERT_GE(g_allocations.load(), 2u);

  TempDir dir;
  // Synthetic files in every format, each with more than 5 bad rows (reported ones are
  // stored during the warm-up; later ones must be counted without allocating).
  std::string svm, ffm, criteo, csv = "id,y,n,a,b\n";
  for (int i = 0; i < 3000; ++i) {
    const bool bad = i % 400 == 7;
    svm += (bad ? "7" : std::to_string(i % 2)) + " " + std::to_string(i) + ":0.5 " +
           std::to_string(i * 7) + ":1.25e-3 " + std::string(i % 50, ' ') + "9:1\n";
    ffm += (bad ? "1 1:x:1" : "1 1:" + std::to_string(i) + ":0.3651") + " 2:3:1\n";
    criteo.append(bad ? "x" : "0").append(Num("\t", i)).append("\t\t260.0");
    criteo.append("\t\t\t\t\t\t\t\t\t\t").append(Num("\tabc", i)).append("\t68fd1e64\n");
    csv += std::to_string(i) + "," + (bad ? "" : "1") + "," + std::to_string(i * 3) + ".5," +
           "\"q,\"\"" + std::to_string(i) + "\"\"\",v" + std::to_string(i % 13) + "\r\n";
  }
  const std::string longline = "1 " + std::string(3'000'000, ' ') + "5:1\n";
  ExpectNoAllocationsOnSecondPass("libsvm", Spec(DataFormat::kLibsvm, 20),
                                  {dir.Write("a.svm", svm), dir.Write("l.svm", longline)});
  ExpectNoAllocationsOnSecondPass("libffm", Spec(DataFormat::kLibffm), {dir.Write("a.ffm", ffm)});
  ExpectNoAllocationsOnSecondPass("criteo", Spec(DataFormat::kCriteo),
                                  {dir.Write("a.tsv", criteo)});
  for (auto t : {NumericTransform::kStandardize, NumericTransform::kLogBucket}) {
    FeatureSpec spec = CsvSpec3(t);
    spec.numeric_stats = {{"n", 1.0, 2.0}};
    ExpectNoAllocationsOnSecondPass("csv", spec,
                                    {dir.Write("a.csv", csv), dir.Write("b.csv", csv)});
  }
  const std::string base = ::fmps::testing::SharedData("");
  if (!base.empty()) {
    ExpectNoAllocationsOnSecondPass("a9a", Spec(DataFormat::kLibsvm), {base + "a9a/a9a"});
    ExpectNoAllocationsOnSecondPass("guestwalk", CriteoCsvSpec("Label", true),
                                    {base + "guestwalk_criteo_tiny/train.tiny.csv"});
    ExpectNoAllocationsOnSecondPass("movielens", ShardCases().back().spec,
                                    {base + "deepctr_samples/movielens_sample.txt"});
  }
}

}  // namespace
}  // namespace fmps
