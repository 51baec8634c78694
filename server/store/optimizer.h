// Server-side optimizers: plain math on float arrays, no transport, no locking.
//
// Parameters are updated in groups: a key's `w` is a group of 1 float and its `v` a group
// of k floats (FFM: F*k floats). Each group has its own optimizer state, laid out as
// `state_floats()` arrays of the group's size one after another (state[s * n + i] is state s
// of parameter i), and its own step counter (Adam's bias correction; ignored by the others).
//
// Row-wise state (rowwise() true: AdaGrad with optimizer.rowwise): a group is made of vectors
// of `vec` floats (w: one vector of 1 float; an FM key's v: one vector of k; an FFM key's v:
// F vectors of k, one per field) and the state is kept per vector, not per float:
// state[s * (n / vec) + j] is state s of vector j. A store asks GroupStateFloats(n, vec) for
// the size of a group's state and calls InitVectors/UpdateVectors with the group's vec. For an
// element-wise optimizer vec changes nothing (InitVectors/UpdateVectors are InitState/Update);
// for a row-wise one InitState/Update take the group as one vector (vec = n).
//
// L2 regularisation: `l2` is added as l2 * param to the gradient (SGD, AdaGrad, Adam) or
// used as FTRL's lambda2. Only groups that a push touches are updated (sparse semantics).
//
// Thread safety: const methods are safe to call concurrently; an Optimizer holds no
// mutable state of its own. Cost: O(n) per Update.
#pragma once

#include <cstdint>
#include <memory>

#include "common/config/config.h"

namespace fmps {

// Hyper-parameters of each optimizer. Jobs build them from the config (MakeOptimizer); their
// defaults are not values of their own but those of OptimizerConfig (config.h), the one
// source of defaults, so a default-constructed struct means "as an unset config key".
struct SgdParams {
  static constexpr int kStateFloats = 0;
  float lr = OptimizerConfig{}.lr;
};

struct AdagradParams {
  static constexpr int kStateFloats = 1;  // sum of squared gradients
  float lr = OptimizerConfig{}.lr;
  float eps = OptimizerConfig{}.eps;
  // The sum of squared gradients of a new parameter: its first step is
  // lr * g / (sqrt(initial_accumulator + g^2) + eps), so 0 moves it by lr whatever g.
  float initial_accumulator = OptimizerConfig{}.initial_accumulator;
  // Row-wise: one accumulator h per vector of `vec` floats. Each step adds the mean over the
  // vector of g_i^2 (g_i including l2 * p_i, as element-wise) to h and moves every float by
  // lr * g_i / (sqrt(h) + eps); h starts at initial_accumulator. With vec = 1 this is the
  // element-wise update bit for bit.
  bool rowwise = OptimizerConfig{}.rowwise;
};

struct AdamParams {
  static constexpr int kStateFloats = 2;  // first and second moments (+ a step count per group)
  float lr = OptimizerConfig{}.lr;
  float beta1 = OptimizerConfig{}.beta1;
  float beta2 = OptimizerConfig{}.beta2;
  float eps = OptimizerConfig{}.eps;
};

// FTRL-proximal (McMahan et al. 2013). The parameter value is kept explicitly (derived
// from z and n after each update) so that pulls cost the same as for other optimizers.
struct FtrlParams {
  static constexpr int kStateFloats = 2;  // z, n
  float alpha = OptimizerConfig{}.lr;
  float beta = OptimizerConfig{}.ftrl_beta;
  float l1 = OptimizerConfig{}.l1;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // The config name ("sgd", "adagrad", "adam", "ftrl"); recorded in checkpoint shards.
  virtual const char* name() const = 0;

  // Number of state floats per parameter (row-wise: per vector).
  virtual int state_floats() const = 0;

  // Whether the state is kept per vector of a group rather than per float (see the top).
  virtual bool rowwise() const { return false; }

  // State floats of a group of n parameters made of vectors of vec floats (vec divides n).
  int GroupStateFloats(int n, int vec) const { return state_floats() * (rowwise() ? n / vec : n); }

  // Whether Update reads and advances the group's step counter (Adam). Stores skip keeping
  // step counters for optimizers that return false.
  virtual bool uses_step() const { return false; }

  // Initialises the state of a new group whose parameters are already set (FTRL derives z
  // so that the closed form with this `l2` reproduces the initial parameters; AdaGrad sets
  // its sums to initial_accumulator; others zero the
  // state).
  virtual void InitState(const float* param, float* state, int n, float l2) const = 0;

  // One update of a group of n parameters with gradient `grad`. `step` is the group's step
  // counter (incremented by Adam before use). Non-finite gradients must be filtered by the
  // caller.
  virtual void Update(float* param, float* state, const float* grad, int n, float l2,
                      std::uint32_t* step) const = 0;

  // InitState and Update of a group of n parameters in vectors of vec floats (vec divides
  // n; the state holds GroupStateFloats(n, vec) floats). Element-wise optimizers ignore vec.
  virtual void InitVectors(const float* param, float* state, int n, int /*vec*/, float l2) const {
    InitState(param, state, n, l2);
  }
  virtual void UpdateVectors(float* param, float* state, const float* grad, int n, int /*vec*/,
                             float l2, std::uint32_t* step) const {
    Update(param, state, grad, n, l2, step);
  }
};

std::unique_ptr<Optimizer> MakeSgd(const SgdParams& p);
std::unique_ptr<Optimizer> MakeAdagrad(const AdagradParams& p);  // row-wise if p.rowwise
std::unique_ptr<Optimizer> MakeAdam(const AdamParams& p);
std::unique_ptr<Optimizer> MakeFtrl(const FtrlParams& p);

// The optimizer named in the config, with its hyper-parameters.
std::unique_ptr<Optimizer> MakeOptimizer(const OptimizerConfig& config);

}  // namespace fmps
