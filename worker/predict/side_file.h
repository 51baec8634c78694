// The files of embed and recall: rows of one side (users, or an item catalogue) and
// interaction lists (user id, item id), read with a recall model's feature settings. Their
// format follows the model's data.format (csv, libffm or criteo; libsvm has no sides).
//
// csv: a side file has a header naming the side's id column (the first field of
// model.sides.user / .item) and any of the side's feature columns (absent ones add no
// feature; columns of the other side are read and ignored; a column the model does not
// know is an error). An interaction file has a header with both id columns; other columns
// are ignored.
//
// libffm and criteo: a side-file row is a row of the format with its label replaced by the
// row's id: "ID field:feature:value ..." (the id may not contain ':') or "ID<TAB>I1<TAB>...
// <TAB>C26" (empty or missing cells add no feature). The rest of the row is parsed exactly as
// the training reader parses one (same keys, hashing and errors). The id is only a name: a
// model with an id feature needs it among the row's features too. Features of the other
// side's fields are ignored (a full training row, its label replaced by the id, embeds on
// either side); a libffm feature of a field on neither side is an error. An interaction file
// has one "user_id item_id" pair per line, no header, separated as the side files separate
// the id (libffm: spaces or tabs, further tokens ignored; criteo: one tab).
//
// Each side-file row gives one id and its augmented vector (embedding.h). A row whose id
// appeared before is skipped (the first wins), so a training file can serve as a csv side
// file. Errors name "path:line".
//
// Cost: one pass, O(rows * (k + 1)) floats in memory. Not thread-safe (plain functions on
// their own state).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/config/sides.h"
#include "common/model/model_file.h"

namespace fmps {

struct SideVectors {
  int dim = 0;                   // k + 1
  std::vector<std::string> ids;  // per row, in file order
  std::vector<float> vectors;    // ids.size() * dim
  std::vector<float> own;        // per row: its own terms (embedding.h)
};

// Embeds every row of `path` on `side`. Throws ConfigError (header), DataError (a bad row,
// "path:line: reason"), IoError.
SideVectors EmbedSideFile(const Model& model, Side side, const std::string& path);

// The (user id, item id) pairs of an interaction file. Throws as above.
std::vector<std::pair<std::string, std::string>> ReadInteractions(const Model& model,
                                                                  const std::string& path);

// Reorders `v` so its ids ascend: numerically when every id is a decimal integer, else
// bytewise (the order recall breaks ties in).
void SortById(SideVectors* v);

}  // namespace fmps
