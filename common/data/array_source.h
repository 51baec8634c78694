// ArrayRowSource: rows of a CSR matrix in memory (the Python package's NumPy/SciPy arrays),
// served through RowSource like a file shard. The arrays are borrowed, never copied: Read
// converts one minibatch at a time into the caller's RowBlock (column j becomes feature key
// j, with field fields[j]), as a reader parses one batch of lines.
//
// A source serves the rows [begin, end) of the matrix; its "bytes" (RowSource positions)
// are row numbers, so W sources over ArrayShard(rows, w, W) together serve every row once,
// as W file shards do.
//
// Lifetime: the arrays must outlive the source and stay unchanged while it is read.
// Thread safety: as RowSource (one thread at a time); several sources may share arrays.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/config/config.h"
#include "common/data/row_source.h"

namespace fmps {

// A CSR matrix as borrowed arrays: row r's non-zeros are indices[indptr[r] .. indptr[r+1])
// with values data[...]; indptr and indices share one integer type.
struct CsrArrays {
  enum class Index : std::uint8_t { kInt32, kInt64 };
  enum class Value : std::uint8_t { kFloat32, kFloat64 };
  const void* indptr = nullptr;  // rows + 1 entries
  const void* indices = nullptr;
  const void* data = nullptr;
  Index index = Index::kInt32;
  Value value = Value::kFloat32;
  std::size_t rows = 0;
  std::size_t cols = 0;
  const float* labels = nullptr;          // `rows` labels, or null (scoring: NaN labels)
  const std::uint32_t* fields = nullptr;  // `cols` field ids, or null (field 0)
};

// Rows [floor(w * rows / n), floor((w + 1) * rows / n)): worker w's share of n.
ByteRange ArrayShard(std::size_t rows, int w, int n);

class ArrayRowSource final : public RowSource {
 public:
  // Serves rows [range.begin, range.end) of `arrays` (end <= arrays.rows). With
  // Normalize::kInstance each row's values are scaled to unit L2 norm, as the readers do.
  ArrayRowSource(const CsrArrays& arrays, ByteRange range, Normalize normalize);

  std::size_t Read(std::size_t max_rows, RowBlock* block) override;
  void Rewind() override { next_ = range_.begin; }
  void Remaining(std::vector<ByteRange>* out) const override;
  std::uint64_t bytes_in_shard() const override { return range_.end - range_.begin; }
  std::uint64_t bytes_consumed() const override { return next_ - range_.begin; }
  const BadRowStats& bad_rows() const override { return bad_; }  // always none

 private:
  template <typename I, typename V>
  void AppendRows(std::size_t first, std::size_t count, RowBlock* block) const;

  CsrArrays arrays_;
  ByteRange range_;
  bool normalize_;
  std::uint64_t next_;
  BadRowStats bad_;
};

}  // namespace fmps
