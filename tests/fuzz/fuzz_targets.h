// Bodies of the libFuzzer targets (tests/fuzz/*_fuzz.cc), callable without libFuzzer so that
// tests/fuzz/fuzz_regressions_test.cc replays saved crashing inputs through exactly the same code.
//
// Each body takes arbitrary bytes, feeds them through fmps's real input path and checks the
// path's contracts: only the documented error types may escape (they are caught here), and
// on success the result must satisfy the invariants stated in the headers (see each body).
// A violated invariant prints "fuzz check failed: ..." to stderr and calls std::abort(),
// which libFuzzer reports as a crash and which fails the regression test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace fmps::fuzz {

// A data-format parser target: the bytes after the first become a file read by ShardReader
// (whole file, several shards, resumed from Remaining(), on_error skip and fail); the first
// byte chooses the loss, hash_bits, shard count, batch size and (csv) delimiter and
// transform. For csv the column roles are derived from the file's own header so that rows
// are reached. Checks: every row's label and values are finite (labels 0/1 under logistic
// loss), keys fit hash_bits, every non-zero has a field in the format's range (row_block.h),
// the shards and the resumed reader yield exactly the rows (fields included) of the
// whole-file reader, and on_error: fail throws DataError exactly when skip found bad rows.
int FuzzLibsvm(const std::uint8_t* data, std::size_t size);
int FuzzLibffm(const std::uint8_t* data, std::size_t size);
int FuzzCriteo(const std::uint8_t* data, std::size_t size);
int FuzzCsv(const std::uint8_t* data, std::size_t size);

// The YAML config loader: the bytes are a config file's text (lines "#set KEY=VALUE" also
// become --set overrides). Only ConfigError may escape ParseConfig; an accepted config must
// print (ConfigToYaml) to YAML that parses back to the same config, and its data section
// must round-trip through DataSectionToYaml/ParseDataSection.
int FuzzConfig(const std::uint8_t* data, std::size_t size);

// The wire decoder. First byte: 0 mod 3 decodes the rest as one single-chunk stream
// (DecodeFrame); 1 mod 3 feeds it to one WireDecoder as chunks, each prefixed by a 16-bit
// little-endian length; 2 mod 3 builds a data or control message from the bytes, encodes it
// in chunks of a size taken from the bytes, flips one byte chosen by the bytes and decodes. Only
// TransportError may escape; a decoded message must re-encode and decode to itself; a
// decoder that threw must decode the next valid stream; an unflipped stream must decode to
// the original message and a flipped one must be rejected.
int FuzzWire(const std::uint8_t* data, std::size_t size);

// The model file loader (Model::Load). The bytes after the first are the file; when the first
// byte is odd a valid final record (no keys, the XXH3-64 of those bytes) is appended, so that
// crafted headers and chunks get past the checksum. Only ModelError (its message starting
// with the file's path) and IoError may escape; a loaded model has the announced number of
// keys, strictly ascending, and written again (ModelWriter) loads back bit-identical.
int FuzzModelFile(const std::uint8_t* data, std::size_t size);

// The checkpoint shard loader (LoadShardFile), file bytes and final record as in
// FuzzModelFile; the first byte also chooses the store loaded into (see StoreFor in
// file_fuzz_targets.cc). Only ModelError (naming the file) and IoError may escape, and then
// the store must be unchanged (empty); a restored store saved again loads into a fresh store
// with the same number of keys.
int FuzzShardFile(const std::uint8_t* data, std::size_t size);

// Target name (as in tests/fuzz/<name>_fuzz.cc and tests/fuzz/regressions/<name>/) and body.
struct FuzzTarget {
  const char* name;
  int (*run)(const std::uint8_t* data, std::size_t size);
};
std::span<const FuzzTarget> AllFuzzTargets();

}  // namespace fmps::fuzz
