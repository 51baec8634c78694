// RowSubset: the validation hold-out and the cross-validation folds chosen by a row hash.
// Over real rows, K folds partition the file (every row in exactly one fold, whatever the
// sharding), and a fold and its complement together are the file.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/data/reader.h"
#include "common/data/synth.h"
#include "tests/util/test_util.h"
#include "worker/job/job.h"

namespace fmps {
namespace {

using testing::TempDir;

// Each row read (as its label and keys) -> how many times: a multiset of rows.
using Rows = std::map<std::string, int>;

void ReadInto(ShardReader* reader, Rows* rows) {
  RowBlock block;
  while (reader->Read(512, &block) > 0) {
    for (std::size_t r = 0; r < block.rows(); ++r) {
      std::string text = std::to_string(block.labels[r]);
      for (std::size_t i = block.offsets[r]; i < block.offsets[r + 1]; ++i) {
        char item[64];
        std::snprintf(item, sizeof(item), " %llu:%.9g",
                      static_cast<unsigned long long>(block.keys[i]), block.values[i]);
        text += item;
      }
      ++(*rows)[text];
    }
    block.Clear();
  }
}

// The rows of `files` read by `shards` readers each keeping `subset`.
Rows ReadSubset(const FeatureSpec& spec, const std::vector<std::string>& files,
                const RowSubset& subset, int shards) {
  Rows rows;
  for (int s = 0; s < shards; ++s) {
    ShardReader reader(spec, files, s, shards);
    reader.SetSubset(subset);
    ReadInto(&reader, &rows);
  }
  return rows;
}

void ExpectFoldsPartition(const std::vector<std::string>& files, DataFormat format) {
  FeatureSpec spec;
  spec.data.format = format;
  const Rows all = ReadSubset(spec, files, RowSubset{}, 1);
  ASSERT_GT(all.size(), 100u);
  for (int folds : {2, 5}) {
    Rows union_of_folds;
    std::size_t total = 0;
    for (int f = 0; f < folds; ++f) {
      const RowSubset fold = CrossValidationFold(f, folds);
      const Rows in = ReadSubset(spec, files, fold, 3);
      RowSubset rest_subset = fold;
      rest_subset.inside = false;
      Rows both = ReadSubset(spec, files, rest_subset, 2);
      for (const auto& [row, n] : in) {
        both[row] += n;
        union_of_folds[row] += n;
        total += n;
      }
      EXPECT_EQ(both, all) << "fold " << f << " of " << folds << " and its complement";
      // Each fold holds about 1/folds of the rows.
      std::size_t in_rows = 0;
      for (const auto& [row, n] : in) in_rows += n;
      EXPECT_NEAR(static_cast<double>(in_rows) / 1e4, 1.0 / folds, 0.05);
    }
    EXPECT_EQ(union_of_folds, all) << folds << " folds";
    EXPECT_EQ(total, 10000u);
  }
}

TEST(RowSubsetTest, FoldsPartitionSyntheticRowsExactlyOnce) {
  TempDir dir;
  SynthOptions o;
  o.out_dir = dir.File("synth");
  o.rows = 10000;
  o.test_rows = 10;
  o.fields = 6;
  o.vocab = 1000000;  // distinct rows (a row's position depends on its text only)
  const SynthResult data = Synthesize(o);
  ExpectFoldsPartition({data.train_path}, DataFormat::kLibsvm);
}

TEST(RowSubsetTest, ValidFractionHoldsOutAboutThatShare) {
  EXPECT_FALSE(HeldOutOf(Config()).has_value());
  Config c;
  c.data.valid_fraction = 0.25;
  const RowSubset s = *HeldOutOf(c);
  int in = 0;
  char line[32];
  for (int i = 0; i < 20000; ++i) {
    std::snprintf(line, sizeof(line), "row %d", i);
    in += s.Keeps(RowHashUnit(line));
  }
  EXPECT_NEAR(in / 20000.0, 0.25, 0.01);
  // The position ignores the line terminator.
  EXPECT_EQ(RowHashUnit("1 3:1 7:1"), RowHashUnit("1 3:1 7:1\r"));
}

TEST(RowSubsetTest, FoldsPartitionRealRowsExactlyOnce) {
  const std::string a9a = testing::SharedData("a9a/a9a");
  if (a9a.empty()) GTEST_SKIP() << "shared data not present";
  FeatureSpec spec;
  const Rows all = ReadSubset(spec, {a9a}, RowSubset{}, 1);
  Rows union_of_folds;
  for (int f = 0; f < 4; ++f) {
    for (const auto& [row, n] : ReadSubset(spec, {a9a}, CrossValidationFold(f, 4), 2)) {
      union_of_folds[row] += n;
    }
  }
  EXPECT_EQ(union_of_folds, all);
}

}  // namespace
}  // namespace fmps
