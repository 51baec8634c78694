// ParamStore: one server's shard of the model. Maps a 64-bit key to its parameters (w, v:
// one row of the model shape's row_width() floats) and their optimizer state, kept in
// contiguous chunked arenas and found through an open-addressing hash table (linear probing,
// multiply-shift home slot, growth by 1.5x).
//
// Rows are created on first Pull(create=true) or Push. A new row has w = 0 and
// v = InitialEmbedding(seed, key) (depends only on seed and key, so every sharding and
// arrival order gives the same initial model). With min_count > 1 a key's v is allocated
// only once the occurrence counts pushed for it reach min_count (DiFacto-style memory
// saving); until then Pull returns v = 0 and v gradients are dropped, while w trains from
// the start. kBiasKey never gets a v.
//
// Thread safety: none; one server thread owns a store. (Internally, a store of >= 32 MiB of
// rows maps and faults in its next 2 MiB chunk on a short-lived background thread, so the
// kernel's page zeroing is off the owner's thread; that chunk counts in MemoryBytes.) Cost: Pull
// and Push are O(1) expected per key plus O(k) arithmetic; keys are looked up in sub-batches with
// prefetching, so long calls are much cheaper per key than calls with a single key (rows are
// prefetched as many keys ahead as a budget of cache lines holds: wide FFM rows a few keys).
//
// Memory (MemoryBytes): one row per key of 2 + R(1 + S) floats, R = the shape's row width
// (the key, w, v and their optimizer state, S = state floats per parameter; + 2 step
// counters for Adam; padded to a multiple of 64 bytes when that costs <= 1/8 of the row) in
// 2 MiB chunks (transparent huge pages), plus an 8-byte table slot per 0.53..0.8 keys
// (figures per optimizer: tests/bench/README.md, "Server store"). Guarantee: for k = 8,
// min_count <= 1 and stores of >= 3*10^5 keys, at most 1.5x the raw payload (8-byte key +
// R(1 + S) floats) for every optimizer and every table load; smaller stores pay up to one
// partly used 2 MiB chunk. With min_count > 1 an unembedded key holds 5 + S floats (+ 2 for
// Adam) and a table slot; its v row (V(1 + S) floats, V = the v width) is allocated when it
// is embedded.
// At most 2^32 - 1 keys per store.
//
// Checkpoints (server/store/checkpoint_shard.h): Snapshot() copies the whole state (parameters,
// optimizer state, step counters, occurrence counts) for another thread to write; Restore()
// puts one key's saved state back exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/base/types.h"
#include "common/model/model_shape.h"
#include "server/store/initial_embedding.h"
#include "server/store/optimizer.h"

namespace fmps {

struct StoreOptions {
  ModelShape shape;  // gives the row width
  float init_std = 0.01f;
  std::uint64_t seed = 0;
  std::uint32_t min_count = 0;  // 0 or 1: every key gets v at creation
  float l2_w = 0.0f;
  float l2_v = 0.0f;
};

// What a store's saved state depends on. A snapshot restores exactly into a store with the
// same shape, optimizer, state_floats and step_counters; min_count, seed and init_std may differ
// (see ParamStore::Restore).
struct StoreFormat {
  ModelShape shape;
  std::string optimizer;       // sgd, adagrad, adam, ftrl: the optimizer's class name, lower case
  int state_floats = 0;        // optimizer state floats per parameter
  bool step_counters = false;  // two step counters per key (w and v groups; Adam)
  std::uint32_t min_count = 0;
  std::uint64_t seed = 0;
  float init_std = 0.0f;
};

// One key's complete state (everything Push reads), as read from a snapshot and given to
// ParamStore::Restore. Non-owning: the pointers refer to the snapshot or the caller's
// buffers. Optimizer state is laid out per group as in optimizer.h: w_state[s] is state s
// of w; v_state[s * V + i] is state s of v[i] (V = the shape's v_width()).
struct KeyRecord {
  Key key = 0;
  float w = 0.0f;
  const float* w_state = nullptr;  // state_floats floats (may be null when state_floats == 0)
  const float* v = nullptr;        // V floats, or null: the key has no v (kBiasKey, or not yet
                                   // embedded under min_count > 1)
  const float* v_state = nullptr;  // state_floats * V floats when v is set
  std::uint32_t step_w = 0;        // step counters (0 unless step_counters)
  std::uint32_t step_v = 0;
  std::uint32_t count = 0;  // occurrences pushed so far (kept only while min_count > 1)
};

// An immutable in-memory copy of a ParamStore (ParamStore::Snapshot): every key's record,
// independent of the store it came from, so one thread may read it (e.g. write it to disk)
// while the store keeps training (or is destroyed) on another. Move-only; owns one memory
// mapping: the store's rows packed (no hash table), plus up to 1/8 slack. A moved-from
// snapshot may only be destroyed, assigned to or passed to ParamStore::Snapshot.
//
// Thread safety: const methods may be called concurrently. Cost: record(i) is O(1).
class StoreSnapshot {
 public:
  StoreSnapshot();  // empty, default format
  ~StoreSnapshot();
  StoreSnapshot(StoreSnapshot&&) noexcept;
  StoreSnapshot& operator=(StoreSnapshot&&) noexcept;
  StoreSnapshot(const StoreSnapshot&) = delete;
  StoreSnapshot& operator=(const StoreSnapshot&) = delete;

