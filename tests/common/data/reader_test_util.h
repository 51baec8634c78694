// Helpers shared by the reader tests (tests/common/data/reader*_test.cc): specs, whole-shard
// reads, block comparison (fields included) and the real-data cases.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "common/data/reader.h"
#include "tests/util/test_util.h"

namespace fmps::reader_testing {

using ::fmps::testing::TempDir;

// prefix followed by a decimal number (avoids GCC 12's false -Wrestrict on
// "literal" + std::to_string(...)).
inline std::string Num(std::string_view prefix, long long v) {
  std::string out(prefix);
  out.append(std::to_string(v));
  return out;
}

inline FeatureSpec Spec(DataFormat format, int hash_bits = 0, Loss loss = Loss::kLogistic) {
  FeatureSpec spec;
  spec.data.format = format;
  spec.data.hash_bits = hash_bits;
  spec.data.normalize = Normalize::kNone;  // the values as written (instance is the default)
  spec.loss = loss;
  return spec;
}

// Reads the whole shard, appending to one block (batches of 333 rows).
inline RowBlock ReadAll(const FeatureSpec& spec, const std::vector<std::string>& files,
                        int shard = 0, int num_shards = 1, BadRowStats* bad = nullptr) {
  ShardReader reader(spec, files, shard, num_shards);
  RowBlock block;
  while (reader.Read(333, &block) > 0) {
  }
  EXPECT_EQ(reader.bytes_consumed(), reader.bytes_in_shard());
  EXPECT_EQ(reader.rows_read(), block.rows());
  if (bad != nullptr) *bad = reader.bad_rows();
  return block;
}

inline void Append(const RowBlock& src, RowBlock* dst) {
  for (std::size_t r = 0; r < src.rows(); ++r) {
    for (std::size_t j = src.offsets[r]; j < src.offsets[r + 1]; ++j) {
      dst->AddFeature(src.keys[j], src.values[j], src.fields[j]);
    }
    dst->FinishRow(src.labels[r]);
  }
}

// Empty string when equal (labels, rows, keys, values and fields), else where they first
// differ. Each block must have one field per non-zero.
inline std::string Diff(const RowBlock& a, const RowBlock& b) {
  if (a.fields.size() != a.nnz() || b.fields.size() != b.nnz()) return "fields not parallel";
  if (a.rows() != b.rows()) {
    return "rows " + std::to_string(a.rows()) + " vs " + std::to_string(b.rows());
  }
  for (std::size_t r = 0; r < a.rows(); ++r) {
    if (a.labels[r] != b.labels[r]) return "label of row " + std::to_string(r);
    if (a.offsets[r + 1] != b.offsets[r + 1]) return "length of row " + std::to_string(r);
  }
  for (std::size_t j = 0; j < a.nnz(); ++j) {
    if (a.keys[j] != b.keys[j] || a.values[j] != b.values[j] || a.fields[j] != b.fields[j]) {
      return "feature " + std::to_string(j);
    }
  }
  return "";
}

struct Feature {
  Key key;
  float value;
  bool operator==(const Feature&) const = default;
};
inline std::vector<Feature> RowFeatures(const RowBlock& b, std::size_t r) {
  std::vector<Feature> out;
  for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j)
    out.push_back({b.keys[j], b.values[j]});
  return out;
}
inline std::ostream& operator<<(std::ostream& os, const Feature& f) {
  return os << "(" << f.key << ", " << f.value << ")";
}
// The fields of row r (one per non-zero).
inline std::vector<std::uint32_t> RowFields(const RowBlock& b, std::size_t r) {
  EXPECT_EQ(b.fields.size(), b.nnz());
  return {b.fields.begin() + static_cast<std::ptrdiff_t>(b.offsets[r]),
          b.fields.begin() + static_cast<std::ptrdiff_t>(b.offsets[r + 1])};
}

