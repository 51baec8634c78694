// ScoreFile (worker/predict/scoring.h): the order and values of the scores do not depend on
// the number of threads, they are the textbook FM scores of a small model, and a malformed
// row stops the pipeline naming file and line.
#include "worker/predict/scoring.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::TempDir;

constexpr int kK = 2;
constexpr float kBias = 0.1f;

float W(Key key) { return 0.01f * static_cast<float>(key) - 0.2f; }
float V(Key key, int f) {
  return 0.3f * static_cast<float>(std::sin(static_cast<double>(key + f)));
}

FeatureSpec Spec(OnError on_error) {
  FeatureSpec spec;
  spec.data.format = DataFormat::kLibsvm;
  spec.data.on_error = on_error;
  spec.data.normalize = Normalize::kNone;  // scores worked by hand from the raw values
  return spec;
}

// Keys 1..50 with (W, V), bias kBias.
Model SmallModel(const TempDir& dir) {
  ModelMeta meta;
  meta.shape = FmShape(kK);
  meta.bias = kBias;
  meta.num_keys = 50;
  meta.features = Spec(OnError::kFail);
  std::vector<Key> keys;
  std::vector<float> params;
  for (Key key = 1; key <= 50; ++key) {
    keys.push_back(key);
    params.push_back(W(key));
    for (int f = 0; f < kK; ++f) params.push_back(V(key, f));
  }
  const std::string path = dir.File("small.fmps");
  ModelWriter writer(path, meta);
  writer.Append(keys, params);
  writer.Finish();
  return Model::Load(path);
}

struct Row {
  float label;
  std::vector<std::pair<Key, float>> x;
};

// y = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j; ids above 50 are unknown (zero).
double NaiveScore(const Row& r) {
  double y = kBias;
  for (std::size_t i = 0; i < r.x.size(); ++i) {
    const auto [a, xa] = r.x[i];
    if (a > 50) continue;
    y += W(a) * xa;
    for (std::size_t j = i + 1; j < r.x.size(); ++j) {
      const auto [b, xb] = r.x[j];
      if (b > 50) continue;
      for (int f = 0; f < kK; ++f) y += static_cast<double>(V(a, f)) * V(b, f) * xa * xb;
    }
  }
  return y;
}

// `n` rows of 1..4 distinct ids in 1..60 with values in {0.5, 1, 2}, written as libsvm.
std::vector<Row> MakeRows(int n, std::string* text) {
  std::vector<Row> rows;
  unsigned x = 12345;
  auto next = [&] { return x = x * 1103515245u + 12345u, (x >> 16) & 0x7fff; };
  for (int i = 0; i < n; ++i) {
    Row r{static_cast<float>(next() % 2), {}};
    const int nnz = 1 + next() % 4;
    Key id = 1 + next() % 15;
    for (int j = 0; j < nnz; ++j, id += 1 + next() % 15) {
      r.x.emplace_back(id, 0.5f * static_cast<float>(1 << (next() % 3)));
    }
    *text += std::to_string(static_cast<int>(r.label));
    for (const auto& [key, value] : r.x) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), " %llu:%g", static_cast<unsigned long long>(key), value);
      *text += buf;
    }
    *text += "\n";
    rows.push_back(r);
  }
  return rows;
}

struct Scored {
  std::vector<float> scores, labels;
  std::string text;
  std::size_t blocks = 0;
};

Scored Score(const Model& model, const std::string& path, int threads) {
  ScoringOptions options;
  options.threads = threads;
  options.block_rows = 7;  // many blocks, so they are reordered when threads > 1
  options.format = [](std::span<const float> scores, std::string* text) {
    for (float s : scores) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.9g\n", s);
      *text += buf;
    }
  };
  Scored out;
  const ScoringStats stats =
      ScoreFile(model, Spec(OnError::kFail), path, options, [&](const ScoredRows& rows) {
        out.scores.insert(out.scores.end(), rows.scores.begin(), rows.scores.end());
        out.labels.insert(out.labels.end(), rows.labels.begin(), rows.labels.end());
        out.text += rows.text;
        ++out.blocks;
      });
  EXPECT_EQ(stats.rows, out.scores.size());
  return out;
}

