// FFM micro-benchmarks (issue 17), linked into fmps_bench beside fmps_bench.cc's cases:
//   BM_FfmCache/k     ModelKernel::ForwardBackward (FFM, 39 fields, field j = column j),
//                     1024-row batches of 39 non-zeros over a 512-row table (k = 8: 0.6 MB,
//                     in the core's cache); items = rows
//   BM_FfmBatch/k     the same over a 16384-row table (k = 8: 20 MB), about the unique keys
//                     of a training batch: the rows' parameters come from memory
//                     Both: local ids in first-occurrence order, as in training; the kernel
//                     zeroes the gradient rows (no longer the fixture, once).
//   BM_FfmShared/k    the job's conditions: 28 % of a batch's non-zeros are keys new to it, the
//                     rest drawn from 2000 keys (about 13k unique keys, k = 8: a 16 MB
//                     table), and before each batch (not timed) another thread, on the other
//                     processor where there is one, writes the parameter table (as the pull
//                     copies it) and reads the gradient table (as the push does)
//   BM_MemBandwidth   memcpy between two 256 MB buffers; bytes_per_second counts the bytes
//                     read plus written: the memory bandwidth the FFM limit is computed with
//   BM_StoreWidePull / BM_StoreWidePushRows  ParamStore with FFM rows (39 fields, k = 8,
//                     adagrad: 2.5 kB a row), 3 * 10^5 keys (0.8 GB), Pull (creating) and
//                     PushRows of 8192 unique keys per call; items = keys
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "common/model/model_kernel.h"
#include "server/store/optimizer.h"
#include "server/store/param_store.h"
#include "tests/bench/bench_batches.h"

namespace fmps {
namespace {

constexpr std::size_t kFfmRows = 1024;
constexpr int kFfmFields = 39;
constexpr std::size_t kFfmBatches = 8;

struct FfmFixture {
  ModelShape shape;
  std::size_t table_rows = 0;
  std::vector<float> params, grads, labels, values;
  std::vector<std::size_t> offsets;
  std::vector<std::uint32_t> fields;
  std::vector<std::vector<std::uint32_t>> local;  // one per batch
};

FfmFixture MakeFfm(int k, std::size_t table_rows) {
  FfmFixture fx;
  fx.shape = FfmShape(k, kFfmFields);
  fx.table_rows = table_rows;
  const std::size_t width = static_cast<std::size_t>(fx.shape.row_width());
  std::mt19937_64 rng(42);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  fx.params.resize(table_rows * width);
  for (float& p : fx.params) p = normal(rng);
  fx.grads.assign(fx.params.size(), 0.0f);
  std::bernoulli_distribution pos(0.25);
  for (std::size_t r = 0; r < kFfmRows; ++r) fx.labels.push_back(pos(rng) ? 1.0f : 0.0f);
  for (std::size_t r = 0; r <= kFfmRows; ++r) fx.offsets.push_back(r * kFfmFields);
  fx.values.assign(kFfmRows * kFfmFields, 1.0f);
  for (std::size_t j = 0; j < kFfmRows * kFfmFields; ++j) fx.fields.push_back(j % kFfmFields);
  std::uniform_int_distribution<std::uint32_t> idx(1, static_cast<std::uint32_t>(table_rows - 1));
  fx.local.resize(kFfmBatches);
  for (auto& b : fx.local) {
    b.resize(kFfmRows * kFfmFields);
    for (auto& u : b) u = idx(rng);
    bench::NumberInFirstOccurrenceOrder(&b);
  }
  return fx;
}

// Times ForwardBackward over fx's batches in turn; between(b) runs untimed before batch b.
template <class Between>
void RunFfmBatches(benchmark::State& state, FfmFixture& fx, const Between& between) {
  std::vector<float> scores(kFfmRows);
  const std::unique_ptr<ModelKernel> kernel = MakeKernel(fx.shape, Loss::kLogistic);
  std::size_t b = 0;
  for (auto _ : state) {
    between(b);
    ModelBatch batch{kFfmRows,           fx.labels.data(), fx.offsets.data(),
                     fx.local[b].data(), fx.values.data(), fx.fields.data()};
    double loss = kernel->ForwardBackward(batch, fx.params.data(), fx.grads.data(), scores.data());
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
    b = (b + 1) % kFfmBatches;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kFfmRows));
  state.counters["table_mb"] = static_cast<double>(fx.params.size() * sizeof(float)) / (1 << 20);
}

void RunFfm(benchmark::State& state, std::size_t table_rows) {
  FfmFixture fx = MakeFfm(static_cast<int>(state.range(0)), table_rows);
  RunFfmBatches(state, fx, [](std::size_t) {});
}

// Batches as MakeFfm's, keys as BM_FfmShared's comment says; table_rows: the largest batch's.
FfmFixture MakeFfmShared(int k) {
  FfmFixture fx = MakeFfm(k, 2);
  std::mt19937_64 rng(7);
  std::bernoulli_distribution fresh(0.28);
  std::uniform_int_distribution<std::uint32_t> hot(1, 2000);
  std::uint32_t next = 2001;
  for (auto& b : fx.local) {
    for (auto& u : b) u = fresh(rng) ? next++ : hot(rng);
    bench::NumberInFirstOccurrenceOrder(&b);
    fx.table_rows = std::max<std::size_t>(fx.table_rows, 1 + *std::max_element(b.begin(), b.end()));
  }
  const std::size_t width = static_cast<std::size_t>(fx.shape.row_width());
  std::normal_distribution<float> normal(0.0f, 0.01f);
  fx.params.resize(fx.table_rows * width);
  for (float& p : fx.params) p = normal(rng);
  fx.grads.assign(fx.params.size(), 0.0f);
  return fx;
}

// Runs `work` on a thread pinned to the processor `cpu` (when the process may use it) and
// waits for it.
template <class Work>
void RunOn(int cpu, const Work& work) {
  std::thread t([&] {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);  // best effort
    work();
  });
  t.join();
}

