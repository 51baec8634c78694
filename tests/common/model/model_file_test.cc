// model.fmps: round trip, chunking, validation of damaged files, atomic writes.
#include "common/model/model_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::TempDir;

ModelMeta MakeMeta(int k, std::uint64_t keys) {
  ModelMeta m;
  m.k = k;
  m.loss = Loss::kLogistic;
  m.bias = -1.25f;
  m.num_keys = keys;
  m.features.data.train = {"train.txt"};
  m.features.data.format = DataFormat::kCsv;
  m.features.data.csv.label = "y";
  m.features.data.csv.numeric = {"a"};
  m.features.data.csv.categorical = {"b"};
  m.features.numeric_stats = {{"a", 2.5, 0.5}};
  m.config_yaml = "model:\n  k: 3\n";
  return m;
}

// Writes `n` keys 0, 3, 6, ... with params derived from the key.
void WriteModel(const std::string& path, int k, std::uint64_t n) {
  ModelWriter w(path, MakeMeta(k, n));
  std::vector<Key> keys;
  std::vector<float> params;
  for (std::uint64_t i = 0; i < n; ++i) {
    keys.push_back(i * 3);
    for (int j = 0; j <= k; ++j) params.push_back(static_cast<float>(i) * 0.5f + j);
    if (keys.size() == 1000) {  // several Append calls
      w.Append(keys, params);
      keys.clear();
      params.clear();
    }
  }
  w.Append(keys, params);
  w.Finish();
}

TEST(ModelFileTest, RoundTripAcrossChunks) {
  TempDir dir;
  const std::string path = dir.File("m.fmps");
  const std::uint64_t n = 150000;  // more than two 65536-key chunks
  WriteModel(path, 3, n);
  Model m = Model::Load(path);
  EXPECT_EQ(m.k(), 3);
  EXPECT_EQ(m.meta().loss, Loss::kLogistic);
  EXPECT_EQ(m.meta().bias, -1.25f);
  ASSERT_EQ(m.num_keys(), n);
  EXPECT_EQ(m.meta().features.data.format, DataFormat::kCsv);
  EXPECT_EQ(m.meta().features.data.csv.label, "y");
  ASSERT_EQ(m.meta().features.numeric_stats.size(), 1u);
  EXPECT_EQ(m.meta().features.numeric_stats[0].mean, 2.5);
  EXPECT_EQ(m.meta().config_yaml, "model:\n  k: 3\n");
  for (std::uint64_t i = 0; i < n; i += 997) {
    EXPECT_EQ(m.keys()[i], i * 3);
    EXPECT_EQ(m.row(i)[0], static_cast<float>(i) * 0.5f);
    EXPECT_EQ(m.row(i)[3], static_cast<float>(i) * 0.5f + 3);
  }
}

TEST(ModelFileTest, ScoresRowsWithKnownAndUnknownKeys) {
  TempDir dir;
  const std::string path = dir.File("m.fmps");
  {
    ModelWriter w(path, MakeMeta(2, 2));
    std::vector<Key> keys = {10, 20};
    std::vector<float> params = {0.5f, 1.0f, 2.0f, -0.25f, 3.0f, -1.0f};
    w.Append(keys, params);
    w.Finish();
  }
  Model m = Model::Load(path);
  RowBlock b;
  b.AddFeature(10, 1.0f);
  b.AddFeature(20, 2.0f);
  b.AddFeature(99, 5.0f);  // unknown: contributes nothing
  b.FinishRow(1.0f);
  b.FinishRow(0.0f);  // empty row: bias only
  std::vector<std::uint32_t> local;
  float scores[2];
  m.Score(b, &local, scores);
  // -1.25 + 0.5*1 + (-0.25)*2 + <(1,2),(3,-1)> * 1 * 2 = -1.25 + 0.5 - 0.5 + 2 = 0.75
  EXPECT_FLOAT_EQ(scores[0], 0.75f);
  EXPECT_FLOAT_EQ(scores[1], -1.25f);
}

TEST(ModelFileTest, DamagedFilesAreRejectedWithTheirName) {
  TempDir dir;
  const std::string path = dir.File("m.fmps");
  WriteModel(path, 2, 5000);
  const std::string good = testing::ReadFile(path);
  auto expect_model_error = [&](const std::string& bytes, const char* what) {
    const std::string bad = dir.Write("bad.fmps", bytes);
    try {
      Model::Load(bad);
      ADD_FAILURE() << "accepted " << what;
    } catch (const ModelError& e) {
      EXPECT_NE(std::string(e.what()).find("bad.fmps"), std::string::npos) << e.what();
    }
  };
  expect_model_error(good.substr(0, good.size() - 10), "a truncated file");
  expect_model_error(good.substr(0, 8), "a file with only the magic");
  expect_model_error("NOTMODEL" + good.substr(8), "a bad magic");
  expect_model_error("", "an empty file");
  std::string flipped = good;
  flipped[9] ^= 0x7f;  // inside the first record's length
  expect_model_error(flipped, "a corrupt record length");
  EXPECT_THROW(Model::Load(dir.File("missing.fmps")), IoError);
}

TEST(ModelFileTest, UnfinishedWriterLeavesNothing) {
  TempDir dir;
  const std::string path = dir.File("m.fmps");
  {
    ModelWriter w(path, MakeMeta(2, 10));
    std::vector<Key> keys = {1, 2};
    std::vector<float> params(6, 1.0f);
    w.Append(keys, params);
    // Finish with the wrong key count fails and must not publish a file.
    EXPECT_THROW(w.Finish(), ModelError);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  ModelWriter w(path, MakeMeta(2, 2));
  std::vector<Key> descending = {5, 4};
  std::vector<float> params(6, 1.0f);
  EXPECT_THROW(w.Append(descending, params), ModelError);
}

}  // namespace
}  // namespace fmps
