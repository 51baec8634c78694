// model.fmps: round trip, chunking, validation of damaged files, atomic writes.
#include "common/model/model_file.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "fmps.pb.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::TempDir;

ModelMeta MakeMeta(int k, std::uint64_t keys) {
  ModelMeta m;
  m.shape = FmShape(k);
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

// Appends `n` keys 0, 3, 6, ... with params derived from the key through `w`.
void AppendModel(ModelWriter& w, int k, std::uint64_t n) {
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
}

// AppendModel, then Finish.
void FillModel(ModelWriter& w, int k, std::uint64_t n) {
  AppendModel(w, k, n);
  w.Finish();
}

void WriteModel(const std::string& path, int k, std::uint64_t n) {
  ModelWriter w(path, MakeMeta(k, n));
  FillModel(w, k, n);
}

// Seal then Publish writes Finish's bytes; nothing is at the path before Publish, and a
// writer destroyed between the two leaves no file at all, temp included (the model save
// publishes only once the test evaluation it overlaps has succeeded).
TEST(ModelFileTest, SealThenPublishWritesFinishsBytesAndNothingBefore) {
  TempDir dir;
  const std::uint64_t n = 70000;  // two chunks
  WriteModel(dir.File("whole.fmps"), 2, n);
  {
    ModelWriter w(dir.File("sealed.fmps"), MakeMeta(2, n));
    AppendModel(w, 2, n);
    w.Seal();
    EXPECT_FALSE(std::filesystem::exists(dir.File("sealed.fmps")));
    w.Publish();
  }
  EXPECT_EQ(testing::ReadFile(dir.File("sealed.fmps")), testing::ReadFile(dir.File("whole.fmps")));
  {
    ModelWriter w(dir.File("dropped.fmps"), MakeMeta(2, n));
    AppendModel(w, 2, n);
    w.Seal();
  }
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"sealed.fmps", "whole.fmps"}));
}

// The in-memory writer gives the file's bytes (checksum included) and creates no file.
TEST(ModelFileTest, InMemoryWriterGivesTheFileBytes) {
  TempDir dir;
  const std::uint64_t n = 70000;  // two chunks
  WriteModel(dir.File("m.fmps"), 2, n);
  std::string bytes = "stale";
  {
    ModelWriter w(&bytes, "memory", MakeMeta(2, n));
    FillModel(w, 2, n);
  }
  EXPECT_EQ(bytes, testing::ReadFile(dir.File("m.fmps")));
  EXPECT_EQ(Model::FromBytes(bytes, "memory").num_keys(), n);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(e.path().filename());
  }
  EXPECT_EQ(names, std::vector<std::string>{"m.fmps"});
}

// AppendRows (rows anywhere in memory, written straight into the file's block buffer)
// writes the bytes Append does (the same chunks), to a file (here 11 MB: several direct-I/O blocks
// and an unaligned tail) and in memory, and refuses keys that do not ascend.
TEST(ModelFileTest, AppendRowsWritesTheBytesOfAppend) {
  TempDir dir;
  const int k = 16;
  const std::uint64_t n = 150000;  // 76 bytes per key: 11.4 MB, 3 chunks
  WriteModel(dir.File("append.fmps"), k, n);
  const std::size_t width = k + 1;
  // The rows in reverse order in memory, so that each row is found through its pointer.
  std::vector<float> table(n * width);
  std::vector<Key> keys(n);
  std::vector<const float*> rows(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    keys[i] = i * 3;
    float* row = table.data() + (n - 1 - i) * width;
    for (std::size_t j = 0; j < width; ++j) row[j] = static_cast<float>(i) * 0.5f + j;
    rows[i] = row;
  }
  auto write_rows = [&](ModelWriter& w) {
    const std::size_t split = 65536;  // two calls, split where Append's chunks split
    w.AppendRows(std::span(keys).first(split), std::span(rows).first(split));
    w.AppendRows(std::span(keys).subspan(split), std::span(rows).subspan(split));
    w.Finish();
  };
  {
    ModelWriter w(dir.File("rows.fmps"), MakeMeta(k, n));
    write_rows(w);
  }
  std::string bytes;
  {
    ModelWriter w(&bytes, "memory", MakeMeta(k, n));
    write_rows(w);
  }
  const std::string file = testing::ReadFile(dir.File("rows.fmps"));
  ASSERT_GT(file.size(), 2 * RecordWriter::kWriteBlockBytes);
  EXPECT_EQ(bytes, file);
  const Model m = Model::Load(dir.File("rows.fmps"));
  ASSERT_EQ(m.num_keys(), n);
  EXPECT_EQ(m.row(n - 1)[k], static_cast<float>(n - 1) * 0.5f + k);
  EXPECT_EQ(file, testing::ReadFile(dir.File("append.fmps")));  // protobuf's encoding
  ModelWriter w(dir.File("bad.fmps"), MakeMeta(k, 2));
  const std::vector<Key> descending = {6, 3};
  const std::vector<const float*> two = {rows[0], rows[1]};
  EXPECT_THROW(w.AppendRows(descending, two), ModelError);
}

