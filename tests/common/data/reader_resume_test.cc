// Byte ranges, shards, Remaining() and resuming with a different number of readers.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "common/data/reader.h"
#include "tests/common/data/reader_test_util.h"

namespace fmps {
namespace {

using namespace ::fmps::reader_testing;  // NOLINT: the shared helpers

// ---- Byte ranges, Remaining() and resuming ----

std::uint64_t RangeBytes(const std::vector<ByteRange>& ranges) {
  std::uint64_t n = 0;
  for (const ByteRange& r : ranges) n += r.end - r.begin;
  return n;
}

std::string RangesText(const std::vector<ByteRange>& ranges) {
  std::string out;
  for (const ByteRange& r : ranges) {
    out.append(Num("[", static_cast<long long>(r.begin)));
    out.append(Num(",", static_cast<long long>(r.end)));
    out.append(")");
  }
  return out;
}

// A row as a comparable value, for multiset comparisons.
using RowValue = std::pair<float, std::vector<std::tuple<Key, float, std::uint32_t>>>;
std::vector<RowValue> SortedRows(const RowBlock& b) {
  std::vector<RowValue> rows;
  for (std::size_t r = 0; r < b.rows(); ++r) {
    RowValue v{b.labels[r], {}};
    for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j) {
      v.second.emplace_back(b.keys[j], b.values[j], b.fields[j]);
    }
    rows.push_back(std::move(v));
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

// Real files for the resume tests: a single libsvm file, the CRLF csv with its roles, the
// ragged criteo file, and two multi-file lists (ranges crossing file boundaries; csv headers).
std::vector<ShardCase> ResumeCases() {
  std::vector<ShardCase> cases;
  for (const ShardCase& c : ShardCases()) {
    if (c.name == "a9a" || c.name == "a9a+a9a.t" || c.name == "guestwalk" || c.name == "jqsl") {
      cases.push_back(c);
    }
  }
  ShardCase train_only = cases[2];
  train_only.name = "guestwalk train";
  train_only.files = {"guestwalk_criteo_tiny/train.tiny.csv"};
  train_only.rows = 0;
  cases.push_back(train_only);
  return cases;
}

TEST(ResumeTest, RemainingResumesExactlyTheRestOfTheShard) {
  FMPS_REQUIRE_SHARED_DATA(base, "");
  constexpr std::size_t kBatch = 97;
  for (const ShardCase& c : ResumeCases()) {
    std::vector<std::string> files;
    std::string all_bytes;  // the concatenation, to check where Remaining() starts
    std::vector<std::uint64_t> file_starts;
    for (const auto& f : c.files) {
      files.push_back(base + f);
      file_starts.push_back(all_bytes.size());
      all_bytes += ::fmps::testing::ReadFile(files.back());
    }
    ASSERT_EQ(TotalBytes(files), all_bytes.size());
    for (int n : {1, 3}) {
      for (int s = 0; s < n; ++s) {
        const std::string where = c.name + Num(" n=", n) + Num(" s=", s);
        const RowBlock full = ReadAll(c.spec, files, s, n);
        ASSERT_GT(full.rows(), 0u) << where;
        const std::size_t batches = (full.rows() + kBatch - 1) / kBatch;
        for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{2}, batches / 2,
                              batches - 1, batches, batches + 1}) {
          const std::string at = where + Num(" k=", static_cast<long long>(k));
          ShardReader reader(c.spec, files, s, n);
          EXPECT_EQ(reader.Remaining(),
                    (std::vector<ByteRange>{ShardRange(all_bytes.size(), s, n)}))
              << at;
          RowBlock rows;
          bool exhausted = false;
          for (std::size_t b = 0; b < k && !exhausted; ++b) {
            exhausted = reader.Read(kBatch, &rows) == 0;
            const std::vector<ByteRange> rem = reader.Remaining();
            ASSERT_EQ(reader.bytes_consumed() + RangeBytes(rem), reader.bytes_in_shard()) << at;
          }
          const std::vector<ByteRange> rem = reader.Remaining();
          ASSERT_LE(rem.size(), 1u) << at;
          if (exhausted) {
            EXPECT_TRUE(rem.empty()) << at;
          }
          if (k > 0 && !rem.empty()) {
            // Starts exactly at the first byte of the next unread line.
            const std::uint64_t p = rem[0].begin;
            const bool line_start = std::count(file_starts.begin(), file_starts.end(), p) > 0 ||
                                    all_bytes[p - 1] == '\n';
            EXPECT_TRUE(line_start) << at << " " << RangesText(rem);
            EXPECT_EQ(rem[0].end, ShardRange(all_bytes.size(), s, n).end) << at;
          }
          ShardReader resumed(c.spec, files, rem);
          EXPECT_EQ(resumed.bytes_in_shard(), RangeBytes(rem)) << at;
          Drain(&resumed, &rows, 50);
          EXPECT_TRUE(resumed.Remaining().empty()) << at;
          EXPECT_EQ(resumed.bytes_consumed(), resumed.bytes_in_shard()) << at;
          EXPECT_EQ(Diff(rows, full), "") << at;
        }
        // Rewind restarts at the first range, on a reader built from ranges too.
        ShardReader ranged(c.spec, files, {ShardRange(all_bytes.size(), s, n)});
        RowBlock once, twice;
        ranged.Read(kBatch, &once);
        ranged.Rewind();
        EXPECT_EQ(ranged.bytes_consumed(), 0u);
        EXPECT_EQ(ranged.Remaining(), (std::vector<ByteRange>{ShardRange(all_bytes.size(), s, n)}));
        Drain(&ranged, &twice);
        EXPECT_EQ(Diff(twice, full), "") << where;
      }
    }
  }
}

// Stops each of n1 readers after some batches, splits all their Remaining() ranges among n2
// new readers, stops those too, splits again among n3 and finishes: every row of the files
// must be read exactly once in total.
TEST(ResumeTest, ResumingWithADifferentWorkerCountReadsEveryRowOnce) {
  FMPS_REQUIRE_SHARED_DATA(base, "");
  constexpr std::size_t kBatch = 61;
  for (const ShardCase& c : ResumeCases()) {
    std::vector<std::string> files;
    for (const auto& f : c.files) files.push_back(base + f);
    const RowBlock whole = ReadAll(c.spec, files);
    if (c.rows != 0) {
      ASSERT_EQ(whole.rows(), c.rows) << c.name;
    }
    const std::vector<RowValue> expected = SortedRows(whole);
    // Reads `batches` batches from a reader on `ranges` into *seen; returns Remaining().
    auto partial = [&](const std::vector<ByteRange>& ranges, std::size_t batches, RowBlock* seen) {
      ShardReader reader(c.spec, files, ranges);
      for (std::size_t b = 0; b < batches; ++b) {
        if (reader.Read(kBatch, seen) == 0) break;
      }
      return reader.Remaining();
    };
    for (int n1 = 1; n1 <= 4; ++n1) {
      for (int n2 = 1; n2 <= 5; ++n2) {
        const std::string where = c.name + Num(" n1=", n1) + Num(" n2=", n2);
        RowBlock seen;
        std::vector<ByteRange> remaining;
        for (int s = 0; s < n1; ++s) {
          // Stop points vary: 0, a few batches, or past the end of the shard.
          const std::size_t stop = static_cast<std::size_t>((s * 7 + n2 * 3) % 11) * 3;
          ShardReader reader(c.spec, files, s, n1);
          for (std::size_t b = 0; b < stop; ++b) {
            if (reader.Read(kBatch, &seen) == 0) break;
          }
          for (const ByteRange& r : reader.Remaining()) remaining.push_back(r);
        }
        const auto parts = SplitRanges(remaining, n2);
        ASSERT_EQ(parts.size(), static_cast<std::size_t>(n2)) << where;
        std::vector<ByteRange> remaining2;
        for (int p = 0; p < n2; ++p) {
          const std::size_t stop = static_cast<std::size_t>((p * 5 + n1) % 4) * 2;
          for (const ByteRange& r : partial(parts[static_cast<std::size_t>(p)], stop, &seen)) {
            remaining2.push_back(r);
          }
        }
        const int n3 = 1 + (n1 + n2) % 3;
        for (const auto& part : SplitRanges(remaining2, n3)) {
          ShardReader reader(c.spec, files, part);
          Drain(&reader, &seen);
        }
        ASSERT_EQ(seen.rows(), whole.rows()) << where;
        EXPECT_TRUE(SortedRows(seen) == expected) << where;
      }
    }
  }
}

TEST(ResumeTest, SplitRangesBalancesBytesAndKeepsOrder) {
  using R = std::vector<ByteRange>;
  EXPECT_EQ(SplitRanges({{0, 10}}, 3), (std::vector<R>{{{0, 3}}, {{3, 6}}, {{6, 10}}}));
  EXPECT_EQ(SplitRanges({{0, 4}, {10, 12}, {20, 26}}, 2),
            (std::vector<R>{{{0, 4}, {10, 12}}, {{20, 26}}}));
  EXPECT_EQ(SplitRanges({{5, 7}}, 4), (std::vector<R>{{}, {{5, 6}}, {}, {{6, 7}}}));
  // Touching and empty input ranges are merged / dropped.
  EXPECT_EQ(SplitRanges({{0, 3}, {3, 3}, {3, 6}, {9, 9}}, 1), (std::vector<R>{{{0, 6}}}));
  EXPECT_EQ(SplitRanges({}, 3), (std::vector<R>{{}, {}, {}}));
  EXPECT_THROW(SplitRanges({{0, 5}}, 0), ConfigError);
  EXPECT_THROW(SplitRanges({{4, 8}, {2, 3}}, 2), ConfigError);
  EXPECT_THROW(SplitRanges({{0, 5}, {4, 8}}, 2), ConfigError);
  EXPECT_THROW(SplitRanges({{5, 4}}, 2), ConfigError);

  std::mt19937_64 rng(11);
  for (int iter = 0; iter < 2000; ++iter) {
    R in;
    std::uint64_t pos = rng() % 5;
    const int count = static_cast<int>(rng() % 8);
    for (int i = 0; i < count; ++i) {
      const std::uint64_t len = rng() % 4 == 0 ? 0 : rng() % (iter % 2 ? 1000 : 5);
      in.push_back({pos, pos + len});
      pos += len + (rng() % 3 == 0 ? 0 : rng() % 50);
    }
    // The union, as a list of bytes runs with touching ones merged.
    R merged;
    std::uint64_t total = 0;
    for (const ByteRange& r : in) {
      total += r.end - r.begin;
      if (r.begin == r.end) continue;
      if (!merged.empty() && merged.back().end == r.begin) {
        merged.back().end = r.end;
      } else {
        merged.push_back(r);
      }
    }
    const int n = 1 + static_cast<int>(rng() % 7);
    const auto parts = SplitRanges(in, n);
    ASSERT_EQ(parts.size(), static_cast<std::size_t>(n));
    R flat;
    for (const R& part : parts) {
      const std::uint64_t bytes = RangeBytes(part);
      // Within one byte of equal: floor(total / n) or that plus one.
      EXPECT_GE(bytes * static_cast<std::uint64_t>(n) + static_cast<std::uint64_t>(n), total + 1);
      EXPECT_LE(bytes * static_cast<std::uint64_t>(n), total + static_cast<std::uint64_t>(n) - 1);
      for (std::size_t i = 0; i < part.size(); ++i) {
        EXPECT_LT(part[i].begin, part[i].end);
        if (i > 0) {
          EXPECT_LT(part[i - 1].end, part[i].begin);  // sorted, not touching
        }
      }
      for (const ByteRange& r : part) {
        if (!flat.empty() && flat.back().end == r.begin) {
          flat.back().end = r.end;
        } else {
          flat.push_back(r);
        }
      }
    }
    EXPECT_EQ(flat, merged) << RangesText(in) << Num(" n=", n);  // same bytes, in order
  }
}

TEST(ResumeTest, RangeConstructorValidatesRanges) {
  TempDir dir;
  const std::string a = dir.Write("a.txt", "1 1:1\n0 2:1\n");  // 12 bytes
  const std::string b = dir.Write("b.txt", "1 3:1\n");         // 6 bytes
  EXPECT_EQ(TotalBytes({a, b}), 18u);
  EXPECT_THROW(TotalBytes({dir.File("missing.txt")}), IoError);
  EXPECT_THROW(ShardRange(10, 3, 3), ConfigError);
  EXPECT_THROW(ShardRange(10, 0, 0), ConfigError);
  const FeatureSpec spec = Spec(DataFormat::kLibsvm);
  EXPECT_THROW(ShardReader(spec, {a, b}, {{0, 19}}), ConfigError);
  EXPECT_THROW(ShardReader(spec, {a, b}, {{5, 9}, {8, 12}}), ConfigError);
  EXPECT_THROW(ShardReader(spec, {a, b}, {{9, 5}}), ConfigError);
  EXPECT_THROW(ShardReader(spec, {a, b}, 0, 0), ConfigError);
  // Ranges: only the rows starting in them, across the file boundary, touching ones merged.
  ShardReader r(spec, {a, b}, {{1, 6}, {6, 7}, {7, 7}, {12, 13}});
  EXPECT_EQ(r.bytes_in_shard(), 7u);
  EXPECT_EQ(r.Remaining(), (std::vector<ByteRange>{{1, 7}, {12, 13}}));
  RowBlock block;
  ASSERT_EQ(r.Read(1, &block), 1u);  // "0 2:1" at offset 6
  EXPECT_EQ(r.Remaining(), (std::vector<ByteRange>{{12, 13}}));
  EXPECT_EQ(r.bytes_consumed(), 6u);
  ASSERT_EQ(r.Read(5, &block), 1u);  // "1 3:1" at offset 12 (the start of b.txt)
  EXPECT_EQ(r.Read(5, &block), 0u);
  EXPECT_EQ(block.labels, (std::vector<float>{0, 1}));
  EXPECT_TRUE(r.Remaining().empty());
  EXPECT_EQ(r.bytes_consumed(), 7u);
  // No ranges: nothing.
  ShardReader none(spec, {a, b}, std::vector<ByteRange>{});
  EXPECT_EQ(none.Read(5, &block), 0u);
  EXPECT_EQ(none.bytes_in_shard(), 0u);
}

// Bad rows at known lines (BOM, CRLF and LF, blank lines); readers built from mid-file
// ranges, several per reader within one file, and readers resumed from Remaining() must all
// report exact line numbers.
// The 3000-line libsvm file of the test below, written as `path`: the expected bad-row
// messages and the byte offset where each line starts.
struct LinesFile {
  std::set<std::string> expected;
  std::vector<std::uint64_t> line_start = {0, 0};  // 1-based: line_start[i]
};
LinesFile WriteLinesFile(TempDir* dir, const std::string& path) {
  const std::set<int> bad_lines = {2, 333, 334, 1500, 2999, 3000};
  LinesFile out;
  std::string text = "\xEF\xBB\xBF";
  for (int i = 1; i <= 3000; ++i) {
    if (i > 1) out.line_start.push_back(text.size());
    std::string line;
    if (bad_lines.count(i)) {
      line = Num("", i) + " 1:1";
      out.expected.insert(path + Num(":", i) + Num(": label '", i) +
                          "' is not 0/1 or -1/+1 for logistic loss");
    } else if (i % 97 == 0) {
      line = "";
    } else {
      line = Num("1 ", i) + ":1";
    }
    text += line;
    if (i < 3000) text += (i % 2 == 0 ? "\r\n" : "\n");
  }
  dir->Write("lines.txt", text);
  return out;
}

TEST(ResumeTest, RangesStartingMidFileReportExactLineNumbers) {
  TempDir dir;
  const std::string path = dir.File("lines.txt");
  LinesFile lines = WriteLinesFile(&dir, path);
  std::set<std::string>& expected = lines.expected;
  const std::vector<std::uint64_t>& line_start = lines.line_start;
  const std::string second = dir.Write("second.txt", "1 1:1\n\n9 1:1\n");
  const std::vector<std::string> files = {path, second};
  const std::uint64_t total = TotalBytes(files);
  const std::string second_bad = second + ":3: label '9' is not 0/1 or -1/+1 for logistic loss";
  expected.insert(second_bad);
  const FeatureSpec skip = Spec(DataFormat::kLibsvm);
  FeatureSpec fail = skip;
  fail.data.on_error = OnError::kFail;

  // A single range starting mid-line, just before line 1500.
  {
    ShardReader reader(fail, files, {{line_start[1499] + 3, line_start[1501] + 1}});
    RowBlock block;
    try {
      Drain(&reader, &block);
      FAIL() << "no DataError";
    } catch (const DataError& e) {
      EXPECT_EQ(std::string(e.what()), path +
                                           ":1500: label '1500' is not 0/1 or -1/+1 for "
                                           "logistic loss");
    }
  }

  // Cut [0, total) into 40 random pieces; reader r of 3 gets pieces r, r+3, ... (many
  // ranges per file); also split each reader's pieces after a partial read (resume).
  std::mt19937_64 rng(5);
  for (int iter = 0; iter < 20; ++iter) {
    std::vector<std::uint64_t> cuts = {0, total};
    for (int i = 0; i < 39; ++i) cuts.push_back(rng() % total);
    std::sort(cuts.begin(), cuts.end());
    std::vector<std::vector<ByteRange>> readers(3);
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
      readers[i % 3].push_back({cuts[i], cuts[i + 1]});
    }
    std::set<std::string> got;
    std::size_t reported = 0;
    for (const auto& ranges : readers) {
      // Skip mode: all bad rows of these ranges, reading in small batches and resuming
      // from Remaining() halfway.
      ShardReader first(skip, files, ranges);
      RowBlock block;
      for (int b = 0; b < 5 && first.Read(37, &block) > 0; ++b) {
      }
      std::vector<std::string> messages = first.bad_rows().first;
      ShardReader rest(skip, files, first.Remaining());
      Drain(&rest, &block, 37);
      messages.insert(messages.end(), rest.bad_rows().first.begin(), rest.bad_rows().first.end());
      ASSERT_EQ(first.bad_rows().count + rest.bad_rows().count, messages.size());
      reported += messages.size();
      got.insert(messages.begin(), messages.end());
      // Fail mode: the first bad row of these ranges.
      ShardReader failing(fail, files, ranges);
      std::string thrown;
      try {
        Drain(&failing, &block, 64);
      } catch (const DataError& e) {
        thrown = e.what();
      }
      EXPECT_EQ(thrown, messages.empty() ? "" : messages[0]) << Num("iter=", iter);
    }
    EXPECT_EQ(reported, expected.size()) << Num("iter=", iter);
    EXPECT_EQ(got, expected) << Num("iter=", iter);
  }
}

}  // namespace
}  // namespace fmps
