// Serving vectors of a recall model: see embedding.h.

#include "common/model/embedding.h"

#include "common/base/error.h"

namespace fmps {

SideMap ModelSides(const Model& model, const std::string& what) {
  const FeatureSpec& f = model.meta().features;
  if (f.sides.user.empty() || f.sides.item.empty()) {
    throw ModelError(what +
                     ": the model has no model.sides (train it with model.sides: {user: "
                     "[...], item: [...]})");
  }
  return SideMap(f.data, f.sides);
}

void EmbedSide(const Model& model, const SideMap& sides, const RowBlock& block, Side side,
               EmbedScratch* scratch, float* vectors, float* own) {
  RowBlock& part = scratch->side;
  part.Clear();
  for (std::size_t r = 0; r < block.rows(); ++r) {
    for (std::size_t i = block.offsets[r]; i < block.offsets[r + 1]; ++i) {
      if (sides.Of(block.fields[i]) == side) {
        part.AddFeature(block.keys[i], block.values[i], block.fields[i]);
      }
    }
    part.FinishRow(0.0f);
  }
  const std::size_t k = static_cast<std::size_t>(model.shape().v_width());
  scratch->sums.resize(part.rows() * k);
  scratch->scores.resize(part.rows());
  model.EmbeddingSums(part, &scratch->local, scratch->sums.data());
  model.Score(part, &scratch->local, scratch->scores.data());
  const float bias = model.meta().bias;
  for (std::size_t r = 0; r < part.rows(); ++r) {
    float* out = vectors + r * (k + 1);
    for (std::size_t f = 0; f < k; ++f) out[f] = scratch->sums[r * k + f];
    // Score of the side alone = w0 + the side's own terms.
    const float terms = side == Side::kUser ? scratch->scores[r] : scratch->scores[r] - bias;
    out[k] = side == Side::kUser ? 1.0f : terms;
    if (own != nullptr) own[r] = terms;
  }
}

}  // namespace fmps
