// Hashing used for feature keys, key partitioning and deterministic initialisation.
// All functions are pure, thread-safe and O(1) (HashToken is O(token length)).
#pragma once

#include <cstdint>
#include <string_view>

#include "common/base/types.h"

namespace fmps {

// A strong 64-bit mixer (the splitmix64 / murmur3 finaliser family): a bijection on uint64
// whose output bits all depend on all input bits.
constexpr std::uint64_t Mix64(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Maps a 64-bit hash to [0, 2^bits) (bits in 1..64), never to kBiasKey.
constexpr Key ReduceHash(std::uint64_t h, int bits) {
  Key k = bits >= 64 ? h : (h >> (64 - bits));
  return k == kBiasKey ? k - 1 : k;
}

// Key of a numeric feature id as read from libsvm/libffm. hash_bits == 0 keeps the id (the
// caller must reject id == kBiasKey as out of range); otherwise hashes it into 2^hash_bits.
constexpr Key KeyFromId(std::uint64_t id, int hash_bits) {
  return hash_bits == 0 ? id : ReduceHash(Mix64(id + 0x9e3779b97f4a7c15ULL), hash_bits);
}

// 64-bit hash of a categorical value together with its column index (xxHash3).
std::uint64_t HashToken(std::uint32_t column, std::string_view token);

// Key of a categorical value in a column. hash_bits == 0 uses the full 64-bit hash.
inline Key KeyFromToken(std::uint32_t column, std::string_view token, int hash_bits) {
  return ReduceHash(HashToken(column, token), hash_bits == 0 ? 64 : hash_bits);
}

// Server owning `key` among `num_servers`: multiply-high of a mixed key, so the split is
// balanced for raw sequential ids as well as for hashed keys.
__extension__ using Uint128 = unsigned __int128;
inline int ServerOfKey(Key key, int num_servers) {
  return static_cast<int>(
      (static_cast<Uint128>(Mix64(key ^ 0x5851f42d4c957f2dULL)) * num_servers) >> 64);
}

}  // namespace fmps
