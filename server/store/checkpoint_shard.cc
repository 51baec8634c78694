#include "server/store/checkpoint_shard.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>

#include "common/base/error.h"
#include "common/base/raw_arrays.h"
#include "common/base/record_file.h"
#include "fmps.pb.h"  // generated from common/proto/fmps.proto

namespace fmps {

namespace {

constexpr RecordFileKind kShardFile{"FMPSSHD1", "checkpoint shard"};
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kTargetChunkBytes = std::size_t{8} << 20;  // payload per chunk record
constexpr std::uint32_t kMaxStateFloats = 64;

// Concatenates strings and numbers (avoids "literal" + std::to_string(x), on which GCC 12
// gives a false -Wrestrict).
template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  auto add = [&out](const auto& a) {
    if constexpr (std::is_arithmetic_v<std::decay_t<decltype(a)>>) {
      out += std::to_string(a);
    } else {
      out += a;
    }
  };
  (add(args), ...);
  return out;
}

// The model shape a header records (not validated; CheckHeader does).
ModelShape ShapeOf(const pb::ShardHeader& h) {
  return {static_cast<ModelKind>(h.kind()), static_cast<int>(h.k()), static_cast<int>(h.fields())};
}

// Floats of one v in the header's chunks (k for FM).
std::size_t VWidth(const pb::ShardHeader& h) {
  return static_cast<std::size_t>(ShapeOf(h).v_width());
}

// Optimizer state floats of one v in the header's chunks (per float, or per vector of k).
std::size_t VStateWidth(const pb::ShardHeader& h) {
  const std::size_t per = h.rowwise() ? VWidth(h) / ShapeOf(h).k : VWidth(h);
  return per * h.state_floats();
}

// Payload bytes of one key in a chunk (v counted as present).
std::size_t KeyBytes(const pb::ShardHeader& h) {
  const std::size_t k = VWidth(h);
  const std::size_t s = h.state_floats();
  return sizeof(Key) + sizeof(float) * (1 + s) + (h.step_counters() ? 8 : 0) +
         (h.min_count() > 1 ? 4 : 0) + 1 + sizeof(float) * (k + VStateWidth(h));
}

// ---- writing ----

template <typename T>
void Put(std::string* s, std::size_t index, const T& value) {
  std::memcpy(s->data() + index * sizeof(T), &value, sizeof(T));
}

// Fills c with snapshot keys [begin, end).
void FillChunk(const StoreSnapshot& snap, const pb::ShardHeader& h, std::size_t begin,
               std::size_t end, pb::ShardChunk* c) {
  const std::size_t n = end - begin;
  const std::size_t k = VWidth(h);
  const std::size_t s = h.state_floats();
  const bool steps = h.step_counters();
  const bool counts = h.min_count() > 1;
  std::string* keys = c->mutable_keys();
  std::string* w = c->mutable_w();
  std::string* w_state = c->mutable_w_state();
  std::string* step = c->mutable_steps();
  std::string* count = c->mutable_counts();
  std::string* has_v = c->mutable_has_v();
  std::string* v = c->mutable_v();
  std::string* v_state = c->mutable_v_state();
  keys->resize(n * sizeof(Key));
  w->resize(n * sizeof(float));
  w_state->resize(n * s * sizeof(float));
  step->resize(steps ? n * 8 : 0);
  count->resize(counts ? n * 4 : 0);
  has_v->resize(n);
  const std::size_t v_bytes = k * sizeof(float);
  const std::size_t vs_bytes = VStateWidth(h) * sizeof(float);
  v->resize(n * v_bytes);
  v_state->resize(n * vs_bytes);
  std::size_t m = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const KeyRecord r = snap.record(begin + j);
    Put(keys, j, r.key);
    Put(w, j, r.w);
    if (s > 0) std::memcpy(w_state->data() + j * s * sizeof(float), r.w_state, s * sizeof(float));
    if (steps) {
      Put(step, 2 * j, r.step_w);
      Put(step, 2 * j + 1, r.step_v);
    }
    if (counts) Put(count, j, r.count);
    (*has_v)[j] = r.v != nullptr ? 1 : 0;
    if (r.v != nullptr) {
      std::memcpy(v->data() + m * v_bytes, r.v, v_bytes);
      if (vs_bytes > 0) std::memcpy(v_state->data() + m * vs_bytes, r.v_state, vs_bytes);
      ++m;
    }
  }
  v->resize(m * v_bytes);
  v_state->resize(m * vs_bytes);
}

// ---- reading ----

