// fmps micro-benchmarks (Google Benchmark). Run through tests/bench/run.sh, which parses
// the JSON output; can also be run by hand:
//   build/tests/bench/fmps_bench [--benchmark_filter=REGEX] [--benchmark_repetitions=3]
//
// Cases (items = rows for FM and readers, keys for the store):
//   BM_FmCache/k        ModelKernel::ForwardBackward (FM), 1024-row batches of 39 nnz, 4096-row
//   table (in cache) BM_FmBig/k          same, local indices uniform over a 10^7-row table (huge
//   pages); both renumber each batch's ids in first-occurrence order, as in training (the
//   kernel zeroes the gradient rows it uses: FmBig's batches use about 40k rows of the table)
//   BM_StorePull/BM_StorePush  ParamStore, 10^6 keys, k = 8, adagrad, 8192 unique keys per call
//   BM_StorePushRows    the trainer's push: by the row handles its pull returned
//   BM_StorePullK16/BM_StorePushRowsK16  the same two at k = 16 (capacity model's k)
//   BM_MemFloorRead/Write  random 80-byte rows of a 10^6-row huge-page arena, read / updated
//                       with the store's prefetching: the memory floor under Pull / Push
//   BM_StoreBytes/opt   MemoryBytes()/key of a 10^6-key store, k = 8; counters bytes_per_key,
//                       raw_bytes_per_key (8-byte key + (1+k)(1+S) floats) and ratio
//   BM_StoreBytesK16/opt  the same at k = 16 (adagrad)
//   BM_Parse/fmt        ShardReader over a fmps::Synthesize file (libsvm, criteo), MB/s, rows/s
//   BM_Dedup            PreparedBatch::Deduplicate of its 1024-row batches (items = non-zeros)
//   BM_ServerReplay/load  the server side of async training on the 1024-row batches of
//                       $FMPS_BENCH_TRAIN (else the libsvm file): Pull keeping row handles +
//                       PushRows (adagrad, k = 8), one thread (items = unique keys); load:1
//                       with the prefetch thread's parse + dedup running on another thread
//                       (counter first_pass_ns_per_key: the pass that creates the keys)
// The reader files are generated once per process in a temp dir, removed at exit.
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/base/types.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "common/data/row_block.h"
#include "common/data/synth.h"
#include "common/model/model_kernel.h"
#include "server/store/optimizer.h"
#include "server/store/param_store.h"
#include "tests/bench/bench_batches.h"
#include "worker/batch_prefetcher.h"
#include "worker/worker.h"

