// NegativeSampler: sampled negatives for training a recall model on positive interactions
// (data.negatives). Every row a reader yields (a positive) is followed in its block by
// data.negatives.per_positive label-0 rows, each the row's user-side non-zeros joined with
// the item-side non-zeros of one catalogue item, never the row's own item (same value in the
// item id field, the first of model.sides.item).
//
// Determinism: the j-th negative of a row is drawn from a hash of (seed, pass, the row's
// keys and values, j) only, so it does not depend on the number of workers, the sharding,
// the batch size or the thread that reads the row (single-node and mpirun alike). `pass` is
// the reader's number of Rewind() calls (the epoch, as the training job rewinds once per
// epoch); a reader made to resume mid-epoch starts its count again, so the rest of that epoch
// draws as a first pass would. Identical rows draw identical negatives.
//
// Distributions: uniform over the catalogue's items, or popularity: P(item) proportional to
// (its rows in data.train)^exponent (items never seen get weight 0 unless exponent is 0).
//
// Cost: construction reads the catalogue once (and, for popularity, every file of data.train
// once); memory O(catalogue non-zeros). Append costs O(per_positive * row non-zeros) per row
// (uniform O(1) per draw, popularity O(log items)). Immutable after construction:
// Append may run concurrently on distinct blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/base/types.h"
#include "common/config/sides.h"
#include "common/data/reader.h"
#include "common/data/row_block.h"

namespace fmps {

class NegativeSampler {
 public:
  // Reads spec.data.negatives.items (and data.train for popularity). Throws ConfigError
  // naming data.negatives.items for an empty catalogue or an item without an id, IoError
  // when a file cannot be read.
  explicit NegativeSampler(const FeatureSpec& spec);

  // Appends per_positive negatives of every row r >= first_row of *block (rows added after
  // them), in row order.
  void Append(RowBlock* block, std::size_t first_row, std::uint64_t pass) const;

  // The catalogue index of the j-th negative of a row hashing to `row_hash` whose item id is
  // `positive` (0 = none), or SIZE_MAX when every item is the positive. Exposed for tests.
  std::size_t Draw(std::uint64_t row_hash, int j, Key positive) const;

  std::size_t items() const { return item_ids_.size(); }
  Key item_id(std::size_t i) const { return item_ids_[i]; }
  // The item's probability under the configured distribution (tests).
  double Probability(std::size_t i) const;

 private:
  void LoadCatalogue(const FeatureSpec& spec);
  void CountPopularity(const FeatureSpec& spec);
  std::size_t DrawOnce(std::uint64_t h) const;

  SideMap sides_;
  int per_positive_;
  std::uint64_t seed_;
  RowBlock catalogue_;              // one row per item: its item-side non-zeros
  std::vector<Key> item_ids_;       // per item: the key of its id field
  std::vector<double> cumulative_;  // popularity: prefix sums of weights; empty: uniform
};

// The hash a row's negatives are drawn from (see the file comment).
std::uint64_t NegativeRowHash(const RowBlock& block, std::size_t row, std::uint64_t seed,
                              std::uint64_t pass);

}  // namespace fmps