class ShardReader : public RecordReader {
 public:
  explicit ShardReader(const std::string& path) : RecordReader(path, kShardFile) {}
  [[noreturn]] void Fail(const std::string& what) const {
    RecordReader::Fail("checkpoint shard " + what);
  }

  // Reads the file from its start, validating everything; calls apply(header, chunk) for
  // every chunk that holds keys when apply is set. Returns the header; *digest = XXH3-64 of
  // the whole file.
  pb::ShardHeader Scan(
      const std::function<void(const pb::ShardHeader&, const pb::ShardChunk&)>& apply,
      std::uint64_t* digest) {
    Start();
    pb::ShardHeader h;
    ReadHeader(&h);
    CheckHeader(h);
    std::uint64_t keys = 0;
    std::uint64_t embedded = 0;
    for (std::uint64_t index = 0;; ++index) {
      const std::uint64_t before = ReadChunk(&chunk_, index);
      if (chunk_.last()) {
        CheckFinal(chunk_, before);
        break;
      }
      embedded += CheckChunk(h, chunk_, index);
      keys += chunk_.keys().size() / sizeof(Key);
      if (apply) apply(h, chunk_);
    }
    if (keys != h.num_keys() || embedded != h.num_embedded()) {
      Damaged(Cat("holds ", keys, " keys (", embedded, " embedded), header says ", h.num_keys(),
                  " (", h.num_embedded(), ")"));
    }
    *digest = RecordReader::digest();
    return h;
  }

 private:
  void CheckHeader(const pb::ShardHeader& h) const {
    if (h.version() != kVersion) Fail(Cat("version ", h.version(), " is not supported"));
    try {
      ShapeOf(h).Validate("header");
    } catch (const ModelError& e) {
      Fail(e.what());
    }
    if (h.state_floats() > kMaxStateFloats) Damaged("bad state_floats in header");
  }

  // Validates the sizes of a chunk's arrays; returns its number of keys with a v.
  std::uint64_t CheckChunk(const pb::ShardHeader& h, const pb::ShardChunk& c,
                           std::uint64_t index) const {
    const std::uint64_t n = c.keys().size() / sizeof(Key);
    const std::uint64_t s = h.state_floats();
    const std::uint64_t k = VWidth(h);
    const std::uint64_t vs = VStateWidth(h);
    std::uint64_t m = 0;
    for (const char b : c.has_v()) {
      if (b != 0 && b != 1) Damaged(Cat("corrupt has_v in chunk ", index));
      m += static_cast<std::uint64_t>(b);
    }
    const bool ok = c.keys().size() % sizeof(Key) == 0 && c.w().size() == n * 4 &&
                    c.w_state().size() == n * s * 4 &&
                    c.steps().size() == (h.step_counters() ? n * 8 : 0) &&
                    c.counts().size() == (h.min_count() > 1 ? n * 4 : 0) && c.has_v().size() == n &&
                    c.v().size() == m * k * 4 && c.v_state().size() == m * vs * 4;
    if (!ok) Damaged(Cat("array sizes of chunk ", index, " do not match"));
    return m;
  }

  pb::ShardChunk chunk_;
};

// Restores the keys of chunk c kept by `keep` into store; returns how many.
std::uint64_t ApplyChunk(const pb::ShardHeader& h, const pb::ShardChunk& c, ParamStore* store,
                         const std::function<bool(Key)>& keep) {
  const std::size_t n = c.keys().size() / sizeof(Key);
  const std::size_t k = VWidth(h);
  const std::size_t s = h.state_floats();
  const std::size_t vs = VStateWidth(h);
  const bool steps = h.step_counters();
  const bool counts = h.min_count() > 1;
  const auto* w = reinterpret_cast<const float*>(c.w().data());
  const auto* w_state = reinterpret_cast<const float*>(c.w_state().data());
  const auto* v = reinterpret_cast<const float*>(c.v().data());
  const auto* v_state = reinterpret_cast<const float*>(c.v_state().data());
  std::uint64_t restored = 0;
  std::size_t m = 0;  // index of the next v
  for (std::size_t j = 0; j < n; ++j) {
    KeyRecord r;
    std::memcpy(&r.key, c.keys().data() + j * sizeof(Key), sizeof(Key));
    const bool has_v = c.has_v()[j] != 0;
    const std::size_t vi = m;
    if (has_v) ++m;
    if (keep && !keep(r.key)) continue;
    r.w = w[j];
    r.w_state = w_state + j * s;
    if (has_v) {
      r.v = v + vi * k;
      r.v_state = v_state + vi * vs;
    }
    if (steps) {
      std::memcpy(&r.step_w, c.steps().data() + 8 * j, 4);
      std::memcpy(&r.step_v, c.steps().data() + 8 * j + 4, 4);
    }
    if (counts) std::memcpy(&r.count, c.counts().data() + 4 * j, 4);
    store->Restore(r);
    ++restored;
  }
  return restored;
}