namespace fmps {
namespace {

constexpr std::size_t kBatchRows = 1024;
constexpr std::size_t kNnzPerRow = 39;
constexpr std::size_t kNumBatches = 16;  // distinct batches cycled through

// Anonymous mapping with transparent huge pages requested (as the server's arenas do).
class BigBuffer {
 public:
  BigBuffer() = default;
  explicit BigBuffer(std::size_t floats) : bytes_(floats * sizeof(float)) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    madvise(p, bytes_, MADV_HUGEPAGE);
    data_ = static_cast<float*>(p);
  }
  ~BigBuffer() {
    if (data_ != nullptr) munmap(data_, bytes_);
  }
  BigBuffer(BigBuffer&& o) noexcept : data_(o.data_), bytes_(o.bytes_) { o.data_ = nullptr; }
  BigBuffer& operator=(BigBuffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  float* get() const { return data_; }

 private:
  float* data_ = nullptr;
  std::size_t bytes_ = 0;
};

struct FmFixture {
  int k = 0;
  std::size_t table_rows = 0;
  BigBuffer params, grads;
  std::vector<float> labels, values;
  std::vector<std::size_t> offsets;
  std::vector<std::vector<std::uint32_t>> local;  // one per batch
};

// Keeps one fixture alive at a time (the 10^7-row table at k = 32 is 2 x 1.3 GB).
FmFixture& GetFm(int k, std::size_t table_rows) {
  static std::unique_ptr<FmFixture> fx;
  if (fx && fx->k == k && fx->table_rows == table_rows) return *fx;
  fx.reset();
  fx = std::make_unique<FmFixture>();
  fx->k = k;
  fx->table_rows = table_rows;
  const std::size_t width = static_cast<std::size_t>(FmShape(k).row_width());
  fx->params = BigBuffer(table_rows * width);
  fx->grads = BigBuffer(table_rows * width);
  std::mt19937_64 rng(42);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  float* p = fx->params.get();
  for (std::size_t i = 0; i < table_rows * width; ++i) p[i] = normal(rng);
  std::memset(fx->grads.get(), 0, table_rows * width * sizeof(float));
  std::bernoulli_distribution pos(0.25);
  for (std::size_t r = 0; r < kBatchRows; ++r) fx->labels.push_back(pos(rng) ? 1.0f : 0.0f);
  for (std::size_t r = 0; r <= kBatchRows; ++r) fx->offsets.push_back(r * kNnzPerRow);
  fx->values.assign(kBatchRows * kNnzPerRow, 1.0f);
  std::uniform_int_distribution<std::uint32_t> idx(1, static_cast<std::uint32_t>(table_rows - 1));
  fx->local.resize(kNumBatches);
  for (auto& b : fx->local) {
    b.resize(kBatchRows * kNnzPerRow);
    for (auto& u : b) u = idx(rng);
    bench::NumberInFirstOccurrenceOrder(&b);
  }
  return *fx;
}

void RunFm(benchmark::State& state, std::size_t table_rows) {
  const int k = static_cast<int>(state.range(0));
  FmFixture& fx = GetFm(k, table_rows);
  std::vector<float> scores(kBatchRows);
  const std::unique_ptr<ModelKernel> kernel = MakeKernel(FmShape(k), Loss::kLogistic);
  std::size_t b = 0;
  for (auto _ : state) {
    ModelBatch batch{kBatchRows, fx.labels.data(), fx.offsets.data(), fx.local[b].data(),
                     fx.values.data()};
    double loss = kernel->ForwardBackward(batch, fx.params.get(), fx.grads.get(), scores.data());
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
    b = (b + 1) % kNumBatches;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatchRows));
  state.counters["table_rows"] = static_cast<double>(table_rows);
}

void BM_FmCache(benchmark::State& state) { RunFm(state, 4096); }
void BM_FmBig(benchmark::State& state) { RunFm(state, 10'000'000); }
BENCHMARK(BM_FmCache)->Arg(4)->Arg(8)->Arg(16)->Arg(32);
BENCHMARK(BM_FmBig)->Arg(4)->Arg(8)->Arg(16)->Arg(32);

// ---- ParamStore ---------------------------------------------------------------------------

constexpr std::size_t kStoreKeys = 1'000'000;
constexpr std::size_t kCallKeys = 8192;

std::unique_ptr<Optimizer> MakeOpt(OptimizerName name) {
  OptimizerConfig c;
  c.name = name;
  return MakeOptimizer(c);
}

std::vector<Key> RandomKeys(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Key> keys(n);
  for (auto& key : keys) {
    do key = rng();
    while (key == kBiasKey);
  }
  return keys;
}

// A filled store: every key pushed once (created), plus call-sized permutations of the keys.
struct StoreFixture {
  std::unique_ptr<ParamStore> store;
  std::vector<Key> keys;
  std::vector<std::vector<Key>> calls;  // unique keys within each call
  std::vector<float> grads, out;
};

void Fill(ParamStore* store, const std::vector<Key>& keys) {
  const std::size_t w = static_cast<std::size_t>(store->row_width());
  std::vector<float> g(kCallKeys * w, 0.001f);
  for (std::size_t i = 0; i < keys.size(); i += kCallKeys) {
    const std::size_t n = std::min(kCallKeys, keys.size() - i);
    store->Push(keys.data() + i, n, g.data(), nullptr);
  }
}

// Keeps one store alive at a time (k = 8 or 16).
StoreFixture& GetStore(int k = 8) {
  static std::unique_ptr<StoreFixture> fx;
  if (fx && fx->store->shape().k == k) return *fx;
  fx.reset();
  fx = std::make_unique<StoreFixture>();
  StoreOptions o;
  o.shape = FmShape(k);
  fx->store = std::make_unique<ParamStore>(o, MakeOpt(OptimizerName::kAdagrad));
  fx->keys = RandomKeys(kStoreKeys, 7);
  Fill(fx->store.get(), fx->keys);
  std::vector<Key> perm = fx->keys;
  std::mt19937_64 rng(9);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (std::size_t i = 0; i + kCallKeys <= perm.size(); i += kCallKeys) {
    fx->calls.emplace_back(perm.begin() + static_cast<std::ptrdiff_t>(i),
                           perm.begin() + static_cast<std::ptrdiff_t>(i + kCallKeys));
  }
  const std::size_t w = static_cast<std::size_t>(fx->store->row_width());
  std::normal_distribution<float> normal(0.0f, 0.01f);
  fx->grads.resize(kCallKeys * w);
  for (auto& g : fx->grads) g = normal(rng);
  fx->out.resize(kCallKeys * w);
  return *fx;
}

void StorePull(benchmark::State& state, int k) {
  StoreFixture& fx = GetStore(k);
  std::size_t c = 0;
  for (auto _ : state) {
    fx.store->Pull(fx.calls[c].data(), kCallKeys, true, fx.out.data());
    benchmark::ClobberMemory();
    c = (c + 1) % fx.calls.size();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kCallKeys));
  state.counters["store_keys"] = static_cast<double>(fx.store->size());
}
void BM_StorePull(benchmark::State& state) { StorePull(state, 8); }
void BM_StorePullK16(benchmark::State& state) { StorePull(state, 16); }

