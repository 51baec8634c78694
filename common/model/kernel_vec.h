// The vector types the kernels' fixed-k code uses (private to common/model): GCC vector
// extensions (also understood by clang), AVX registers with -mavx, SSE registers without.
#pragma once

#include <cstring>
#include <type_traits>

namespace fmps::kernel_vec {

typedef float Float4 __attribute__((vector_size(4 * sizeof(float))));
typedef float Float8 __attribute__((vector_size(8 * sizeof(float))));
#ifdef __AVX__
constexpr int kMaxLanes = 8;
#else
constexpr int kMaxLanes = 4;  // SSE registers only (a 32-byte vector would change the ABI)
#endif

// K floats as kCount vectors of kLanes floats (K = 4, 8, 16, 32, ...).
template <int K>
struct Lanes {
  static constexpr int kLanes = K < kMaxLanes ? K : kMaxLanes;
  static constexpr int kCount = K / kLanes;
  using V = std::conditional_t<kLanes == 8, Float8, Float4>;
  static_assert(K % kLanes == 0);

  [[gnu::always_inline]] static V Load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  [[gnu::always_inline]] static void Store(float* p, V v) { std::memcpy(p, &v, sizeof(v)); }
};

}  // namespace fmps::kernel_vec
