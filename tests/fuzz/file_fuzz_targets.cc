// Fuzz target bodies of the model file (Model::Load) and checkpoint shard (LoadShardFile)
// loaders; see tests/fuzz/fuzz_targets.h for their contracts.
#include <xxhash.h>

#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/model/model_file.h"
#include "fmps.pb.h"  // generated from common/proto/fmps.proto
#include "server/store/checkpoint_shard.h"
#include "server/store/optimizer.h"
#include "server/store/param_store.h"
#include "tests/fuzz/fuzz_targets.h"
#include "tests/fuzz/fuzz_util.h"

namespace fmps::fuzz {
namespace {

// The file a target loads: the bytes after the option byte, followed when `seal` by a
// final record (last = true, no keys, the XXH3-64 of those bytes) built with `final`'s type,
// so that crafted headers and chunks get past the checksum.
template <typename FinalRecord>
std::string FileBytes(const std::uint8_t* data, std::size_t size, bool seal) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  if (!seal) return bytes;
  FinalRecord last;
  last.set_last(true);
  last.set_checksum(XXH3_64bits(bytes.data(), bytes.size()));
  const std::string rec = last.SerializeAsString();
  const auto n = static_cast<std::uint32_t>(rec.size());
  for (int i = 0; i < 4; ++i) bytes += static_cast<char>((n >> (8 * i)) & 0xff);
  return bytes + rec;
}

int FuzzModelImpl(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string bytes = FileBytes<pb::ModelChunk>(data + 1, size - 1, (data[0] & 1) != 0);
  const ScratchFile file(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  std::unique_ptr<Model> m;
  try {
    m = std::make_unique<Model>(Model::Load(file.path()));
  } catch (const ModelError& e) {
    FUZZ_CHECK(std::string(e.what()).rfind(file.path(), 0) == 0);  // names the file first
    return 0;
  } catch (const IoError&) {
    return 0;
  }
  // A loaded model: as many keys as announced, strictly ascending; written again and loaded
  // back, it is bit-identical.
  FUZZ_CHECK(m->num_keys() == m->meta().num_keys);
  for (std::size_t i = 1; i < m->num_keys(); ++i) FUZZ_CHECK(m->keys()[i - 1] < m->keys()[i]);
  const std::size_t width = static_cast<std::size_t>(m->shape().row_width());
  const ScratchFile copy(nullptr, 0);
  {
    ModelWriter w(copy.path(), m->meta());
    for (std::size_t i = 0; i < m->num_keys(); ++i) {
      w.Append({&m->keys()[i], 1}, {m->row(i), width});
    }
    w.Finish();
  }
  const Model again = Model::Load(copy.path());
  FUZZ_CHECK(again.keys() == m->keys());
  FUZZ_CHECK(std::memcmp(&again.meta().bias, &m->meta().bias, sizeof(float)) == 0);
  if (m->num_keys() > 0) {
    FUZZ_CHECK(std::memcmp(again.row(0), m->row(0), m->num_keys() * width * sizeof(float)) == 0);
  }
  return 0;
}

// The store a shard input is loaded into: option bits 1-2 choose the optimizer, bits 3-4 k
// (1..4), bit 5 min_count 1 or 3.
std::unique_ptr<ParamStore> StoreFor(std::uint8_t option) {
  constexpr std::array<OptimizerName, 4> kNames = {OptimizerName::kSgd, OptimizerName::kAdagrad,
                                                   OptimizerName::kAdam, OptimizerName::kFtrl};
  OptimizerConfig c;
  c.name = kNames[(option >> 1) & 3];
  c.lr = 0.1f;
  StoreOptions o{.shape = FmShape(1 + ((option >> 3) & 3)),
                 .init_std = 0.1f,
                 .seed = 17,
                 .min_count = (option & 0x20) != 0 ? 3u : 1u,
                 .l2_w = 0.0f,
                 .l2_v = 0.0f};
  return std::make_unique<ParamStore>(o, MakeOptimizer(c));
}

int FuzzShardImpl(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string bytes = FileBytes<pb::ShardChunk>(data + 1, size - 1, (data[0] & 1) != 0);
  const ScratchFile file(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  std::unique_ptr<ParamStore> store = StoreFor(data[0]);
  std::uint64_t restored = 0;
  try {
    restored = LoadShardFile(file.path(), nullptr, store.get(), {});
  } catch (const ModelError& e) {
    FUZZ_CHECK(std::string(e.what()).find(file.path()) != std::string::npos);
    FUZZ_CHECK(store->size() == 0);  // a refused file leaves the store unchanged
    return 0;
  } catch (const IoError&) {
    FUZZ_CHECK(store->size() == 0);
    return 0;
  }
  // Every saved key restored (a key saved twice overwrites itself); the store saved again
  // and loaded into a fresh store gives the same keys.
  FUZZ_CHECK(store->size() <= restored);
  const ScratchFile copy(nullptr, 0);
  const ShardFileInfo info = WriteShardFile(store->Snapshot(), copy.path());
  FUZZ_CHECK(info.keys == store->size());
  std::unique_ptr<ParamStore> again = StoreFor(data[0]);
  FUZZ_CHECK(LoadShardFile(copy.path(), &info, again.get(), {}) == store->size());
  FUZZ_CHECK(again->size() == store->size());
  return 0;
}

}  // namespace

int FuzzModelFile(const std::uint8_t* data, std::size_t size) { return FuzzModelImpl(data, size); }
int FuzzShardFile(const std::uint8_t* data, std::size_t size) { return FuzzShardImpl(data, size); }

}  // namespace fmps::fuzz
