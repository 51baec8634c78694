// Fast, locale-free number parsing for the data readers (private to common/reader.cc and its
// tests). Integers: a digit loop with overflow detection. Reals: a Clinger fast path (at most
// 19 significant digits, |decimal exponent| <= 22, exact in double), with std::from_chars as
// the fallback for everything else, so results are always correctly rounded.
#pragma once

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>
#include <system_error>

namespace fmps::internal {

enum class NumStatus { kOk, kBad, kNonFinite, kOutOfRange };

inline bool IsDigit(char c) { return static_cast<unsigned char>(c - '0') < 10; }

// Parses the decimal digits starting at *p (no sign) into *out, advancing *p past them.
// Returns kOk, kBad (no digit at *p) or kOutOfRange (>= 2^64; *p still moves past the digits).
inline NumStatus ScanU64(const char** p, const char* end, std::uint64_t* out) {
  const char* s = *p;
  if (s == end || !IsDigit(*s)) return NumStatus::kBad;
  std::uint64_t v = 0;
  bool overflow = false;
  do {
    const auto d = static_cast<std::uint64_t>(*s - '0');
    overflow |= __builtin_mul_overflow(v, 10u, &v);
    overflow |= __builtin_add_overflow(v, d, &v);
    ++s;
  } while (s != end && IsDigit(*s));
  *p = s;
  *out = v;
  return overflow ? NumStatus::kOutOfRange : NumStatus::kOk;
}

// Parses exactly [b, e) as an unsigned integer. A leading '-' followed by digits is
// kOutOfRange (negative ids are out of range, not malformed).
inline NumStatus ParseU64(const char* b, const char* e, std::uint64_t* out) {
  const char* p = b;
  bool negative = false;
  if (p != e && *p == '-') {
    negative = true;
    ++p;
  }
  NumStatus st = ScanU64(&p, e, out);
  if (st == NumStatus::kBad || p != e) return NumStatus::kBad;
  if (negative && *out != 0) return NumStatus::kOutOfRange;
  return st;
}

namespace detail {

inline constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// Slow path: std::from_chars on exactly [b, e) (a leading '+' is allowed).
template <typename T>
NumStatus SlowParse(const char* b, const char* e, T* out) {
  const char* p = b;
  if (p != e && *p == '+') {
    ++p;
    if (p != e && (*p == '-' || *p == '+')) return NumStatus::kBad;
  }
  if (p == e) return NumStatus::kBad;
  T v{};
  auto [ptr, ec] = std::from_chars(p, e, v, std::chars_format::general);
  if (ptr != e) return NumStatus::kBad;
  if (ec == std::errc::result_out_of_range) {
    // Overflow or underflow: underflow (a negative exponent or a tiny fraction) is zero.
    bool tiny = false;
    for (const char* q = p; q != e; ++q) {
      if ((*q == 'e' || *q == 'E') && q + 1 != e && q[1] == '-') tiny = true;
    }
    if (!tiny) {
      double d = 0;
      auto r = std::from_chars(p, e, d, std::chars_format::general);
      tiny = r.ec == std::errc() && std::fabs(d) < 1.0;
    }
    if (!tiny) return NumStatus::kNonFinite;
    *out = (*p == '-') ? -T{0} : T{0};
    return NumStatus::kOk;
  }
  if (ec != std::errc()) return NumStatus::kBad;
  if (!std::isfinite(v)) return NumStatus::kNonFinite;
  *out = v;
  return NumStatus::kOk;
}

}  // namespace detail

// Fast path: scans a decimal number ([+-]digits[.digits][(e|E)[+-]digits]) starting at p and
// returns the pointer just past it, with the correctly rounded double in *out. Returns nullptr
// when the text is not such a number or cannot be computed exactly here (too many digits, big
// exponent): the caller then finds the token's end and uses the slow path.
inline const char* FastDouble(const char* p, const char* end, double* out) {
  bool negative = false;
  if (p != end && (*p == '-' || *p == '+')) {
    negative = *p == '-';
    ++p;
  }
  std::uint64_t m = 0;
  int significant = 0;
  int exp10 = 0;
  bool any_digit = false;
  while (p != end && IsDigit(*p)) {
    const int d = *p - '0';
    if (m != 0 || d != 0) {
      if (++significant > 19) return nullptr;
    }
    m = m * 10 + static_cast<std::uint64_t>(d);
    any_digit = true;
    ++p;
  }
  if (p != end && *p == '.') {
    ++p;
    while (p != end && IsDigit(*p)) {
      const int d = *p - '0';
      if (m != 0 || d != 0) {
        if (++significant > 19) return nullptr;
      }
      m = m * 10 + static_cast<std::uint64_t>(d);
      --exp10;
      any_digit = true;
      ++p;
    }
  }
  if (!any_digit) return nullptr;
  if (p != end && (*p == 'e' || *p == 'E')) {
    ++p;
    bool exp_negative = false;
    if (p != end && (*p == '-' || *p == '+')) {
      exp_negative = *p == '-';
      ++p;
    }
    if (p == end || !IsDigit(*p)) return nullptr;
    int e = 0;
    while (p != end && IsDigit(*p)) {
      if (e < 100000) e = e * 10 + (*p - '0');
      ++p;
    }
    exp10 += exp_negative ? -e : e;
  }
  if (m == 0) {
    *out = negative ? -0.0 : 0.0;
    return p;
  }
  if (m > (std::uint64_t{1} << 53) || exp10 < -22 || exp10 > 22) return nullptr;
  double v = static_cast<double>(m);
  v = exp10 >= 0 ? v * detail::kPow10[exp10] : v / detail::kPow10[-exp10];
  *out = negative ? -v : v;
  return p;
}

// Converts a correctly rounded double to the correctly rounded float of the same decimal,
// or returns false when double rounding could differ (the double is exactly a float
// midpoint, or tiny) and the caller must use the slow path.
inline bool DoubleToFloatExact(double d, float* out) {
  const double a = std::fabs(d);
  if (a != 0.0 && a < static_cast<double>(std::numeric_limits<float>::min())) return false;
  if ((std::bit_cast<std::uint64_t>(d) & 0x1FFFFFFFu) == 0x10000000u) return false;
  *out = static_cast<float>(d);
  return true;
}

// Parses exactly [b, e) as a finite double.
inline NumStatus ParseDouble(const char* b, const char* e, double* out) {
  double v = 0.0;
  const char* p = FastDouble(b, e, &v);
  if (p == e) {
    *out = v;
    return NumStatus::kOk;
  }
  return detail::SlowParse(b, e, out);
}

// Parses exactly [b, e) as a finite float (values beyond float's range are kNonFinite).
inline NumStatus ParseFloat(const char* b, const char* e, float* out) {
  double v = 0.0;
  const char* p = FastDouble(b, e, &v);
  if (p == e && std::fabs(v) <= static_cast<double>(std::numeric_limits<float>::max()) &&
      DoubleToFloatExact(v, out)) {
    return NumStatus::kOk;
  }
  return detail::SlowParse(b, e, out);
}

inline NumStatus ParseFloat(std::string_view s, float* out) {
  return ParseFloat(s.data(), s.data() + s.size(), out);
}
inline NumStatus ParseDouble(std::string_view s, double* out) {
  return ParseDouble(s.data(), s.data() + s.size(), out);
}

}  // namespace fmps::internal
