#include "worker/gradient_scale.h"

#include <array>
#include <cmath>
#include <stdexcept>

namespace fmps {
namespace {

// 1 / c for the counts most keys have (kReciprocals[0] = [1] = 1: those rows are multiplied
// by 1, which leaves every float as it is). Computed at compile time with the same IEEE
// division the run-time fallback does, so both give the same bits.
constexpr std::uint32_t kReciprocalTable = 1024;
constexpr std::array<float, kReciprocalTable> kReciprocals = [] {
  std::array<float, kReciprocalTable> r{};
  r[0] = 1.0f;
  for (std::uint32_t c = 1; c < kReciprocalTable; ++c) r[c] = 1.0f / static_cast<float>(c);
  return r;
}();

// 1 / sqrt(c) for the same counts (key_sqrt); [0] = [1] = 1.
const std::array<float, kReciprocalTable> kReciprocalSqrts = [] {
  std::array<float, kReciprocalTable> r{};
  r[0] = 1.0f;
  for (std::uint32_t c = 1; c < kReciprocalTable; ++c)
    r[c] = 1.0f / std::sqrt(static_cast<float>(c));
  return r;
}();

// What DivideByCounts and DivideBySqrtCounts multiply a key's row by.
struct Reciprocal {
  float operator()(std::uint32_t c) const {
    return c < kReciprocalTable ? kReciprocals[c] : 1.0f / static_cast<float>(c);
  }
};
struct ReciprocalSqrt {
  float operator()(std::uint32_t c) const {
    return c < kReciprocalTable ? kReciprocalSqrts[c] : 1.0f / std::sqrt(static_cast<float>(c));
  }
};

// Multiplies key u's row by inv(counts[u]), for a row width known at compile time (kWidth >
// 0) or not (0): with a constant width the row is a fixed sequence of vector multiplies.
template <int kWidth, class Inv>
void ScaleRowsOf(std::span<const std::uint32_t> counts, int width, float* __restrict grads) {
  const std::size_t w =
      kWidth > 0 ? static_cast<std::size_t>(kWidth) : static_cast<std::size_t>(width);
  const Inv inv_of;
  for (const std::uint32_t c : counts) {
    const float inv = inv_of(c);
    for (std::size_t j = 0; j < w; ++j) grads[j] *= inv;
    grads += w;
  }
}

// Every row is scaled, by 1 where the count is 0 or 1: a branch on the count mispredicted
// about half the time and, with a division per counted key, cost more than the multiplies.
// The FM's row widths 1 + k for the common k get a loop of constant width.
template <class Inv>
void ScaleRows(std::span<const std::uint32_t> counts, int width, float* grads) {
  switch (width) {
    case 5:
      return ScaleRowsOf<5, Inv>(counts, width, grads);
    case 9:
      return ScaleRowsOf<9, Inv>(counts, width, grads);
    case 17:
      return ScaleRowsOf<17, Inv>(counts, width, grads);
    case 33:
      return ScaleRowsOf<33, Inv>(counts, width, grads);
    default:
      return ScaleRowsOf<0, Inv>(counts, width, grads);
  }
}

// out[u] = Inv()(counts[u]).
template <class Inv>
void FactorsOf(std::span<const std::uint32_t> counts, float* out) {
  const Inv inv;
  for (const std::uint32_t c : counts) *out++ = inv(c);
}

}  // namespace

void DivideByCounts(std::span<const std::uint32_t> counts, int width, float* grads) {
  ScaleRows<Reciprocal>(counts, width, grads);
}

void DivideBySqrtCounts(std::span<const std::uint32_t> counts, int width, float* grads) {
  ScaleRows<ReciprocalSqrt>(counts, width, grads);
}

void ScaleFactors(GradientScale gradient, std::span<const std::uint32_t> counts,
                  std::vector<float>* factors) {
  factors->resize(counts.size());
  if (gradient == GradientScale::kKeyMean) {
    FactorsOf<Reciprocal>(counts, factors->data());
  } else if (gradient == GradientScale::kKeySqrt) {
    FactorsOf<ReciprocalSqrt>(counts, factors->data());
  } else {
    throw std::invalid_argument("ScaleFactors: not a per-key gradient scaling");
  }
}

}  // namespace fmps
