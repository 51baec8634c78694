// Checkpoint shards: ParamStore snapshots, shard files, exact resume, damaged files,
// re-sharding, throughput.
#include "server/store/checkpoint_shard.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "server/store/param_store.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::TempDir;

constexpr OptimizerName kAllOptimizers[] = {OptimizerName::kSgd, OptimizerName::kAdagrad,
                                            OptimizerName::kAdam, OptimizerName::kFtrl};

std::unique_ptr<Optimizer> MakeNamed(OptimizerName name) {
  OptimizerConfig c;
  c.name = name;
  c.lr = 0.1f;
  c.l1 = name == OptimizerName::kFtrl ? 0.01f : 0.0f;
  return MakeOptimizer(c);
}

StoreOptions Options(int k, std::uint32_t min_count) {
  return {.shape = FmShape(k),
          .init_std = 0.1f,
          .seed = 17,
          .min_count = min_count,
          .l2_w = 0.001f,
          .l2_v = 0.002f};
}

std::vector<std::uint32_t> Bits(const float* p, std::size_t n) {
  std::vector<std::uint32_t> out(n);
  if (n > 0) std::memcpy(out.data(), p, n * sizeof(float));
  return out;
}

// A deep copy of one key's record with floats as bit patterns (bit-identical comparisons).
struct FullRecord {
  std::vector<std::uint32_t> w, w_state, v, v_state;
  std::uint32_t step_w = 0, step_v = 0, count = 0;
  bool operator==(const FullRecord&) const = default;
};

std::map<Key, FullRecord> Records(const StoreSnapshot& snap) {
  const std::size_t k = static_cast<std::size_t>(snap.format().shape.v_width());
  const std::size_t s = static_cast<std::size_t>(snap.format().state_floats);
  const std::size_t vs = static_cast<std::size_t>(VStateFloats(snap.format()));
  std::map<Key, FullRecord> out;
  for (std::size_t i = 0; i < snap.size(); ++i) {
    const KeyRecord r = snap.record(i);
    FullRecord f;
    f.w = Bits(&r.w, 1);
    f.w_state = Bits(r.w_state, s);
    if (r.v != nullptr) {
      f.v = Bits(r.v, k);
      f.v_state = Bits(r.v_state, vs);
    }
    f.step_w = r.step_w;
    f.step_v = r.step_v;
    f.count = r.count;
    EXPECT_TRUE(out.emplace(r.key, std::move(f)).second) << "duplicate key " << r.key;
  }
  return out;
}

std::map<Key, FullRecord> Records(const ParamStore& store) { return Records(store.Snapshot()); }

// Every key's pulled row, as bits.
std::map<Key, std::vector<std::uint32_t>> Pulled(ParamStore& store) {
  std::vector<Key> keys;
  store.ForEach([&](Key key, const float*) { keys.push_back(key); });
  std::vector<float> rows(keys.size() * store.row_width());
  store.Pull(keys.data(), keys.size(), false, rows.data());
  std::map<Key, std::vector<std::uint32_t>> out;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    out[keys[i]] = Bits(rows.data() + i * store.row_width(), store.row_width());
  }
  return out;
}

struct PushBatch {
  std::vector<Key> keys;
  std::vector<float> grads;
  std::vector<std::uint32_t> counts;
};