TEST(ScoreFileTest, ScoresAreTheFmScoresInInputOrderWhateverTheThreads) {
  TempDir dir;
  const Model model = SmallModel(dir);
  std::string text;
  const std::vector<Row> rows = MakeRows(1000, &text);
  const std::string path = dir.Write("rows.libsvm", text);
  const Scored one = Score(model, path, 1);
  ASSERT_EQ(one.scores.size(), rows.size());
  EXPECT_EQ(one.blocks, (rows.size() + 6) / 7);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_NEAR(one.scores[i], NaiveScore(rows[i]), 1e-5) << "row " << i + 1;
    EXPECT_EQ(one.labels[i], rows[i].label) << "row " << i + 1;
  }
  for (int rep = 0; rep < 3; ++rep) {
    const Scored three = Score(model, path, 3);
    EXPECT_EQ(three.scores, one.scores) << "repetition " << rep;
    EXPECT_EQ(three.labels, one.labels);
    EXPECT_EQ(three.text, one.text);
  }
  // The convenience form gives the same scores.
  std::vector<float> simple;
  ScoreFile(model, Spec(OnError::kFail), path, 3,
            [&](std::span<const float> s, std::span<const float>) {
              simple.insert(simple.end(), s.begin(), s.end());
            });
  EXPECT_EQ(simple, one.scores);
}

TEST(ScoreFileTest, MalformedRowStopsWithFileAndLine) {
  TempDir dir;
  const Model model = SmallModel(dir);
  std::string text;
  MakeRows(500, &text);
  // Line 301 becomes malformed.
  std::size_t pos = 0;
  for (int line = 1; line < 301; ++line) pos = text.find('\n', pos) + 1;
  text.insert(pos, "1 3:abc\n");
  const std::string path = dir.Write("bad.libsvm", text);
  for (int threads : {1, 3}) {
    try {
      Score(model, path, threads);
      FAIL() << "expected a DataError, threads " << threads;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("bad.libsvm:301"), std::string::npos)
          << "threads " << threads << ": " << e.what();
    }
  }
}

// LabelPolicy::kOptional (what predict uses): rows with and without a label mix in one file,
// every row is scored, a row without one gets label NaN; kRequired refuses such a row.
TEST(ScoreFileTest, OptionalLabelsScoreRowsWithoutOne) {
  TempDir dir;
  const Model model = SmallModel(dir);
  std::string text;
  const std::vector<Row> rows = MakeRows(100, &text);
  std::string mixed;
  int line = 0;
  for (std::size_t at = 0; at < text.size(); ++line) {
    const std::size_t end = text.find('\n', at);
    const std::string row = text.substr(at, end - at);
    mixed += (line % 2 == 1 ? row.substr(row.find(' ') + 1) : row) + "\n";
    at = end + 1;
  }
  const std::string path = dir.Write("mixed.libsvm", mixed);
  FeatureSpec spec = Spec(OnError::kFail);
  spec.labels = LabelPolicy::kOptional;
  std::vector<float> scores, labels;
  ScoreFile(model, spec, path, 3, [&](std::span<const float> s, std::span<const float> y) {
    scores.insert(scores.end(), s.begin(), s.end());
    labels.insert(labels.end(), y.begin(), y.end());
  });
  ASSERT_EQ(scores.size(), rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_NEAR(scores[i], NaiveScore(rows[i]), 1e-5) << "row " << i + 1;
    if (i % 2 == 1) {
      EXPECT_TRUE(std::isnan(labels[i])) << "row " << i + 1;
    } else {
      EXPECT_EQ(labels[i], rows[i].label) << "row " << i + 1;
    }
  }
  EXPECT_THROW(ScoreFile(model, Spec(OnError::kFail), path, 1,
                         [](std::span<const float>, std::span<const float>) {}),
               DataError);
}

}  // namespace
}  // namespace fmps
