// Checkpoint shard files: one server's ParamStore (parameters, optimizer state, Adam step
// counters, min_count occurrence counts) saved so that training resumes exactly.
//
// Format (common/proto/fmps.proto, "checkpoint shards"): a record file (common/base/
// record_file.h) with the magic "FMPSSHD1": one ShardHeader (model shape, optimizer, state
// floats per parameter, step counters, min_count, key counts, seed), then ShardChunk records
// of raw little-endian arrays (keys, w, w state, steps, counts, has_v, v, v state) of ~8 MiB
// each, and the final ShardChunk (last, no keys, the XXH3-64 of every byte before it), so a
// file checks itself even without an expected checksum.
//
// Thread safety: the functions share no state; concurrent calls on different files (and
// different stores) are safe.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/base/types.h"
#include "server/store/param_store.h"

namespace fmps {

// Checkpoint layout: <dir>/ckpt-<seq, 8 digits>/shard-<server>.bin, plus the MANIFEST the
// coordinator writes last (worker/job/checkpoint.h).
std::string CheckpointPath(const std::string& dir, std::uint64_t seq);
std::string ShardFileName(int server);

struct ShardFileInfo {
  std::string path;
  std::uint64_t bytes = 0;     // file size
  std::uint64_t checksum = 0;  // XXH3-64 of the whole file
  std::uint64_t keys = 0;      // keys saved
};

// Writes `snap` to `path` atomically (RecordWriter): a temp file in the same directory, fsync,
// rename, fsync of the directory, so `path` is either absent/old or complete. The checksum is
// computed while writing. Throws IoError naming the file (the temp file is removed).
// Cost: one pass over the snapshot, sequential writes of about its size, two fsyncs.
// Does not touch any store: meant to run on a thread other than the store's.
ShardFileInfo WriteShardFile(const StoreSnapshot& snap, const std::string& path);

// Restores the keys of the shard file `path` for which keep(key) is true (every key if keep
// is empty) into `store` (ParamStore::Restore: the exact saved state, no re-initialisation;
// existing keys are overwritten). Returns the number of keys restored. For re-sharding, call
// it for every shard file with keep = [&](Key k) { return ServerOfKey(k, S) == s; }.
//
// The whole file is verified before the store is touched (a first pass reads it through):
// size and checksum against `expected` when given, the self-checksum, every record's
// structure and key counts. Throws ModelError naming the file and the problem (truncated,
// corrupt record, checksum mismatch, size mismatch) or the incompatibility with the store
// (different model shape, optimizer, state floats, row-wise state or step counters); IoError
// if it cannot be read. In all these cases the store is unchanged. A different min_count is
// accepted (see ParamStore::Restore). The file must not change during the call (checkpoint
// files are immutable once renamed into place).
// Allocation is bounded by the file: a record whose length passes the end of the file is
// refused before its buffer is allocated, and header counts are only compared, never used to
// size anything (crafted headers are fuzzed: tests/fuzz, target shard).
// Cost: reads the file twice (the second time usually from the page cache), O(k) per key.
std::uint64_t LoadShardFile(const std::string& path, const ShardFileInfo* expected,
                            ParamStore* store, const std::function<bool(Key)>& keep);

}  // namespace fmps
