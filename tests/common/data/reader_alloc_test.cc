// Readers make no allocation per row once their buffers and the block have grown.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "common/data/reader.h"
#include "tests/common/data/reader_test_util.h"

// ---- Allocation counting: global operator new/delete replaced for this test binary. ----
namespace {
std::atomic<bool> g_counting{false};
std::atomic<std::size_t> g_allocations{0};
std::vector<int>* volatile g_sink = nullptr;

void* CountedAlloc(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* CountedAlignedAlloc(std::size_t n, std::align_val_t al) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  const auto a = static_cast<std::size_t>(al);
  void* p = std::aligned_alloc(a, (n + a - 1) / a * a);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) { return CountedAlloc(n); }
void* operator new[](std::size_t n) { return CountedAlloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return CountedAlloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return CountedAlloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t al) { return CountedAlignedAlloc(n, al); }
void* operator new[](std::size_t n, std::align_val_t al) { return CountedAlignedAlloc(n, al); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace fmps {
namespace {

using namespace ::fmps::reader_testing;  // NOLINT: the shared helpers

// ---- No allocation per row ----

void ExpectNoAllocationsOnSecondPass(const std::string& name, const FeatureSpec& spec,
                                     const std::vector<std::string>& files) {
  ShardReader reader(spec, files, 0, 1);
  RowBlock block;
  std::vector<ByteRange> remaining;  // as the prefetcher asks after every batch
  std::size_t rows1 = 0;
  while (true) {  // warm-up pass, in batches
    block.Clear();
    const std::size_t n = reader.Read(256, &block);
    reader.Remaining(&remaining);
    if (n == 0) break;
    rows1 += n;
  }
  reader.Rewind();
  reader.Remaining(&remaining);
  std::size_t rows2 = 0;
  g_allocations = 0;
  while (true) {
    block.Clear();
    g_counting = true;
    const std::size_t n = reader.Read(256, &block);
    reader.Remaining(&remaining);
    g_counting = false;
    if (n == 0) break;
    rows2 += n;
  }
  EXPECT_EQ(g_allocations.load(), 0u) << name;
  EXPECT_EQ(rows1, rows2) << name;
  EXPECT_GT(rows2, 0u) << name;
}

TEST(ReaderTest, NoAllocationPerRow) {
  // The counter itself works.
  g_allocations = 0;
  g_counting = true;
  g_sink = new std::vector<int>(100);
  g_counting = false;
  delete g_sink;
  ASSERT_GE(g_allocations.load(), 2u);

  TempDir dir;
  // Synthetic files in every format, each with more than 5 bad rows (reported ones are
  // stored during the warm-up; later ones must be counted without allocating).
  std::string svm, ffm, criteo, csv = "id,y,n,a,b\n";
  for (int i = 0; i < 3000; ++i) {
    const bool bad = i % 400 == 7;
    svm += (bad ? "7" : std::to_string(i % 2)) + " " + std::to_string(i) + ":0.5 " +
           std::to_string(i * 7) + ":1.25e-3 " + std::string(i % 50, ' ') + "9:1\n";
    ffm += (bad ? "1 1:x:1" : "1 1:" + std::to_string(i) + ":0.3651") + " 2:3:1\n";
    criteo.append(bad ? "x" : "0").append(Num("\t", i)).append("\t\t260.0");
    criteo.append("\t\t\t\t\t\t\t\t\t\t").append(Num("\tabc", i)).append("\t68fd1e64\n");
    csv += std::to_string(i) + "," + (bad ? "" : "1") + "," + std::to_string(i * 3) + ".5," +
           "\"q,\"\"" + std::to_string(i) + "\"\"\",v" + std::to_string(i % 13) + "\r\n";
  }
  const std::string longline = "1 " + std::string(3'000'000, ' ') + "5:1\n";
  ExpectNoAllocationsOnSecondPass("libsvm", Spec(DataFormat::kLibsvm, 20),
                                  {dir.Write("a.svm", svm), dir.Write("l.svm", longline)});
  ExpectNoAllocationsOnSecondPass("libffm", Spec(DataFormat::kLibffm), {dir.Write("a.ffm", ffm)});
  ExpectNoAllocationsOnSecondPass("criteo", Spec(DataFormat::kCriteo),
                                  {dir.Write("a.tsv", criteo)});
  for (auto t : {NumericTransform::kStandardize, NumericTransform::kLogBucket}) {
    FeatureSpec spec = CsvSpec3(t);
    spec.numeric_stats = {{"n", 1.0, 2.0}};
    ExpectNoAllocationsOnSecondPass("csv", spec,
                                    {dir.Write("a.csv", csv), dir.Write("b.csv", csv)});
  }
  const std::string base = ::fmps::testing::SharedData("");
  if (!base.empty()) {
    ExpectNoAllocationsOnSecondPass("a9a", Spec(DataFormat::kLibsvm), {base + "a9a/a9a"});
    ExpectNoAllocationsOnSecondPass("guestwalk", CriteoCsvSpec("Label", true),
                                    {base + "guestwalk_criteo_tiny/train.tiny.csv"});
    ExpectNoAllocationsOnSecondPass("movielens", ShardCases().back().spec,
                                    {base + "deepctr_samples/movielens_sample.txt"});
  }
}

}  // namespace
}  // namespace fmps
