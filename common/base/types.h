// Basic vocabulary types shared by every part of fmps.
#pragma once

#include <cstdint>

namespace fmps {

// A feature key: a 64-bit id (raw or hashed). Keys are what servers shard and store.
using Key = std::uint64_t;

// The global bias w0 is stored on the servers under this reserved key. Its row's `v` part
// is zero and never changes. Key derivation never produces it (see hash.h).
inline constexpr Key kBiasKey = ~Key{0};

}  // namespace fmps