void BM_StorePush(benchmark::State& state) {
  StoreFixture& fx = GetStore();
  std::size_t c = 0;
  for (auto _ : state) {
    fx.store->Push(fx.calls[c].data(), kCallKeys, fx.grads.data(), nullptr);
    benchmark::ClobberMemory();
    c = (c + 1) % fx.calls.size();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kCallKeys));
  state.counters["store_keys"] = static_cast<double>(fx.store->size());
}

// The trainer's push: by the row handles of the pull of the same keys (no lookups).
void StorePushRows(benchmark::State& state, int k) {
  StoreFixture& fx = GetStore(k);
  std::vector<std::vector<ParamStore::RowHandle>> rows(fx.calls.size());
  for (std::size_t c = 0; c < fx.calls.size(); ++c) {
    rows[c].resize(kCallKeys);
    fx.store->Pull(fx.calls[c].data(), kCallKeys, true, fx.out.data(), rows[c].data());
  }
  std::size_t c = 0;
  for (auto _ : state) {
    fx.store->PushRows(rows[c].data(), kCallKeys, fx.grads.data(), nullptr);
    benchmark::ClobberMemory();
    c = (c + 1) % fx.calls.size();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kCallKeys));
}
void BM_StorePushRows(benchmark::State& state) { StorePushRows(state, 8); }
void BM_StorePushRowsK16(benchmark::State& state) { StorePushRows(state, 16); }

// The memory floor under the store: the same number of rows of the same stride (adagrad,
// k = 8: 80 bytes) in huge pages, visited in a random order with the same prefetch distance,
// read (pull: the first 44 bytes) or read-modified-written (push: all 80 bytes). What a
// lookup-free store could at best do on this machine.
template <bool kWrite>
void BM_MemFloor(benchmark::State& state) {
  constexpr std::size_t kStride = 80, kAhead = 16;
  const std::size_t bytes = kStoreKeys * kStride;
  void* mem = nullptr;
  if (posix_memalign(&mem, std::size_t{2} << 20, bytes) != 0) std::abort();
  madvise(mem, bytes, MADV_HUGEPAGE);
  std::memset(mem, 1, bytes);
  char* base = static_cast<char*>(mem);
  std::vector<std::uint32_t> order(kStoreKeys);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(3));
  std::size_t pos = 0;
  float sink = 0.0f;
  for (auto _ : state) {
    const std::uint32_t* idx = &order[pos];
    for (std::size_t j = 0; j < kCallKeys; ++j) {
      if (j + kAhead < kCallKeys) {
        char* p = base + std::size_t{idx[j + kAhead]} * kStride;
        __builtin_prefetch(p, kWrite ? 1 : 0);
        __builtin_prefetch(p + kStride - 1, kWrite ? 1 : 0);
      }
      float* row = reinterpret_cast<float*>(base + std::size_t{idx[j]} * kStride);
      if (kWrite) {
        for (std::size_t f = 2; f < kStride / 4; ++f) row[f] += 1.0f;
      } else {
        for (std::size_t f = 2; f < 11; ++f) sink += row[f];
      }
    }
    benchmark::ClobberMemory();
    pos = (pos + kCallKeys) % (kStoreKeys - kCallKeys);
  }
  benchmark::DoNotOptimize(sink);
  free(mem);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kCallKeys));
}