TEST(ModelFileTest, RoundTripAcrossChunks) {
  TempDir dir;
  const std::string path = dir.File("m.fmps");
  const std::uint64_t n = 150000;  // more than two 65536-key chunks
  WriteModel(path, 3, n);
  Model m = Model::Load(path);
  EXPECT_EQ(m.shape(), FmShape(3));
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

// A model file assembled record by record: the magic, `header`, one last chunk holding keys
// 10 and 20 with rows (0.5, 1, 2) and (-0.25, 3, -1) (k = 2).
std::string HandWrittenModel(const pb::ModelHeader& header) {
  auto record = [](const std::string& bytes) {
    const auto n = static_cast<std::uint32_t>(bytes.size());
    std::string out = {static_cast<char>(n), static_cast<char>(n >> 8), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 24)};
    return out + bytes;
  };
  const std::vector<Key> keys = {10, 20};
  const std::vector<float> params = {0.5f, 1.0f, 2.0f, -0.25f, 3.0f, -1.0f};
  pb::ModelChunk c;
  c.set_keys(keys.data(), keys.size() * sizeof(Key));
  c.set_params(params.data(), params.size() * sizeof(float));
  c.set_last(true);
  return "FMPSMDL1" + record(header.SerializeAsString()) + record(c.SerializeAsString());
}

// The header fields every model file has had, without kind and fields.
pb::ModelHeader HeaderWithoutShape() {
  pb::ModelHeader h;
  h.set_version(1);
  h.set_k(2);
  h.set_loss("logistic");
  h.set_bias(-1.25f);
  h.set_num_keys(2);
  h.set_data_yaml(DataSectionToYaml(MakeMeta(2, 2).features.data));
  return h;
}

TEST(ModelFileTest, FileWithoutKindAndFieldsLoadsAsFm) {
  TempDir dir;
  const std::string path = dir.Write("old.fmps", HandWrittenModel(HeaderWithoutShape()));
  Model m = Model::Load(path);
  EXPECT_EQ(m.shape(), FmShape(2));
  EXPECT_EQ(Model::ReadMeta(path).shape, FmShape(2));
  RowBlock b;
  b.AddFeature(10, 1.0f);
  b.AddFeature(20, 2.0f);
  b.FinishRow(1.0f);
  std::vector<std::uint32_t> local;
  float score = 0.0f;
  m.Score(b, &local, &score);
  EXPECT_FLOAT_EQ(score, 0.75f);  // as in ScoresRowsWithKnownAndUnknownKeys
}

TEST(ModelFileTest, WrittenHeaderCarriesTheShape) {
  TempDir dir;
  const std::string path = dir.File("m.fmps");
  WriteModel(path, 5, 3);
  const std::string bytes = testing::ReadFile(path);
  const std::uint32_t n = static_cast<unsigned char>(bytes[8]) |
                          static_cast<unsigned char>(bytes[9]) << 8 |
                          static_cast<unsigned char>(bytes[10]) << 16;
  pb::ModelHeader h;
  ASSERT_TRUE(h.ParseFromString(bytes.substr(12, n)));
  EXPECT_EQ(h.k(), 5u);
  EXPECT_EQ(h.kind(), 0u);  // FM
  EXPECT_EQ(h.fields(), 0u);
  EXPECT_EQ(Model::Load(path).shape(), FmShape(5));
}