  const StoreFormat& format() const;
  std::size_t size() const;      // keys
  std::size_t embedded() const;  // keys with a v
  std::size_t bytes() const;     // memory held

  // Record of the i-th key (0 <= i < size(), the store's creation order). The pointers stay
  // valid until the snapshot's memory is freed (destroyed or assigned to) or recycled.
  KeyRecord record(std::size_t i) const;

 private:
  friend class ParamStore;
  struct Data;
  std::unique_ptr<Data> data_;
};

class ParamStore {
 public:
  // Throws ModelError for an invalid options.shape, std::invalid_argument for a null optimizer.
  ParamStore(const StoreOptions& options, std::unique_ptr<Optimizer> optimizer);
  ~ParamStore();
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  const ModelShape& shape() const;
  int row_width() const { return shape().row_width(); }  // floats per key in Pull/Push: w, v

  // A key's row in this store: valid for the store's lifetime (rows are never removed or
  // renumbered; Set, Restore and growth keep them). kNoRowHandle marks a missing key.
  using RowHandle = std::uint32_t;
  static constexpr RowHandle kNoRowHandle = ~RowHandle{0};

  // Writes row_width() floats per key (w, v...) into out. If `create`, missing keys are
  // created first; otherwise missing keys read as all zeros and nothing is created. If
  // `handles` is set, writes each key's RowHandle there (kNoRowHandle for a missing key),
  // so that a push of the same keys can skip the lookups (PushRows).
  void Pull(const Key* keys, std::size_t n, bool create, float* out, RowHandle* handles = nullptr);

  // Applies one optimizer update per key with gradient grads[i*row_width() ...]. `counts`
  // (may be null: one occurrence per key) holds each key's occurrences in the data behind
  // this push and feeds min_count (saturating at 2^32 - 1). The push whose counts reach
  // min_count creates v at its initial value; its own v gradients, computed against v = 0,
  // are dropped. A key whose gradient row has a non-finite value is skipped (not updated,
  // its count not added); returns how many keys were skipped so.
  // Keys must be unique within one call. Missing keys are created first.
  std::size_t Push(const Key* keys, std::size_t n, const float* grads, const std::uint32_t* counts);

  // Push for keys given by the handles a Pull returned (unique, none kNoRowHandle): the
  // same updates without the hash lookups. Throws std::out_of_range, changing nothing, if
  // a handle is not one of this store's rows.
  std::size_t PushRows(const RowHandle* rows, std::size_t n, const float* grads,
                       const std::uint32_t* counts);

  // Sets a key's parameters directly (model loading); creates it if missing; optimizer
  // state and step counters are re-initialised. kBiasKey's v stays 0. With min_count > 1 an
  // unembedded key gets a v only if row's v is non-zero (its occurrence count is kept).
  void Set(Key key, const float* row);

  // Sets every part of record.key's state exactly as given (parameters, optimizer state,
  // step counters, occurrence count); creates the key if missing, without initialising it
  // first (checkpoint loading). Returns whether the key was created. The record's state
  // arrays must match this store's format (shape, state_floats). Differences in min_count are
  // tolerated: with min_count <= 1 a record without v (other than kBiasKey's) gets the
  // initial v and fresh v state that creation would give it; with min_count > 1 a record
  // with v embeds the key. kBiasKey never gets a v. Throws std::invalid_argument, changing
  // nothing, if the key already has a v here but the record has none (a v cannot be
  // removed). Cost: O(1) expected plus O(V (1 + S)) copying; no prefetching (~ a Set).
  bool Restore(const KeyRecord& record);

  // An independent copy of the whole store (see StoreSnapshot); the store is not modified.
  // `recycle`: a snapshot no longer needed (e.g. the previous checkpoint's, once written);
  // its memory is reused when large enough (new memory is mapped with 1/8 slack for growth,
  // so a recycled snapshot usually fits the next one). Cost: a memcpy of the row arenas
  // (the hash table is not copied). Fresh memory may first make the kernel compact memory
  // for the huge pages, many times the copy's cost, so a server should recycle.
  StoreSnapshot Snapshot(StoreSnapshot recycle = StoreSnapshot()) const;

  // The format a snapshot of this store has, and that Restore expects.
  const StoreFormat& format() const;

  std::size_t size() const;         // keys stored (kBiasKey included when present)
  std::size_t embedded() const;     // keys that have a v
  std::size_t MemoryBytes() const;  // bytes allocated: table, arenas, chunk lists, the store

  // Calls fn(key, row) for every key, row = row_width() floats (w, v or zeros), in
  // unspecified order (currently creation order). fn must not modify the store.
  void ForEach(const std::function<void(Key, const float*)>& fn) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fmps