// Unique random keys (never kBiasKey).
std::vector<Key> RandomKeys(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Key> keys(n);
  for (Key& key : keys) {
    do {
      key = rng() >> 20;  // some structure, still unique in practice
    } while (key == kBiasKey);
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  std::shuffle(keys.begin(), keys.end(), rng);
  return keys;
}

// `n` pushes, each of a random ~30% of `pool` (unique within a push) with normal gradients
// and occurrence counts 1..3.
std::vector<PushBatch> MakePushes(int n, const std::vector<Key>& pool, int k, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<std::uint32_t> count(1, 3);
  std::vector<PushBatch> out(n);
  for (PushBatch& p : out) {
    for (Key key : pool) {
      if (rng() % 10 < 3) p.keys.push_back(key);
    }
    std::shuffle(p.keys.begin(), p.keys.end(), rng);
    p.grads.resize(p.keys.size() * (1 + k));
    for (float& g : p.grads) g = normal(rng);
    for (std::size_t i = 0; i < p.keys.size(); ++i) p.counts.push_back(count(rng));
  }
  return out;
}

void Apply(ParamStore& store, const std::vector<PushBatch>& pushes) {
  for (const PushBatch& p : pushes) {
    store.Push(p.keys.data(), p.keys.size(), p.grads.data(), p.counts.data());
  }
}

// Pool of keys including kBiasKey.
std::vector<Key> Pool(std::size_t n, std::uint64_t seed) {
  std::vector<Key> pool = RandomKeys(n, seed);
  pool.push_back(kBiasKey);
  return pool;
}

// A store trained by `pushes` plus some keys only pulled (created, never pushed).
std::unique_ptr<ParamStore> Trained(OptimizerName name, std::uint32_t min_count, int k,
                                    const std::vector<PushBatch>& pushes,
                                    const std::vector<Key>& pulled_only) {
  auto store = std::make_unique<ParamStore>(Options(k, min_count), MakeNamed(name));
  Apply(*store, pushes);
  std::vector<float> sink(pulled_only.size() * store->row_width());
  store->Pull(pulled_only.data(), pulled_only.size(), true, sink.data());
  return store;
}

std::uint64_t FileChecksum(const std::string& path) {
  const std::string bytes = testing::ReadFile(path);
  return XXH3_64bits(bytes.data(), bytes.size());
}

void FlipByte(const std::string& path, std::uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

TEST(CheckpointShardTest, ResumeIsBitIdenticalForEveryOptimizerAndMinCount) {
  const int k = 6;
  TempDir dir;
  const std::vector<Key> pool = Pool(3000, 1);
  const std::vector<Key> pulled_only = RandomKeys(500, 2);
  const std::vector<Key> later_pool = Pool(3000, 3);  // mostly new keys, plus the bias key
  for (OptimizerName name : kAllOptimizers) {
    for (std::uint32_t min_count : {0u, 5u}) {
      SCOPED_TRACE(std::string(ToString(name)) + " min_count " + std::to_string(min_count));
      const std::vector<PushBatch> before = MakePushes(12, pool, k, 10);
      auto original = Trained(name, min_count, k, before, pulled_only);
      const StoreSnapshot snap = original->Snapshot();
      EXPECT_EQ(snap.size(), original->size());
      EXPECT_EQ(snap.embedded(), original->embedded());
      if (min_count > 1) {
        EXPECT_LT(snap.embedded(), snap.size() - 500);  // some pushed keys are not embedded
        EXPECT_GT(snap.embedded(), 0u);
      }
      const std::string path = dir.File(std::string("shard-") + ToString(name) + ".fmpsckpt");
      const ShardFileInfo info = WriteShardFile(snap, path);
      EXPECT_EQ(info.path, path);
      EXPECT_EQ(info.keys, original->size());
      EXPECT_EQ(info.bytes, std::filesystem::file_size(path));
      EXPECT_EQ(info.checksum, FileChecksum(path));

      ParamStore restored(Options(k, min_count), MakeNamed(name));
      EXPECT_EQ(LoadShardFile(path, &info, &restored, nullptr), original->size());
      EXPECT_EQ(restored.size(), original->size());
      EXPECT_EQ(restored.embedded(), original->embedded());
      EXPECT_TRUE(Records(restored) == Records(*original)) << "full state differs after load";

      // The same further pushes to both (existing keys gaining steps and reaching min_count,
      // new keys created) give bit-identical stores.
      std::vector<Key> mixed = pool;
      mixed.insert(mixed.end(), later_pool.begin(), later_pool.end() - 1);
      mixed.insert(mixed.end(), pulled_only.begin(), pulled_only.end());
      const std::vector<PushBatch> after = MakePushes(8, mixed, k, 20);
      Apply(*original, after);
      Apply(restored, after);
      const auto a = Pulled(*original);
      const auto b = Pulled(restored);
      ASSERT_EQ(a.size(), b.size());
      std::size_t differ = 0;
      for (const auto& [key, row] : a) {
        const auto it = b.find(key);
        if (it == b.end() || it->second != row) ++differ;
      }
      EXPECT_EQ(differ, 0u) << "keys whose pulled values differ after resuming";
      EXPECT_TRUE(Records(restored) == Records(*original)) << "full state differs after pushes";
    }
  }
}

TEST(CheckpointShardTest, SnapshotIsIndependentOfLaterPushes) {
  const int k = 8;
  for (std::uint32_t min_count : {0u, 5u}) {
    SCOPED_TRACE(min_count);
    const std::vector<Key> pool = Pool(2000, 4);
    auto store = Trained(OptimizerName::kAdam, min_count, k, MakePushes(10, pool, k, 5), {});
    StoreSnapshot snap = store->Snapshot();
    const auto at_snapshot = Records(snap);
    const std::size_t size = snap.size();
    // Existing keys change; many new keys grow the arenas (the first chunk moves) and table.
    Apply(*store, MakePushes(6, pool, k, 6));
    const std::vector<Key> more = RandomKeys(50000, 7);
    Apply(*store, MakePushes(6, more, k, 8));
    EXPECT_GT(store->size(), size + 40000);
    EXPECT_EQ(snap.size(), size);
    EXPECT_TRUE(Records(snap) == at_snapshot);
    // The store after the pushes really differs from the snapshot.
    EXPECT_FALSE(Records(*store) == at_snapshot);
    // Moving the snapshot keeps it intact; the store dying first does too.
    StoreSnapshot moved = std::move(snap);
    store.reset();
    EXPECT_TRUE(Records(moved) == at_snapshot);
  }
  // A recycled snapshot's memory is reused when large enough, else replaced; either way the
  // result is exact, whatever store the recycled snapshot came from.
  {
    const std::vector<Key> pool = Pool(3000, 30);
    auto small = Trained(OptimizerName::kSgd, 0, 2, MakePushes(3, Pool(100, 31), 2, 1), {});
    auto big = Trained(OptimizerName::kFtrl, 5, 8, MakePushes(3, pool, 8, 2), {});
    const auto big_records = Records(*big);
    StoreSnapshot s1 = big->Snapshot(small->Snapshot());  // too small: replaced
    EXPECT_TRUE(Records(s1) == big_records);
    const std::size_t big_bytes = s1.bytes();
    StoreSnapshot s2 = small->Snapshot(std::move(s1));  // reused
    EXPECT_EQ(s2.bytes(), big_bytes);
    EXPECT_EQ(s2.format().optimizer, "sgd");
    EXPECT_TRUE(Records(s2) == Records(*small));
    StoreSnapshot s3 = big->Snapshot(std::move(s2));  // reused again
    EXPECT_EQ(s3.bytes(), big_bytes);
    EXPECT_TRUE(Records(s3) == big_records);
  }
  // An empty store gives an empty snapshot that writes and loads.
  TempDir dir;
  ParamStore empty(Options(4, 0), MakeNamed(OptimizerName::kSgd));
  const StoreSnapshot snap = empty.Snapshot();
  EXPECT_EQ(snap.size(), 0u);
  const ShardFileInfo info = WriteShardFile(snap, dir.File("empty"));
  ParamStore target(Options(4, 0), MakeNamed(OptimizerName::kSgd));
  EXPECT_EQ(LoadShardFile(dir.File("empty"), &info, &target, nullptr), 0u);
  EXPECT_EQ(target.size(), 0u);
}

// Loads `path` expecting a ModelError that names the file and contains `what`; the target
// store must be unchanged.
void ExpectRejected(const std::string& path, const ShardFileInfo* expected, ParamStore* target,
                    const std::string& what) {
  const auto before = Records(*target);
  try {
    LoadShardFile(path, expected, target, nullptr);
    ADD_FAILURE() << "no error for " << what;
  } catch (const ModelError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
  EXPECT_TRUE(Records(*target) == before) << "store changed by a rejected load: " << what;
}

TEST(CheckpointShardTest, WritingOnAnotherThreadWhileTheStoreTrains) {
  const int k = 8;
  TempDir dir;
  const std::vector<Key> pool = Pool(20000, 40);
  auto store = Trained(OptimizerName::kAdam, 5, k, MakePushes(4, pool, k, 41), {});
  StoreSnapshot snap = store->Snapshot();
  const auto at_snapshot = Records(snap);
  ShardFileInfo info;
  std::thread writer([&] { info = WriteShardFile(snap, dir.File("bg")); });
  // The store keeps training meanwhile (existing and new keys).
  Apply(*store, MakePushes(4, pool, k, 42));
  Apply(*store, MakePushes(2, RandomKeys(30000, 43), k, 44));
  writer.join();
  ParamStore loaded(Options(k, 5), MakeNamed(OptimizerName::kAdam));
  EXPECT_EQ(LoadShardFile(info.path, &info, &loaded, nullptr), at_snapshot.size());
  EXPECT_TRUE(Records(loaded) == at_snapshot);
}

TEST(CheckpointShardTest, DamagedFilesAreRejectedBeforeTouchingTheStore) {
  const int k = 8;
  TempDir dir;
  // Enough keys for several chunk records (~8 MiB each).
  const std::vector<Key> pool = Pool(250000, 9);
  auto store = Trained(OptimizerName::kAdagrad, 0, k, MakePushes(2, pool, k, 1), pool);
  const std::string good = dir.File("good");
  const ShardFileInfo info = WriteShardFile(store->Snapshot(), good);
  ASSERT_GT(info.bytes, std::uint64_t{16} << 20);
  const std::string bytes = testing::ReadFile(good);

  // Targets: an empty store and one holding other keys.
  ParamStore empty(Options(k, 0), MakeNamed(OptimizerName::kAdagrad));
  auto busy = Trained(OptimizerName::kAdagrad, 0, k, MakePushes(2, Pool(1000, 10), k, 2), {});
  auto reset = [&](const std::string& name, const std::string& content) {
    const std::string p = dir.File(name);
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(content.data(), content.size());
    return p;
  };
  for (ParamStore* target : {&empty, busy.get()}) {
    // Truncated: caught by the size check, and without an expected size by the reader.
    for (std::size_t cut : {bytes.size() - 1, bytes.size() / 2, std::size_t{6}, std::size_t{0}}) {
      const std::string p = reset("cut", bytes.substr(0, cut));
      ExpectRejected(p, &info, target, std::string("expected ") + std::to_string(info.bytes));
      ExpectRejected(p, nullptr, target, "truncated");
    }
    // One flipped byte in a chunk's data: the expected checksum, and the file's own.
    {
      const std::string p = reset("flip", bytes);
      FlipByte(p, bytes.size() / 3);
      ExpectRejected(p, &info, target, "checksum mismatch");
      ExpectRejected(p, nullptr, target, "checksum mismatch");
    }
    // A wrong expected checksum on an intact file.
    {
      ShardFileInfo wrong = info;
      wrong.checksum ^= 1;
      ExpectRejected(good, &wrong, target, "checksum mismatch");
    }
    // Not a shard at all.
    ExpectRejected(reset("magic", std::string("FMPSMDL1") + bytes.substr(8)), nullptr, target,
                   "bad magic");
  }
  // Any single flipped byte is detected even without an expected checksum (the final record
  // carries a checksum of the rest; its own bytes must be canonical). A small file (one chunk)
  // keeps this quick.
  auto small = Trained(OptimizerName::kAdam, 5, 3, MakePushes(3, Pool(300, 19), 3, 4), {});
  const std::string small_bytes =
      testing::ReadFile(WriteShardFile(small->Snapshot(), dir.File("small")).path);
  std::mt19937_64 rng(3);
  // The magic, the header record, the final record (the last 15 bytes) and random places.
  std::vector<std::uint64_t> offsets;
  for (std::uint64_t off = 0; off < 64; off += 3) offsets.push_back(off);
  for (std::uint64_t back = 1; back <= 24; ++back) offsets.push_back(small_bytes.size() - back);
  for (int i = 0; i < 40; ++i) offsets.push_back(rng() % small_bytes.size());
  for (std::uint64_t off : offsets) {
    SCOPED_TRACE(off);
    const std::string p = reset("flip", small_bytes);
    FlipByte(p, off);
    ParamStore target(Options(3, 5), MakeNamed(OptimizerName::kAdam));
    EXPECT_THROW(LoadShardFile(p, nullptr, &target, nullptr), ModelError);
    EXPECT_EQ(target.size(), 0u);
  }
  // A missing file is an IoError.
  EXPECT_THROW(LoadShardFile(dir.File("absent"), nullptr, &empty, nullptr), IoError);
  // The intact file still loads.
  EXPECT_EQ(LoadShardFile(good, &info, &empty, nullptr), store->size());
  EXPECT_TRUE(Records(empty) == Records(*store));
}

TEST(CheckpointShardTest, IncompatibleStoresAreRejected) {
  TempDir dir;
  const std::vector<Key> pool = Pool(500, 11);
  auto store = Trained(OptimizerName::kAdagrad, 0, 8, MakePushes(3, pool, 8, 1), {});
  const std::string path = dir.File("s");
  const ShardFileInfo info = WriteShardFile(store->Snapshot(), path);
  {
    ParamStore other_k(Options(4, 0), MakeNamed(OptimizerName::kAdagrad));
    ExpectRejected(path, &info, &other_k, "saved with model shape fm k=8 but the store has fm k=4");
  }
  {
    ParamStore other_opt(Options(8, 0), MakeNamed(OptimizerName::kAdam));
    ExpectRejected(path, &info, &other_opt, "optimizer adagrad but the store uses adam");
  }
  {
    ParamStore other_opt(Options(8, 0), MakeNamed(OptimizerName::kSgd));
    ExpectRejected(path, nullptr, &other_opt, "optimizer adagrad but the store uses sgd");
  }
  EXPECT_EQ(store->format().optimizer, "adagrad");
  EXPECT_EQ(ParamStore(Options(2, 0), MakeNamed(OptimizerName::kFtrl)).format().optimizer, "ftrl");
}

// Row-wise AdaGrad (FFM, 5 fields, k 4: 5 v accumulators per key): a snapshot restores and
// a shard file round-trips the exact state, with and without min_count, and further pushes
// agree bit for bit; a row-wise file is refused by an element-wise store and vice versa.
TEST(CheckpointShardTest, RowwiseStateRoundTripsExactly) {
  TempDir dir;
  const ModelShape shape = FfmShape(4, 5);
  const std::vector<Key> pool = Pool(1500, 31);
  auto adagrad = [](bool rowwise) {
    return MakeAdagrad({.lr = 0.1f, .initial_accumulator = 0.01f, .rowwise = rowwise});
  };
  for (std::uint32_t min_count : {0u, 3u}) {
    SCOPED_TRACE(min_count);
    StoreOptions o = Options(shape.k, min_count);
    o.shape = shape;
    ParamStore original(o, adagrad(true));
    Apply(original, MakePushes(6, pool, shape.v_width(), 32));
    const StoreSnapshot snap = original.Snapshot();
    EXPECT_TRUE(snap.format().rowwise);
    EXPECT_EQ(VStateFloats(snap.format()), 5);
    // Snapshot + Restore into a fresh store.
    ParamStore restored(o, adagrad(true));
    for (std::size_t i = 0; i < snap.size(); ++i) restored.Restore(snap.record(i));
    EXPECT_TRUE(Records(restored) == Records(original));
    // Through a shard file.
    const std::string path = dir.File("rowwise-" + std::to_string(min_count));
    const ShardFileInfo info = WriteShardFile(snap, path);
    ParamStore loaded(o, adagrad(true));
    EXPECT_EQ(LoadShardFile(path, &info, &loaded, nullptr), original.size());
    EXPECT_TRUE(Records(loaded) == Records(original));
    const std::vector<PushBatch> after = MakePushes(4, pool, shape.v_width(), 33);
    Apply(original, after);
    Apply(loaded, after);
    EXPECT_TRUE(Records(loaded) == Records(original)) << "state differs after further pushes";
    EXPECT_TRUE(Pulled(loaded) == Pulled(original));
    ParamStore elementwise(o, adagrad(false));
    ExpectRejected(path, &info, &elementwise,
                   "saved with row-wise optimizer state (optimizer.rowwise: true) but the store "
                   "keeps element-wise state");
    const std::string element_path = path + "-elementwise";
    const ShardFileInfo element_info = WriteShardFile(elementwise.Snapshot(), element_path);
    ExpectRejected(element_path, &element_info, &loaded, "saved with element-wise");
  }
}

TEST(CheckpointShardTest, ReshardingPlacesEveryKeyOnceWithItsState) {
  const int k = 4;
  TempDir dir;
  for (OptimizerName name : {OptimizerName::kAdam, OptimizerName::kFtrl}) {
    SCOPED_TRACE(ToString(name));
    const std::uint32_t min_count = 5;
    // Two servers, each trained on the keys it owns.
    const std::vector<Key> pool = Pool(20000, 12);
    const std::vector<PushBatch> pushes = MakePushes(6, pool, k, 13);
    std::vector<std::unique_ptr<ParamStore>> sources;
    std::vector<ShardFileInfo> files;
    std::map<Key, FullRecord> all;
    for (int s = 0; s < 2; ++s) {
      auto store = std::make_unique<ParamStore>(Options(k, min_count), MakeNamed(name));
      for (const PushBatch& p : pushes) {
        PushBatch mine;
        for (std::size_t i = 0; i < p.keys.size(); ++i) {
          if (ServerOfKey(p.keys[i], 2) != s) continue;
          mine.keys.push_back(p.keys[i]);
          mine.counts.push_back(p.counts[i]);
          mine.grads.insert(mine.grads.end(), p.grads.begin() + i * (1 + k),
                            p.grads.begin() + (i + 1) * (1 + k));
        }
        store->Push(mine.keys.data(), mine.keys.size(), mine.grads.data(), mine.counts.data());
      }
      files.push_back(
          WriteShardFile(store->Snapshot(), dir.File(std::string("shard-") + std::to_string(s))));
      const auto records = Records(*store);
      for (const auto& [key, r] : records) {
        EXPECT_EQ(ServerOfKey(key, 2), s);
        all.emplace(key, r);
      }
      sources.push_back(std::move(store));
    }
    ASSERT_EQ(all.size(), sources[0]->size() + sources[1]->size());
    for (int servers : {1, 3}) {
      SCOPED_TRACE(servers);
      std::map<Key, FullRecord> merged;
      std::uint64_t restored = 0;
      for (int s = 0; s < servers; ++s) {
        ParamStore store(Options(k, min_count), MakeNamed(name));
        for (const ShardFileInfo& f : files) {
          restored += LoadShardFile(f.path, &f, &store,
                                    [&](Key key) { return ServerOfKey(key, servers) == s; });
        }
        for (const auto& [key, r] : Records(store)) {
          EXPECT_EQ(ServerOfKey(key, servers), s) << key;
          EXPECT_TRUE(merged.emplace(key, r).second) << "key " << key << " on two servers";
        }
      }
      EXPECT_EQ(restored, all.size());
      EXPECT_TRUE(merged == all);
    }
  }
}

TEST(CheckpointShardTest, MinCountMayChangeOnResume) {
  const int k = 4;
  TempDir dir;
  const std::vector<Key> pool = Pool(2000, 14);
  auto lazy = Trained(OptimizerName::kAdagrad, 5, k, MakePushes(6, pool, k, 15), {});
  ASSERT_LT(lazy->embedded(), lazy->size() - 1);
  const std::string path = dir.File("lazy");
  const ShardFileInfo info = WriteShardFile(lazy->Snapshot(), path);
  // Into min_count 0: unembedded keys get their initial v; embedded ones keep theirs.
  ParamStore eager(Options(k, 0), MakeNamed(OptimizerName::kAdagrad));
  LoadShardFile(path, &info, &eager, nullptr);
  EXPECT_EQ(eager.size(), lazy->size());
  EXPECT_EQ(eager.embedded(), lazy->size() - 1);  // all but the bias key
  const auto from = Records(*lazy);
  const auto to = Records(eager);
  std::vector<float> v0(k);
  for (const auto& [key, r] : from) {
    const FullRecord& e = to.at(key);
    EXPECT_EQ(e.w, r.w);
    EXPECT_EQ(e.w_state, r.w_state);
    if (key == kBiasKey) {
      EXPECT_TRUE(e.v.empty());
    } else if (!r.v.empty()) {
      EXPECT_EQ(e.v, r.v);
      EXPECT_EQ(e.v_state, r.v_state);
    } else {
      InitialEmbedding(17, key, k, 0.1f, v0.data());
      EXPECT_EQ(e.v, Bits(v0.data(), k));
    }
  }
  // And back into min_count 5: everything is embedded, nothing re-initialised.
  const ShardFileInfo info2 = WriteShardFile(eager.Snapshot(), dir.File("eager"));
  ParamStore lazy2(Options(k, 5), MakeNamed(OptimizerName::kAdagrad));
  LoadShardFile(info2.path, &info2, &lazy2, nullptr);
  EXPECT_EQ(lazy2.embedded(), eager.embedded());
  EXPECT_EQ(Pulled(lazy2), Pulled(eager));
}

TEST(CheckpointShardTest, SnapshotAndWriteThroughputAtMillionKeys) {
  const int k = 8;
  const std::size_t n = 1000000;
  TempDir dir;
  const std::vector<Key> keys = RandomKeys(n + 1000, 21);
  ParamStore store(Options(k, 0), MakeNamed(OptimizerName::kAdagrad));
  const std::size_t batch = 4096;
  std::vector<float> grads(batch * (1 + k), 0.01f);
  for (std::size_t base = 0; base < n; base += batch) {
    store.Push(keys.data() + base, std::min(batch, n - base), grads.data(), nullptr);
  }
  ASSERT_EQ(store.size(), n);
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  // Fresh memory (the first time, the kernel may compact memory for huge pages), fresh
  // memory again after freeing the first snapshot, then recycled memory.
  const auto t0 = Clock::now();
  StoreSnapshot snap = store.Snapshot();
  const auto t1 = Clock::now();
  snap = StoreSnapshot();
  const auto t1b = Clock::now();
  snap = store.Snapshot();
  const auto t1c = Clock::now();
  double recycled = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto a = Clock::now();
    snap = store.Snapshot(std::move(snap));
    recycled = std::min(recycled, ms(a, Clock::now()));
  }
  const std::string path = dir.File("big");
  const auto t2 = Clock::now();
  const ShardFileInfo info = WriteShardFile(snap, path);
  const auto t3 = Clock::now();
  ParamStore loaded(Options(k, 0), MakeNamed(OptimizerName::kAdagrad));
  const auto t4 = Clock::now();
  EXPECT_EQ(LoadShardFile(path, &info, &loaded, nullptr), n);
  const auto t5 = Clock::now();
  const double mb = static_cast<double>(info.bytes) / 1e6;
  std::cout << "[ checkpoint ] adagrad k=8, 10^6 keys: snapshot " << ms(t0, t1) << " ms first, "
            << ms(t1b, t1c) << " ms fresh memory, " << recycled << " ms recycled ("
            << static_cast<double>(snap.bytes()) / 1e6 << " MB; store "
            << static_cast<double>(store.MemoryBytes()) / 1e6 << " MB); write " << ms(t2, t3)
            << " ms (" << mb << " MB file, " << mb / (ms(t2, t3) / 1e3)
            << " MB/s incl. fsync); load " << ms(t4, t5) << " ms\n";
  // Spot check a few keys.
  std::vector<float> a(1 + k), b(1 + k);
  for (std::size_t i = 0; i < n; i += 99991) {
    store.Pull(&keys[i], 1, false, a.data());
    loaded.Pull(&keys[i], 1, false, b.data());
    EXPECT_EQ(a, b);
  }
}

}  // namespace
}  // namespace fmps