// Also crafted headers: a huge key count is refused before anything is allocated for it, a
// k that does not match the chunks is a clear error naming the shape.
TEST(ModelFileTest, UnknownKindOrFieldsOnFmAndCraftedCountsAreRejected) {
  TempDir dir;
  auto expect_rejected = [&](const pb::ModelHeader& h, const std::string& what) {
    const std::string path = dir.Write("bad.fmps", HandWrittenModel(h));
    try {
      Model::Load(path);
      ADD_FAILURE() << "accepted " << what;
    } catch (const ModelError& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  pb::ModelHeader h = HeaderWithoutShape();
  h.set_num_keys(std::uint64_t{1} << 60);
  expect_rejected(h, "header announces 1152921504606846976 keys, more than its");
  h = HeaderWithoutShape();
  h.set_k(3);  // the chunk holds k = 2 rows
  expect_rejected(h, "needs 16 parameter bytes per 8-byte key");
  h = HeaderWithoutShape();
  h.set_version(3);
  expect_rejected(h, "unsupported model version 3");
  h = HeaderWithoutShape();
  h.set_kind(7);
  expect_rejected(h, "unknown model kind 7");
  h = HeaderWithoutShape();
  h.set_fields(3);
  expect_rejected(h, "fields");
  h = HeaderWithoutShape();
  h.set_k(0);
  expect_rejected(h, "bad k");
  ModelMeta meta = MakeMeta(2, 0);
  meta.shape.fields = 4;
  EXPECT_THROW(ModelWriter(dir.File("w.fmps"), meta), ModelError);
  EXPECT_FALSE(std::filesystem::exists(dir.File("w.fmps")));
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

// Issue 16 item 7: 200 copies of a model, each with 1-8 random bytes changed past the magic:
// every copy must be refused (before the checksum, most loaded silently).
TEST(ModelFileTest, EveryRandomlyDamagedCopyIsRefused) {
  TempDir dir;
  const std::string path = dir.File("m.fmps");
  WriteModel(path, 4, 3000);
  const std::string good = testing::ReadFile(path);
  std::mt19937_64 rng(16);
  int refused = 0;
  for (int copy = 0; copy < 200; ++copy) {
    std::string bad = good;
    const int changes = std::uniform_int_distribution<int>(1, 8)(rng);
    for (int i = 0; i < changes; ++i) {
      const std::size_t at = std::uniform_int_distribution<std::size_t>(8, bad.size() - 1)(rng);
      bad[at] = static_cast<char>(bad[at] ^ std::uniform_int_distribution<int>(1, 255)(rng));
    }
    const std::string name = "copy-" + std::to_string(copy) + ".fmps";
    try {
      Model::Load(dir.Write(name, bad));
      ADD_FAILURE() << "damaged copy " << copy << " (" << changes << " bytes) loaded";
    } catch (const ModelError& e) {
      EXPECT_EQ(std::string(e.what()).rfind(dir.File(name) + ": ", 0), 0u) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      ++refused;
    }
  }
  EXPECT_EQ(refused, 200);
}

// The same through the binary: `fmps predict` refuses a damaged model in one line naming it.
TEST(ModelFileTest, PredictRefusesADamagedModel) {
  TempDir dir;
  const std::string path = dir.File("m.fmps");
  ModelMeta meta = MakeMeta(2, 3);
  meta.features = FeatureSpec{};
  meta.features.data.format = DataFormat::kLibsvm;
  {
    ModelWriter w(path, meta);
    const std::vector<Key> keys = {1, 2, 3};
    const std::vector<float> params(9, 0.25f);
    w.Append(keys, params);
    w.Finish();
  }
  const std::string data = dir.Write("d.libsvm", "1 1:1 2:1\n0 3:1\n");
  std::string out;
  const std::string predict = testing::FmpsBinary() + " predict --data " + data + " --out " +
                              dir.File("p.txt") + " --model ";
  ASSERT_EQ(testing::RunCommand(predict + path + " 2>&1", &out), 0) << out;
  std::string bytes = testing::ReadFile(path);
  bytes[bytes.size() - 20] ^= 0x10;  // one bit of the last parameter
  const std::string bad = dir.Write("damaged.fmps", bytes);
  EXPECT_NE(testing::RunCommand(predict + bad + " 2>&1", &out), 0) << out;
  EXPECT_EQ(testing::Lines(out).size(), 1u) << out;
  EXPECT_NE(out.find(bad + ": damaged model file (checksum mismatch)"), std::string::npos) << out;
}

// Files written before the checksum (version 1) still load, with a warning naming the file.
TEST(ModelFileTest, Version1FileLoadsWithAWarning) {
  TempDir dir;
  const std::string path = dir.Write("old.fmps", HandWrittenModel(HeaderWithoutShape()));
  ::testing::internal::CaptureStderr();
  Model m = Model::Load(path);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(m.num_keys(), 2u);
  EXPECT_NE(err.find(path + ": model file written before model files carried a checksum"),
            std::string::npos)
      << err;
  // A version-2 file must carry its checksum: the same records under version 2 are refused.
  pb::ModelHeader h = HeaderWithoutShape();
  h.set_version(2);
  EXPECT_THROW(Model::Load(dir.Write("v2.fmps", HandWrittenModel(h))), ModelError);
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
