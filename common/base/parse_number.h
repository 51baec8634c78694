// Fast, locale-free number parsing for the data readers (private to common/data/reader.cc and its
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

namespace detail {

// Whether the digits [first, last) (20 or more of them) fit in 64 bits.
[[gnu::noinline]] inline bool DigitsFitU64(const char* first, const char* last) {
  while (first != last && *first == '0') ++first;
  const std::ptrdiff_t digits = last - first;
  if (digits < 20) return true;
  if (digits > 20) return false;
  return std::string_view(first, 20) <= std::string_view("18446744073709551615");
}

}  // namespace detail

// Parses the decimal digits starting at *p (no sign) into *out, advancing *p past them.
// Returns kOk, kBad (no digit at *p) or kOutOfRange (>= 2^64; *p still moves past the digits).
[[gnu::always_inline]] inline NumStatus ScanU64(const char** p, const char* end,
                                                std::uint64_t* out) {
  const char* const start = *p;
  const char* s = start;
  std::uint64_t v = 0;
  while (s != end && IsDigit(*s)) {
    v = v * 10 + static_cast<std::uint64_t>(*s - '0');  // wraps harmlessly; checked below
    ++s;
  }
  *p = s;
  *out = v;
  // 1..19 digits cannot overflow (no digit wraps around to a huge unsigned count).
  if (static_cast<std::size_t>(s - start) - 1 < 19) [[likely]] {
    return NumStatus::kOk;
  }
  if (s == start) return NumStatus::kBad;
  return detail::DigitsFitU64(start, s) ? NumStatus::kOk : NumStatus::kOutOfRange;
}

namespace detail {

inline std::uint64_t Load8(const char* s) {
  std::uint64_t v;
  std::memcpy(&v, s, 8);
  return v;
}

// Number of leading ASCII digits (0..8) in the 8 bytes of `chunk` (little-endian load).
inline int LeadingDigits8(std::uint64_t chunk) {
  const std::uint64_t t = chunk ^ 0x3030303030303030ULL;  // digits become 0..9
  const std::uint64_t non_digit =
      (((t & 0x7F7F7F7F7F7F7F7FULL) + 0x7676767676767676ULL) | t) & 0x8080808080808080ULL;
  return non_digit == 0 ? 8 : std::countr_zero(non_digit) >> 3;
}

// Value of the first n (1..8) digits of `chunk`.
inline std::uint64_t DigitsValue8(std::uint64_t chunk, int n) {
  std::uint64_t v = (chunk ^ 0x3030303030303030ULL) << (64 - 8 * n);
  v = v * 10 + (v >> 8);
  v = (((v & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32))) +
       (((v >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >>
      32;
  return v;
}

inline constexpr std::uint64_t kPow10U64[] = {1,      10,      100,      1000,     10000,
                                              100000, 1000000, 10000000, 100000000};

}  // namespace detail

// As ScanU64, eight digits at a time. Requires the 8 bytes from any position up to `end`
// (that is, up to end + 7) to be readable; bytes at and after `end` do not affect the result.
[[gnu::always_inline]] inline NumStatus ScanU64Padded(const char** p, const char* end,
                                                      std::uint64_t* out) {
  const char* const start = *p;
  // Fast path: 1 to 7 digits, all inside [start, end) (ids and counts are mostly this).
  {
    const std::uint64_t chunk = detail::Load8(start);
    const int n = detail::LeadingDigits8(chunk);
    if (static_cast<unsigned>(n - 1) < 7u && n <= end - start) [[likely]] {
      *p = start + n;
      *out = detail::DigitsValue8(chunk, n);
      return NumStatus::kOk;
    }
  }
  const char* s = start;
  std::uint64_t v = 0;
  for (;;) {
    const std::uint64_t chunk = detail::Load8(s);
    int n = detail::LeadingDigits8(chunk);
    if (n > end - s) n = static_cast<int>(end - s);
    if (n == 0) break;
    v = v * detail::kPow10U64[n] + detail::DigitsValue8(chunk, n);  // wraps; checked below
    s += n;
    if (n < 8) break;
  }
  *p = s;
  *out = v;
  // 1..19 digits cannot overflow (no digit wraps around to a huge unsigned count).
  if (static_cast<std::size_t>(s - start) - 1 < 19) [[likely]] {
    return NumStatus::kOk;
  }
  if (s == start) return NumStatus::kBad;
  return detail::DigitsFitU64(start, s) ? NumStatus::kOk : NumStatus::kOutOfRange;
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

// Fastest path for the common feature values ("1", "0.3651", "-2.5"): [-]digits[.digits] with
// at most 7 digits in all and no exponent. Such a value is m / 10^k with m < 2^24 and
// k <= 7, both exact in float, so one float division gives the correctly rounded result.
// Returns the end of the number, or nullptr when the text is anything else.
inline const char* FastSimpleFloat(const char* p, const char* end, float* out) {
  static constexpr float kPow10f[] = {1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f, 1e6f, 1e7f};
  bool negative = false;
  if (p != end && *p == '-') {
    negative = true;
    ++p;
  }
  const char* const digits_start = p;
  std::uint32_t m = 0;
  while (p != end && IsDigit(*p)) {
    m = m * 10 + static_cast<std::uint32_t>(*p - '0');
    ++p;
  }
  std::ptrdiff_t digits = p - digits_start;
  int frac = 0;
  if (p != end && *p == '.') {
    ++p;
    const char* const frac_start = p;
    while (p != end && IsDigit(*p) && digits + (p - frac_start) < 8) {
      m = m * 10 + static_cast<std::uint32_t>(*p - '0');
      ++p;
    }
    frac = static_cast<int>(p - frac_start);
    digits += frac;
  }
  if (digits == 0 || digits > 7 || (p != end && (IsDigit(*p) || *p == 'e' || *p == 'E'))) {
    return nullptr;
  }
  const float v = static_cast<float>(m) / kPow10f[frac];
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
  if (FastSimpleFloat(b, e, out) == e) return NumStatus::kOk;
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