BENCHMARK(BM_StorePull);
BENCHMARK(BM_StorePush);
BENCHMARK(BM_StorePushRows);
BENCHMARK(BM_MemFloor<false>)->Name("BM_MemFloorRead");
BENCHMARK(BM_MemFloor<true>)->Name("BM_MemFloorWrite");
BENCHMARK(BM_StorePullK16);
BENCHMARK(BM_StorePushRowsK16);

// Memory per key after creating 10^6 keys, per optimizer (range: OptimizerName).
void StoreBytes(benchmark::State& state, int k) {
  const auto name = static_cast<OptimizerName>(state.range(0));
  const std::vector<Key> keys = RandomKeys(kStoreKeys, 11);
  double bytes_per_key = 0, raw = 0;
  for (auto _ : state) {
    StoreOptions o;
    o.shape = FmShape(k);
    auto opt = MakeOpt(name);
    const int s = opt->state_floats();
    ParamStore store(o, std::move(opt));
    Fill(&store, keys);
    bytes_per_key = static_cast<double>(store.MemoryBytes()) / static_cast<double>(store.size());
    raw = 8.0 + 4.0 * o.shape.row_width() * (1 + s);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kStoreKeys));
  state.counters["bytes_per_key"] = bytes_per_key;
  state.counters["raw_bytes_per_key"] = raw;
  state.counters["ratio"] = bytes_per_key / raw;
}
void BM_StoreBytes(benchmark::State& state) { StoreBytes(state, 8); }
void BM_StoreBytesK16(benchmark::State& state) { StoreBytes(state, 16); }
BENCHMARK(BM_StoreBytes)
    ->ArgName("opt")
    ->Arg(static_cast<int>(OptimizerName::kSgd))
    ->Arg(static_cast<int>(OptimizerName::kAdagrad))
    ->Arg(static_cast<int>(OptimizerName::kAdam))
    ->Arg(static_cast<int>(OptimizerName::kFtrl))
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_StoreBytesK16)
    ->ArgName("opt")
    ->Arg(static_cast<int>(OptimizerName::kAdagrad))
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// ---- Readers ------------------------------------------------------------------------------

std::filesystem::path& TempDir() {
  static std::filesystem::path dir;
  return dir;
}

// Generates (once) a Synthesize file of the given format; returns its path.
std::string DataFile(DataFormat format) {
  static std::string paths[4];
  std::string& path = paths[static_cast<int>(format)];
  if (!path.empty()) return path;
  if (TempDir().empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fmps_bench_XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    TempDir() = tmpl;
  }
  SynthOptions o;
  o.out_dir = (TempDir() / std::to_string(static_cast<int>(format))).string();
  o.rows = 200000;
  o.test_rows = 10;
  o.vocab = 1000000;
  o.format = format;
  path = Synthesize(o).train_path;
  return path;
}

// The spec of a DataFile of `format` (the file is its only training file).
FeatureSpec SpecOf(DataFormat format, const std::string& path) {
  FeatureSpec spec;
  spec.data.format = format;
  spec.data.train = {path};
  return spec;
}

