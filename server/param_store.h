// ParamStore: one server's shard of the model. Maps a 64-bit key to its parameters
// (w, v[k]) and their optimizer state, kept in contiguous chunked arenas and found through
// an open-addressing hash table (linear probing, multiply-shift home slot, growth by 1.5x).
//
// Rows are created on first Pull(create=true) or Push. A new row has w = 0 and
// v = InitialEmbedding(seed, key) (depends only on seed and key, so every sharding and
// arrival order gives the same initial model). With min_count > 1 a key's v is allocated
// only once the occurrence counts pushed for it reach min_count (DiFacto-style memory
// saving); until then Pull returns v = 0 and v gradients are dropped, while w trains from
// the start. kBiasKey never gets a v.
//
// Thread safety: none; one server thread owns a store. Cost: Pull and Push are O(1)
// expected per key plus O(k) arithmetic; keys are looked up in sub-batches with prefetching,
// so long calls are much cheaper per key than calls with a single key.
//
// Memory (MemoryBytes): one row per key of 2 + (1 + k)(1 + S) floats (the key, w, v and
// their optimizer state, S = state floats per parameter; + 2 step counters for Adam; padded
// to a multiple of 64 bytes when that costs <= 1/8 of the row) in 2 MiB chunks (transparent
// huge pages), plus an 8-byte table slot per 0.53..0.8 keys. Measured at k = 8, 10^6 keys:
// sgd 59, adagrad 97, adam 145, ftrl 145 bytes/key. Guarantee: for k = 8, min_count <= 1
// and stores of >= 3*10^5 keys, at most 1.5x the raw payload (8-byte key + (1 + k)(1 + S)
// floats) for every optimizer and every table load; smaller stores pay up to one partly
// used 2 MiB chunk. With min_count > 1 an unembedded key holds 5 + S floats (+ 2 for Adam)
// and a table slot; its v row (k (1 + S) floats) is allocated when it is embedded.
// At most 2^32 - 1 keys per store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/types.h"
#include "server/optimizer.h"

namespace fmps {

struct StoreOptions {
  int k = 8;
  float init_std = 0.01f;
  std::uint64_t seed = 0;
  std::uint32_t min_count = 0;  // 0 or 1: every key gets v at creation
  float l2_w = 0.0f;
  float l2_v = 0.0f;
};

// Deterministic N(0, std^2) initial embedding of `key`: writes k floats to out.
void InitialEmbedding(std::uint64_t seed, Key key, int k, float std, float* out);

class ParamStore {
 public:
  ParamStore(const StoreOptions& options, std::unique_ptr<Optimizer> optimizer);
  ~ParamStore();
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  int k() const;
  int row_width() const { return 1 + k(); }  // floats per key in Pull/Push: w, v[k]

  // Writes row_width() floats per key (w, v...) into out. If `create`, missing keys are
  // created first; otherwise missing keys read as all zeros and nothing is created.
  void Pull(const Key* keys, std::size_t n, bool create, float* out);

  // Applies one optimizer update per key with gradient grads[i*row_width() ...]. `counts`
  // (may be null: one occurrence per key) holds each key's occurrences in the data behind
  // this push and feeds min_count (saturating at 2^32 - 1). The push whose counts reach
  // min_count creates v at its initial value; its own v gradients, computed against v = 0,
  // are dropped. A group (w, or v) whose gradient has a non-finite value is not updated.
  // Keys must be unique within one call. Missing keys are created first.
  void Push(const Key* keys, std::size_t n, const float* grads, const std::uint32_t* counts);

  // Sets a key's parameters directly (model loading); creates it if missing; optimizer
  // state and step counters are re-initialised. kBiasKey's v stays 0. With min_count > 1 an
  // unembedded key gets a v only if row's v is non-zero (its occurrence count is kept).
  void Set(Key key, const float* row);

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
