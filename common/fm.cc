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

  // Score of row r; leaves sum_i v_i x_i in *sum.
  static float Score(const FmBatch& b, std::size_t r, const float* params, int k, Vec* sum) {
    const int width = 1 + k;
    sum->setZero(k);
    float linear = params[0];
    float squares = 0.0f;
    for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j) {
      const float* p = params + static_cast<std::size_t>(b.local[j]) * width;
      const float x = b.values[j];
      linear += p[0] * x;
      CMap v(p + 1, k);
      *sum += v * x;
      squares += (v * x).square().sum();
    }
    return linear + 0.5f * (sum->square().sum() - squares);
  }

  static void Scores(const FmBatch& b, const float* params, int k, float* scores) {
    Vec sum(k);
    for (std::size_t r = 0; r < b.rows; ++r) scores[r] = Score(b, r, params, k, &sum);
  }

  static double ForwardBackward(const FmBatch& b, const float* params, int k, Loss loss,
                                float* grads, float* scores) {
    const int width = 1 + k;
    Vec sum(k);
    double total = 0.0;
    for (std::size_t r = 0; r < b.rows; ++r) {
      const float s = Score(b, r, params, k, &sum);
      if (scores != nullptr) scores[r] = s;
      total += LossValue(loss, s, b.labels[r]);
      const float g = static_cast<float>(LossGradient(loss, s, b.labels[r]));
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