void BM_Parse(benchmark::State& state) {
  const auto format = static_cast<DataFormat>(state.range(0));
  const std::string path = DataFile(format);
  const FeatureSpec spec = SpecOf(format, path);
  const std::uint64_t bytes = TotalBytes({path});
  RowBlock block;
  std::uint64_t rows = 0;
  for (auto _ : state) {
    ShardReader reader(spec, {path}, 0, 1);
    std::size_t n;
    while (true) {
      block.Clear();
      n = reader.Read(kBatchRows, &block);
      if (n == 0) break;
      rows += n;
    }
    benchmark::DoNotOptimize(block.keys.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(rows));
  state.counters["file_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Parse)
    ->ArgName("fmt")
    ->Arg(static_cast<int>(DataFormat::kLibsvm))
    ->Arg(static_cast<int>(DataFormat::kCriteo))
    ->Unit(benchmark::kMillisecond);

// Minibatch deduplication on the prefetch thread (PreparedBatch::Deduplicate): 1024-row
// batches of the libsvm file, cycled through a pool of batches as the prefetcher does.
void BM_Dedup(benchmark::State& state) {
  const std::string path = DataFile(DataFormat::kLibsvm);
  ShardReader reader(SpecOf(DataFormat::kLibsvm, path), {path}, 0, 1);
  constexpr std::size_t kPool = 5;  // the prefetcher's pool at its default depth
  std::vector<PreparedBatch> batches(kPool);
  for (auto& b : batches) {
    if (reader.Read(kBatchRows, &b.block) == 0) std::abort();
  }
  KeyIndex index;
  std::size_t i = 0, nnz = 0, unique = 0;
  for (auto _ : state) {
    PreparedBatch& b = batches[i];
    b.Deduplicate(&index, /*count=*/false);  // as the trainer does unless min_count > 1
    nnz += b.block.nnz();
    unique += b.keys.size();
    i = (i + 1) % kPool;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(nnz));
  state.counters["unique_per_batch"] =
      static_cast<double>(unique) / static_cast<double>(state.iterations());
  std::size_t rows = 0, pool_nnz = 0;
  for (const auto& b : batches) {
    rows += b.block.rows();
    pool_nnz += b.block.nnz();
  }
  state.counters["nnz_per_row"] = static_cast<double>(pool_nnz) / static_cast<double>(rows);
}
BENCHMARK(BM_Dedup);

// Issue 15's per-row and per-key costs (tests/bench/README.md, "Issue 15 throughput A/B"):
// reading the libsvm file with data.normalize none (0) or instance (1), and key_mean's
// DivideByCounts over one 1024-row batch's counted keys (k 8: rows of 9 floats).
void BM_ParseNormalize(benchmark::State& state) {
  const std::string path = DataFile(DataFormat::kLibsvm);
  FeatureSpec spec = SpecOf(DataFormat::kLibsvm, path);
  spec.data.normalize = state.range(0) != 0 ? Normalize::kInstance : Normalize::kNone;
  RowBlock block;
  std::uint64_t rows = 0;
  for (auto _ : state) {
    ShardReader reader(spec, {path}, 0, 1);
    while (true) {
      block.Clear();
      const std::size_t n = reader.Read(kBatchRows, &block);
      if (n == 0) break;
      rows += n;
    }
    benchmark::DoNotOptimize(block.values.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(rows));
}
BENCHMARK(BM_ParseNormalize)->ArgName("normalize")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_DivideByCounts(benchmark::State& state) {
  const std::string path = DataFile(DataFormat::kLibsvm);
  ShardReader reader(SpecOf(DataFormat::kLibsvm, path), {path}, 0, 1);
  PreparedBatch b;
  if (reader.Read(kBatchRows, &b.block) == 0) std::abort();
  KeyIndex index;
  b.Deduplicate(&index, /*count=*/true);
  constexpr int kWidth = 9;
  std::vector<float> grads(b.keys.size() * kWidth, 1.5f);
  for (auto _ : state) {
    DivideByCounts(b.counts, kWidth, grads.data());
    benchmark::DoNotOptimize(grads.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * b.keys.size()));
}
BENCHMARK(BM_DivideByCounts);

// The training file the server replay uses: $FMPS_BENCH_TRAIN (run.sh passes the
// end-to-end cases' file, so that the store has their 10^6 keys), else the libsvm DataFile.
std::string ReplayFile() {
  const char* env = std::getenv("FMPS_BENCH_TRAIN");
  return env != nullptr && *env != '\0' ? std::string(env) : DataFile(DataFormat::kLibsvm);
}

// The prefetch thread's work over the libsvm file `path`: reads its 1024-row batches and
// deduplicates each (as the trainer does unless min_count > 1), calling fn(batch) after
// each until the file ends or fn returns false. Returns whether the file ended.
template <class Fn>
bool ForEachPreparedBatch(const std::string& path, KeyIndex* index, Fn&& fn) {
  ShardReader reader(SpecOf(DataFormat::kLibsvm, path), {path}, 0, 1);
  for (PreparedBatch b; reader.Read(kBatchRows, &b.block) > 0; b.block.Clear()) {
    b.Deduplicate(index, /*count=*/false);
    if (!fn(b)) return false;
  }
  return true;
}

// The prefetch thread's work over `path`, again and again until *stop: the load the worker
// side puts on the other core in single-node training.
void PrefetchLoad(const std::string& path, const std::atomic<bool>* stop) {
  KeyIndex index;
  auto go_on = [&](const PreparedBatch&) { return !stop->load(std::memory_order_relaxed); };
  while (ForEachPreparedBatch(path, &index, go_on)) continue;  // the file ended: read it again
}

// The server's share of single-node training, replayed on one thread: each 1024-row batch
// of ReplayFile() (deduplicated as the worker does) is pulled with row handles kept, then
// pushed by those handles after the next batch's pull, as Server does for an async worker
// (each key's pull and push are a batch apart, as in training). Items = unique keys; the
// counter keys_per_row converts ns/key into server ns per training row. The first pass over
// the file creates the keys (counter first_pass_ns_per_key: wall time of that pass); the
// timing covers later passes (a trained store). Arg load:1 runs PrefetchLoad on another
// thread through both, as the worker's prefetch thread runs beside the server thread in
// single-node training: the server's cost per key once it shares the caches and the memory
// system (its first pass is the closest replay of an epoch-1 server thread in situ).
void BM_ServerReplay(benchmark::State& state) {
  const std::string path = ReplayFile();
  // The batches' keys, read once per process (10^6-key files take seconds to read).
  static std::vector<std::vector<Key>> batches;
  static std::size_t rows = 0;
  if (batches.empty()) {
    KeyIndex index;
    ForEachPreparedBatch(path, &index, [&](const PreparedBatch& b) {
      batches.push_back(b.keys);
      rows += b.block.rows();
      return true;
    });
  }
  std::size_t unique = 0;  // keys over all batches: one pass's pulls and pushes
  for (const auto& keys : batches) unique += keys.size();
  StoreOptions o;
  o.shape = FmShape(8);
  ParamStore store(o, MakeOpt(OptimizerName::kAdagrad));
  const std::size_t w = static_cast<std::size_t>(store.row_width());
  std::vector<float> out, grads;
  std::vector<ParamStore::RowHandle> handles[2];  // the last two pulls'
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  // In the order the server sees them in async training (Worker::TrainAsync pulls the next
  // batch before it pushes the current one): batch i's pull, then the previous pull's push.
  int slot = 0;          // handles[slot] receives the next pull's
  bool pending = false;  // whether handles[1 - slot] awaits its push
  auto run = [&](std::size_t i) {
    const std::vector<Key>& keys = batches[i];
    out.resize(keys.size() * w);
    handles[slot].resize(keys.size());
    store.Pull(keys.data(), keys.size(), true, out.data(), handles[slot].data());
    if (pending) {
      const auto& h = handles[1 - slot];
      store.PushRows(h.data(), h.size(), grads.data(), nullptr);
    }
    pending = true;
    slot = 1 - slot;
  };
  std::size_t most = 0;
  for (const auto& keys : batches) most = std::max(most, keys.size());
  grads.resize(most * w);
  for (auto& g : grads) g = normal(rng);
  // The load (load:1) runs from before the first pass, so that both figures are taken
  // beside it.
  std::atomic<bool> stop{false};
  std::thread load;
  if (state.range(0) != 0) load = std::thread(PrefetchLoad, path, &stop);
  // The first pass creates the keys, as a first epoch does; its cost per key is reported
  // as the counter first_pass_ns_per_key (the timed passes below run on a trained store).
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < batches.size(); ++i) run(i);
  const double first_ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  std::size_t i = 0, keys_done = 0;
  for (auto _ : state) {
    run(i);
    keys_done += batches[i].size();
    i = (i + 1) % batches.size();
  }
  stop = true;
  if (load.joinable()) load.join();
  state.SetItemsProcessed(static_cast<std::int64_t>(keys_done));
  state.counters["keys_per_row"] = static_cast<double>(unique) / static_cast<double>(rows);
  state.counters["store_keys"] = static_cast<double>(store.size());
  state.counters["first_pass_ns_per_key"] = first_ns / static_cast<double>(unique);
}
BENCHMARK(BM_ServerReplay)->ArgName("load")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace fmps

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!fmps::TempDir().empty()) {
    std::error_code ec;
    std::filesystem::remove_all(fmps::TempDir(), ec);
  }
  return 0;
}
