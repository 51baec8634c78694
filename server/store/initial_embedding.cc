#include "server/store/initial_embedding.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <numbers>

#include "common/base/hash.h"

namespace fmps {
namespace {

// Salts keeping the embedding streams independent of the store's table hash and of
// ServerOfKey.
constexpr std::uint64_t kSeedSalt = 0x2545f4914f6cdd1dULL;
constexpr std::uint64_t kStreamStep = 0x9e3779b97f4a7c15ULL;

// cos and sin of 2 pi i / 2^kCircleBits: InitialEmbedding's angles are a table entry plus a
// residual below 2 pi / 2^kCircleBits, whose cos and sin short Taylor series give to ~1e-16
// (the floats written are those of std::cos/std::sin, at less than half their cost).
constexpr int kCircleBits = 10;
struct UnitCircle {
  std::array<double, 1 << kCircleBits> cos, sin;
};

const UnitCircle& Circle() {
  static const UnitCircle circle = [] {
    UnitCircle t;
    for (int i = 0; i < (1 << kCircleBits); ++i) {
      const double a = 2.0 * std::numbers::pi * i / (1 << kCircleBits);
      t.cos[i] = std::cos(a);
      t.sin[i] = std::sin(a);
    }
    return t;
  }();
  return circle;
}

// ln(u) for u in (0, 1] to ~1e-15 relative, branch-free (so that a block of them
// vectorises): u = 2^e m with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s) with
// s = (m - 1) / (m + 1), |s| <= 0.1716, as an odd series through s^17 (next term < 1e-15).
// m - 1 is exact, so u near 1 keeps full relative accuracy.
inline double LogUnit(double u) {
  constexpr std::uint64_t kMantissa = (std::uint64_t{1} << 52) - 1;
  constexpr std::uint64_t kOne = std::uint64_t{1023} << 52;
  const auto bits = std::bit_cast<std::uint64_t>(u);
  double e = static_cast<double>(static_cast<std::int64_t>(bits >> 52) - 1023);
  double m = std::bit_cast<double>((bits & kMantissa) | kOne);
  const bool big = m > std::numbers::sqrt2;
  m = big ? 0.5 * m : m;
  e = big ? e + 1.0 : e;
  const double s = (m - 1.0) / (m + 1.0);
  const double s2 = s * s;
  double p = 1.0 / 17;
  for (const double c : {1.0 / 15, 1.0 / 13, 1.0 / 11, 1.0 / 9, 1.0 / 7, 1.0 / 5, 1.0 / 3, 1.0}) {
    p = p * s2 + c;
  }
  constexpr double kLn2Hi = 0x1.62e42fefa3800p-1;  // ln 2 = hi + lo; e * hi is exact
  constexpr double kLn2Lo = 0x1.ef35793c76730p-45;
  return e * kLn2Hi + (e * kLn2Lo + 2.0 * s * p);
}

// Pairs first_pair .. first_pair + kPairs - 1 of the row (see InitialEmbedding), written to
// out[2 * first_pair ...] up to n floats in all: kPairs pairs at a time in straight-line,
// vectorisable code (a new key's embedding is on the server thread's path; with 8 pairs GCC
// uses whole 256-bit vectors, with 4 half of them).
template <int kPairs>
void PairBlock(std::uint64_t base, int first_pair, int n, double std_dev, float* out) {
  const UnitCircle& circle = Circle();
  constexpr int kResidualBits = 32 - kCircleBits;
  double x[kPairs], y[kPairs];
  for (int p = 0; p < kPairs; ++p) {
    const std::uint64_t h =
        Mix64(base + static_cast<std::uint64_t>(first_pair + p + 1) * kStreamStep);
    const double u1 = (static_cast<double>(h >> 32) + 1.0) * 0x1p-32;  // (0, 1]
    const double r = std::sqrt(-2.0 * LogUnit(u1)) * std_dev;
    const auto low = static_cast<std::uint32_t>(h);
    const std::uint32_t i = low >> kResidualBits;
    const double d =
        static_cast<double>(low & ((1u << kResidualBits) - 1)) * (2.0 * std::numbers::pi * 0x1p-32);
    const double d2 = d * d;
    const double cos_d = 1.0 - d2 * (0.5 - d2 * (1.0 / 24));
    const double sin_d = d * (1.0 - d2 * (1.0 / 6 - d2 * (1.0 / 120)));
    x[p] = r * (circle.cos[i] * cos_d - circle.sin[i] * sin_d);
    y[p] = r * (circle.sin[i] * cos_d + circle.cos[i] * sin_d);
  }
  const int f0 = 2 * first_pair;
  const int m = std::min(2 * kPairs, n - f0);
  for (int j = 0; j < m; ++j) {
    out[f0 + j] = static_cast<float>(j % 2 == 0 ? x[j / 2] : y[j / 2]);
  }
}

}  // namespace

void InitialEmbedding(std::uint64_t seed, Key key, int k, float std, float* out) {
  // Counter-based: pair f/2 of the row uses Mix64(base + (f/2 + 1) * step), Box-Muller on its
  // two 32-bit halves (radius from the high half, angle 2 pi * low / 2^32). Depends on
  // nothing but (seed, key, f); each pair's floats are the same whichever block computes it.
  const std::uint64_t base = Mix64(key ^ Mix64(seed + kSeedSalt));
  const auto std_dev = static_cast<double>(std);
  int f0 = 0;
  for (; f0 + 16 <= k; f0 += 16) PairBlock<8>(base, f0 / 2, k, std_dev, out);
  for (; f0 < k; f0 += 8) PairBlock<4>(base, f0 / 2, k, std_dev, out);
}

}  // namespace fmps