// Parses one line with LineParser; returns the reason ("" on success).
inline std::string ParseReason(const FeatureSpec& spec, const std::string& line,
                               std::vector<std::string> header = {}) {
  LineParser parser(spec, std::move(header));
  RowBlock block;
  block.AddFeature(7, 7.0f);  // an earlier row must survive a failed parse
  block.FinishRow(1.0f);
  std::string reason;
  const bool ok = parser.Parse(line, &block, &reason);
  if (ok) return "";
  EXPECT_EQ(block.nnz(), 1u) << "failed parse must leave the block unchanged: "
                             << line.substr(0, 80);
  EXPECT_EQ(block.fields, std::vector<std::uint32_t>{0}) << line.substr(0, 80);
  EXPECT_EQ(block.rows(), 1u);
  EXPECT_FALSE(reason.empty());
  return reason;
}

inline FeatureSpec CsvSpec3(NumericTransform t = NumericTransform::kNone) {
  FeatureSpec spec = Spec(DataFormat::kCsv);
  spec.data.csv.label = "y";
  spec.data.csv.numeric = {"n"};
  spec.data.csv.categorical = {"a", "b"};
  spec.data.csv.ignore = {"id"};
  spec.data.csv.transform = t;
  return spec;
}

struct ShardCase {
  std::string name;
  FeatureSpec spec;
  std::vector<std::string> files;  // relative to shared data
  std::size_t rows;                // n = 1 row count (README)
};

inline FeatureSpec CriteoCsvSpec(const std::string& label, bool with_id) {
  FeatureSpec spec = Spec(DataFormat::kCsv, 24);
  spec.data.csv.label = label;
  for (int i = 1; i <= 13; ++i) spec.data.csv.numeric.push_back(Num("I", i));
  for (int i = 1; i <= 26; ++i) spec.data.csv.categorical.push_back(Num("C", i));
  if (with_id) spec.data.csv.ignore = {"Id"};
  spec.data.csv.transform = NumericTransform::kLogBucket;
  return spec;
}

inline std::vector<ShardCase> ShardCases() {
  std::vector<ShardCase> cases;
  cases.push_back({"a9a", Spec(DataFormat::kLibsvm), {"a9a/a9a"}, 32561});
  cases.push_back({"a9a+a9a.t", Spec(DataFormat::kLibsvm, 18), {"a9a/a9a", "a9a/a9a.t"}, 48842});
  cases.push_back({"agaricus", Spec(DataFormat::kLibsvm), {"agaricus/agaricus.txt.train"}, 6513});
  cases.push_back({"xlearn", Spec(DataFormat::kLibffm), {"xlearn_criteo/small_train.txt"}, 200});
  cases.push_back({"guestwalk",
                   CriteoCsvSpec("Label", true),
                   {"guestwalk_criteo_tiny/train.tiny.csv", "guestwalk_criteo_tiny/test.tiny.csv"},
                   3998});
  cases.push_back(
      {"jqsl", Spec(DataFormat::kCriteo, 20), {"jqsl_pytorchfm_criteo/train.txt"}, 1000});
  cases.push_back({"deepctr_criteo",
                   CriteoCsvSpec("label", false),
                   {"deepctr_samples/criteo_sample.txt"},
                   200});
  FeatureSpec movielens = Spec(DataFormat::kCsv, 0, Loss::kSquared);
  movielens.data.csv.label = "rating";
  movielens.data.csv.categorical = {"user_id", "movie_id", "title",      "genres",
                                    "gender",  "age",      "occupation", "zip"};
  movielens.data.csv.ignore = {"timestamp"};
  cases.push_back({"movielens", movielens, {"deepctr_samples/movielens_sample.txt"}, 200});
  return cases;
}

// Reads every row of `reader` into *block (batches of `batch`).
inline void Drain(ShardReader* reader, RowBlock* block, std::size_t batch = 100) {
  while (reader->Read(batch, block) > 0) {
  }
}
}  // namespace fmps::reader_testing
