#include "common/fm.h"

#include <Eigen/Core>

#include "common/loss.h"

namespace fmps {
namespace {

// K is the embedding size when known at compile time (vectorised fixed-size arrays), or
// Eigen::Dynamic for any other k.
template <int K>
struct Kernel {
  using Vec = Eigen::Array<float, K, 1>;
  using CMap = Eigen::Map<const Vec, Eigen::Unaligned>;
  using Map = Eigen::Map<Vec, Eigen::Unaligned>;

  // Score of row r; leaves sum_i v_i x_i in *sum (squares: scratch). The squares are
  // summed per factor and reduced once per row, not once per non-zero.
  static float Score(const FmBatch& b, std::size_t r, const float* params, int k, Vec* sum,
                     Vec* squares) {
    const int width = 1 + k;
    sum->setZero(k);
    squares->setZero(k);
    float linear = params[0];
    for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j) {
      const float* p = params + static_cast<std::size_t>(b.local[j]) * width;
      const float x = b.values[j];
      linear += p[0] * x;
      const Vec vx = CMap(p + 1, k) * x;
      *sum += vx;
      *squares += vx.square();
    }
    return linear + 0.5f * (sum->square() - *squares).sum();
  }

  // Scores prefetch the parameter rows of the row kAhead rows ahead: with a large model
  // (prediction) they are cache misses that would otherwise serialise row by row.
  static void Scores(const FmBatch& b, const float* params, int k, float* scores) {
    constexpr std::size_t kAhead = 2;
    const std::size_t width = 1 + static_cast<std::size_t>(k);
    Vec sum(k), squares(k);
    for (std::size_t r = 0; r < b.rows; ++r) {
      if (r + kAhead < b.rows) {
        for (std::size_t j = b.offsets[r + kAhead]; j < b.offsets[r + kAhead + 1]; ++j) {
          const float* p = params + static_cast<std::size_t>(b.local[j]) * width;
          __builtin_prefetch(p);
          __builtin_prefetch(p + width - 1);
        }
      }
      scores[r] = Score(b, r, params, k, &sum, &squares);
    }
  }

  static double ForwardBackward(const FmBatch& b, const float* params, int k, Loss loss,
                                float* grads, float* scores) {
    const int width = 1 + k;
    Vec sum(k), squares(k);
    double total = 0.0;
    for (std::size_t r = 0; r < b.rows; ++r) {
      const float s = Score(b, r, params, k, &sum, &squares);
      if (scores != nullptr) scores[r] = s;
      const LossAndGradient l = LossValueAndGradient(loss, s, b.labels[r]);
      total += l.value;
      const float g = l.gradient;
      grads[0] += g;
      for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j) {
        const std::size_t u = static_cast<std::size_t>(b.local[j]) * width;
        const float x = b.values[j];
        const float gx = g * x;
        grads[u] += gx;
        CMap v(params + u + 1, k);
        Map gv(grads + u + 1, k);
        gv += gx * (sum - v * x);
      }
    }
    return total;
  }
};

}  // namespace

void FmScores(const FmBatch& batch, const float* params, int k, float* scores) {
  switch (k) {
    case 4:
      return Kernel<4>::Scores(batch, params, k, scores);
    case 8:
      return Kernel<8>::Scores(batch, params, k, scores);
    case 16:
      return Kernel<16>::Scores(batch, params, k, scores);
    case 32:
      return Kernel<32>::Scores(batch, params, k, scores);
    default:
      return Kernel<Eigen::Dynamic>::Scores(batch, params, k, scores);
  }
}

double FmForwardBackward(const FmBatch& batch, const float* params, int k, Loss loss, float* grads,
                         float* scores) {
  switch (k) {
    case 4:
      return Kernel<4>::ForwardBackward(batch, params, k, loss, grads, scores);
    case 8:
      return Kernel<8>::ForwardBackward(batch, params, k, loss, grads, scores);
    case 16:
      return Kernel<16>::ForwardBackward(batch, params, k, loss, grads, scores);
    case 32:
      return Kernel<32>::ForwardBackward(batch, params, k, loss, grads, scores);
    default:
      return Kernel<Eigen::Dynamic>::ForwardBackward(batch, params, k, loss, grads, scores);
  }
}

}  // namespace fmps
