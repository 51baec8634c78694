// The number parsing of the readers (common/base/parse_number.h) and LogBucket.

#include "common/base/parse_number.h"

#include <gtest/gtest.h>

#include <charconv>
#include <cmath>
#include <random>
#include <string>

#include "common/data/reader.h"
#include "tests/common/data/reader_test_util.h"

namespace fmps {
namespace {

using namespace ::fmps::reader_testing;  // NOLINT: the shared helpers

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

}  // namespace
}  // namespace fmps
