// Loss functions on a raw score s. Logistic: labels y in {0, 1}, p = sigmoid(s),
// loss = log(1 + e^s) - y s, computed stably for any finite s. Squared: loss = (s - y)^2 / 2.
// All functions are pure and O(1).
#pragma once

#include <cmath>

#include "common/config/config.h"

namespace fmps {

inline double Sigmoid(double s) {
  if (s >= 0) return 1.0 / (1.0 + std::exp(-s));
  double e = std::exp(s);
  return e / (1.0 + e);
}

// log(1 + e^s) without overflow.
inline double Softplus(double s) { return std::max(s, 0.0) + std::log1p(std::exp(-std::abs(s))); }

inline double LossValue(Loss loss, double score, double label) {
  if (loss == Loss::kLogistic) return Softplus(score) - label * score;
  double d = score - label;
  return 0.5 * d * d;
}

// d loss / d score.
inline double LossGradient(Loss loss, double score, double label) {
  if (loss == Loss::kLogistic) return Sigmoid(score) - label;
  return score - label;
}

// log(1 + e) for e in [0, 1] in single precision: 2 atanh(t), t = e / (2 + e) in [0, 1/3],
// by its odd series to t^13 (truncation below 1.5e-8 relative). At most 1.97 ulp from the
// exact value over every float e in [0, 1] (glibc log1pf: 1.29 ulp) at a third of the cost.
inline float Log1pUnit(float e) {
  const float t = e / (2.0f + e);
  const float t2 = t * t;
  float p = 1.0f / 13;
  p = p * t2 + 1.0f / 11;
  p = p * t2 + 1.0f / 9;
  p = p * t2 + 1.0f / 7;
  p = p * t2 + 1.0f / 5;
  p = p * t2 + 1.0f / 3;
  const float two_t = 2.0f * t;
  return two_t + two_t * t2 * p;
}

// LossValue and LossGradient together for the training kernel's hot path: the logistic
// loss in single precision (one float exponential and Log1pUnit per row), as stable as the
// double versions; the value is returned as a double (a squared loss may exceed float).
struct LossAndGradient {
  double value;
  float gradient;
};
inline LossAndGradient LossValueAndGradient(Loss loss, float score, float label) {
  if (loss == Loss::kLogistic) {
    const float e = std::exp(-std::fabs(score));  // as in Softplus and Sigmoid
    const float sigmoid = score >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
    const float log1p_e = Log1pUnit(e);
    return {std::max(score, 0.0f) + log1p_e - label * score, sigmoid - label};
  }
  const double d = static_cast<double>(score) - label;
  return {0.5 * d * d, static_cast<float>(d)};
}

// What `fmps predict` prints for a score: a probability (logistic) or the score (squared).
inline double Prediction(Loss loss, double score) {
  return loss == Loss::kLogistic ? Sigmoid(score) : score;
}

}  // namespace fmps