void BM_FfmShared(benchmark::State& state) {
  FfmFixture fx = MakeFfmShared(static_cast<int>(state.range(0)));
  const std::vector<float> source = fx.params;
  float sink = 0.0f;
  RunFfmBatches(state, fx, [&](std::size_t) {
    state.PauseTiming();
    RunOn(sched_getcpu() == 0 ? 1 : 0, [&] {
      std::memcpy(fx.params.data(), source.data(), source.size() * sizeof(float));
      for (std::size_t i = 0; i < fx.grads.size(); i += 16) sink += fx.grads[i];
    });
    state.ResumeTiming();
  });
  benchmark::DoNotOptimize(sink);
}
BENCHMARK(BM_FfmShared)->Arg(4)->Arg(8);

void BM_FfmCache(benchmark::State& state) { RunFfm(state, 512); }
void BM_FfmBatch(benchmark::State& state) { RunFfm(state, 16384); }
BENCHMARK(BM_FfmCache)->Arg(4)->Arg(8);
BENCHMARK(BM_FfmBatch)->Arg(4)->Arg(8);

void BM_MemBandwidth(benchmark::State& state) {
  constexpr std::size_t kBytes = std::size_t{256} << 20;
  std::unique_ptr<char[]> a(new char[kBytes]), b(new char[kBytes]);
  std::memset(a.get(), 1, kBytes);
  std::memset(b.get(), 2, kBytes);
  for (auto _ : state) {
    std::memcpy(b.get(), a.get(), kBytes);
    benchmark::ClobberMemory();
    std::swap(a, b);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * 2 * kBytes));
}
BENCHMARK(BM_MemBandwidth)->Unit(benchmark::kMillisecond);

// ---- the store with FFM-wide rows ----------------------------------------------------------

constexpr std::size_t kWideKeys = 300'000;
constexpr std::size_t kWideCallKeys = 8192;

// A store holding kWideKeys FFM rows (created by a pull), the call-sized key permutations,
// the row handles of each call and one call's gradients.
struct WideStore {
  std::unique_ptr<ParamStore> store;
  std::vector<std::vector<Key>> calls;
  std::vector<std::vector<ParamStore::RowHandle>> handles;
  std::vector<float> grads, out;
};

WideStore& GetWideStore() {
  static const std::unique_ptr<WideStore> ws = [] {
    auto w = std::make_unique<WideStore>();
    StoreOptions o;
    o.shape = FfmShape(8, kFfmFields);
    w->store = std::make_unique<ParamStore>(o, MakeOptimizer(OptimizerConfig{}));
    const std::size_t width = static_cast<std::size_t>(o.shape.row_width());
    std::mt19937_64 rng(11);
    std::vector<Key> keys(kWideKeys);
    for (Key& key : keys) key = (rng() | 1) & ~(Key{1} << 63);  // never the bias key
    w->out.resize(kWideCallKeys * width);
    for (std::size_t i = 0; i + kWideCallKeys <= keys.size(); i += kWideCallKeys) {
      w->calls.emplace_back(keys.begin() + static_cast<std::ptrdiff_t>(i),
                            keys.begin() + static_cast<std::ptrdiff_t>(i + kWideCallKeys));
      w->handles.emplace_back(kWideCallKeys);
      w->store->Pull(w->calls.back().data(), kWideCallKeys, true, w->out.data(),
                     w->handles.back().data());
    }
    std::normal_distribution<float> normal(0.0f, 0.01f);
    w->grads.resize(kWideCallKeys * width);
    for (float& g : w->grads) g = normal(rng);
    return w;
  }();
  return *ws;
}

// Times call(store, c) for calls c = 0, 1, ... of kWideCallKeys keys each.
template <class Call>
void RunWide(benchmark::State& state, const Call& call) {
  WideStore& ws = GetWideStore();
  std::size_t c = 0;
  for (auto _ : state) {
    call(ws, c);
    benchmark::ClobberMemory();
    c = (c + 1) % ws.calls.size();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kWideCallKeys));
}

void BM_StoreWidePull(benchmark::State& state) {
  RunWide(state, [](WideStore& ws, std::size_t c) {
    ws.store->Pull(ws.calls[c].data(), kWideCallKeys, true, ws.out.data());
  });
}

void BM_StoreWidePushRows(benchmark::State& state) {
  RunWide(state, [](WideStore& ws, std::size_t c) {
    ws.store->PushRows(ws.handles[c].data(), kWideCallKeys, ws.grads.data(), nullptr);
  });
}
BENCHMARK(BM_StoreWidePull);
BENCHMARK(BM_StoreWidePushRows);

}  // namespace
}  // namespace fmps