std::string Hex(std::uint64_t x) {
  char buf[19];
  std::snprintf(buf, sizeof(buf), "0x%016llx", static_cast<unsigned long long>(x));
  return buf;
}

}  // namespace

ShardFileInfo WriteShardFile(const StoreSnapshot& snap, const std::string& path) {
  const StoreFormat& f = snap.format();
  pb::ShardHeader h;
  h.set_version(kVersion);
  SetShapeOf(f.shape, &h);
  h.set_optimizer(f.optimizer);
  h.set_state_floats(static_cast<std::uint32_t>(f.state_floats));
  h.set_rowwise(f.rowwise);
  h.set_step_counters(f.step_counters);
  h.set_min_count(f.min_count);
  h.set_num_keys(snap.size());
  h.set_num_embedded(snap.embedded());
  h.set_seed(f.seed);
  h.set_init_std(f.init_std);
  RecordWriter file(path, kShardFile);
  file.Write(h);
  const std::size_t per_chunk = std::max<std::size_t>(1, kTargetChunkBytes / KeyBytes(h));
  pb::ShardChunk c;
  for (std::size_t begin = 0; begin < snap.size(); begin += per_chunk) {
    FillChunk(snap, h, begin, std::min(snap.size(), begin + per_chunk), &c);
    file.Write(c);
  }
  file.Finish<pb::ShardChunk>();
  return {.path = path, .bytes = file.bytes(), .checksum = file.digest(), .keys = snap.size()};
}

std::uint64_t LoadShardFile(const std::string& path, const ShardFileInfo* expected,
                            ParamStore* store, const std::function<bool(Key)>& keep) {
  ShardReader reader(path);
  if (expected != nullptr && reader.size() != expected->bytes) {
    reader.Fail(Cat("of ", reader.size(), " bytes, expected ", expected->bytes,
                    " (truncated or replaced)"));
  }
  // Pass 1: the whole file is read and validated before the store is touched.
  std::uint64_t digest = 0;
  const pb::ShardHeader h = reader.Scan(nullptr, &digest);
  if (expected != nullptr && digest != expected->checksum) {
    reader.Damaged(
        Cat("checksum mismatch: file has ", Hex(digest), ", expected ", Hex(expected->checksum)));
  }
  if (expected != nullptr && h.num_keys() != expected->keys) {
    reader.Damaged(Cat("holds ", h.num_keys(), " keys, expected ", expected->keys));
  }
  const StoreFormat& f = store->format();
  if (ShapeOf(h) != f.shape) {
    reader.Fail("saved with model shape " + ShapeOf(h).ToString() + " but the store has " +
                f.shape.ToString());
  }
  if (h.optimizer() != f.optimizer) {
    reader.Fail("saved with optimizer " + h.optimizer() + " but the store uses " + f.optimizer);
  }
  if (static_cast<int>(h.state_floats()) != f.state_floats ||
      h.step_counters() != f.step_counters) {
    reader.Fail(Cat("saved with ", h.state_floats(), " optimizer state floats per parameter",
                    h.step_counters() ? " and step counters" : "", " but the store has ",
                    f.state_floats, f.step_counters ? " and step counters" : ""));
  }
  if (h.rowwise() != f.rowwise) {
    reader.Fail(std::string("saved with ") + (h.rowwise() ? "row-wise" : "element-wise") +
                " optimizer state (optimizer.rowwise: " + (h.rowwise() ? "true" : "false") +
                ") but the store keeps " + (f.rowwise ? "row-wise" : "element-wise") + " state");
  }
  // Pass 2: apply (the same validation again; the file is expected not to have changed).
  std::uint64_t restored = 0;
  std::uint64_t digest2 = 0;
  reader.Scan([&](const pb::ShardHeader& header,
                  const pb::ShardChunk& c) { restored += ApplyChunk(header, c, store, keep); },
              &digest2);
  if (digest2 != digest) reader.Fail("changed while it was being loaded");
  return restored;
}

std::string CheckpointPath(const std::string& dir, std::uint64_t seq) {
  char name[32];
  std::snprintf(name, sizeof(name), "ckpt-%08llu", static_cast<unsigned long long>(seq));
  return dir + "/" + name;
}

std::string ShardFileName(int server) { return "shard-" + std::to_string(server) + ".bin"; }

}  // namespace fmps
