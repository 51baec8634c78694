// Serving vectors of a recall model (model.sides): the FM score of a (user, item) row splits
// as
//   y = [w0 + user-only terms] + [item-only terms] + <S_user, S_item>,
// where S_side = sum over the side's non-zeros of v_i x_i, and a side's own terms are its
// linear terms plus the pairwise interactions within the side. Ranking the items of one
// user needs only the last two parts, an inner product of the augmented vectors (k + 1
// floats each):
//   user: [S_user, 1]                           item: [S_item, item-only terms]
// The user's own part (w0 included) is the same for every item, so it is left out of the
// vectors; EmbedSide returns it separately (own) for whoever wants the full score:
//   y = <user vector, item vector> + own(user).
// For an item, own holds its item-only terms (the last element of its vector).
//
// The library form of `fmps embed` (worker/cli), for the Python package (Model.embed) too.
// Thread safety: EmbedSide only reads the model; concurrent calls with distinct scratch and
// outputs are fine. Cost: O(k * non-zeros of the side) per row.
#pragma once

#include <cstdint>
#include <vector>

#include "common/config/sides.h"
#include "common/data/row_block.h"
#include "common/model/model_file.h"

namespace fmps {

struct EmbedScratch {
  RowBlock side;  // the rows' non-zeros of one side
  std::vector<std::uint32_t> local;
  std::vector<float> sums, scores;
};

// The model's sides (meta().features.sides). Throws ModelError naming `what` when the model
// has none (trained without model.sides).
SideMap ModelSides(const Model& model, const std::string& what);

// The augmented vectors of every row of `block` on `side` (kUser or kItem) into
// vectors[block.rows() * (k + 1)] and, when `own` is not null, each row's own part into
// own[block.rows()] (see the file comment). Non-zeros of other fields are ignored, so a full
// interaction row embeds on either side.
void EmbedSide(const Model& model, const SideMap& sides, const RowBlock& block, Side side,
               EmbedScratch* scratch, float* vectors, float* own);

}  // namespace fmps
