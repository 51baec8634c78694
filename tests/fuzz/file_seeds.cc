// Writes seed corpora for the model and shard targets (see FuzzModelFile and FuzzShardFile in
// fuzz_targets.h) into <dir>/model/ and <dir>/shard/, <dir> the only argument: small real
// files written by ModelWriter and WriteShardFile, as is (option byte even) and without their
// final record (option byte odd: the target seals them again), and crafted variants: a huge
// key count, a k that does not match the chunks, a truncated chunk.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/model/model_file.h"
#include "fmps.pb.h"  // generated from common/proto/fmps.proto
#include "server/store/checkpoint_shard.h"
#include "server/store/optimizer.h"
#include "server/store/param_store.h"

namespace fmps {
namespace {

constexpr std::size_t kFinalRecordBytes = 15;  // length + last + fixed64 checksum

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WriteSeed(const std::string& path, char option, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << option << bytes;
}

// `file` with its header record (after the 8-byte magic) replaced by `edit(header)`.
template <typename Header, typename Edit>
std::string EditHeader(const std::string& file, Edit edit) {
  const auto n = static_cast<std::uint32_t>(static_cast<unsigned char>(file[8]) |
                                            static_cast<unsigned char>(file[9]) << 8 |
                                            static_cast<unsigned char>(file[10]) << 16);
  Header h;
  h.ParseFromString(file.substr(12, n));
  edit(&h);
  const std::string rec = h.SerializeAsString();
  const auto m = static_cast<std::uint32_t>(rec.size());
  std::string out = file.substr(0, 8);
  for (int i = 0; i < 4; ++i) out += static_cast<char>((m >> (8 * i)) & 0xff);
  return out + rec + file.substr(12 + n);
}

// Writes the seeds of one target from one real file: as is, unsealed, and crafted.
template <typename Header>
void WriteSeeds(const std::string& dir, const std::string& name, char option,
                const std::string& file) {
  const std::string open = file.substr(0, file.size() - kFinalRecordBytes);
  const char seal = static_cast<char>(option | 1);
  WriteSeed(dir + "/" + name, option, file);
  WriteSeed(dir + "/" + name + "-unsealed", seal, open);
  WriteSeed(dir + "/" + name + "-huge-count", seal,
            EditHeader<Header>(open, [](Header* h) { h->set_num_keys(std::uint64_t{1} << 62); }));
  WriteSeed(dir + "/" + name + "-wrong-k", seal,
            EditHeader<Header>(open, [](Header* h) { h->set_k(h->k() + 1); }));
  WriteSeed(dir + "/" + name + "-truncated-chunk", option, file.substr(0, file.size() * 2 / 3));
}

void ModelSeeds(const std::string& dir) {
  ModelMeta meta;
  meta.shape = FmShape(2);
  meta.num_keys = 6;
  meta.bias = 0.5f;
  meta.features.data.format = DataFormat::kLibsvm;
  const std::string path = dir + "/tmp.fmps";
  {
    ModelWriter w(path, meta);
    const std::vector<Key> keys = {1, 2, 5, 9, 100, 1u << 30};
    std::vector<float> params;
    for (std::size_t i = 0; i < keys.size() * 3; ++i) params.push_back(0.125f * i - 1.0f);
    w.Append(keys, params);
    w.Finish();
  }
  WriteSeeds<pb::ModelHeader>(dir, "fm-k2", 0, ReadAll(path));
  std::filesystem::remove(path);
}

// A shard of an adagrad (option 0x0a) or adam (0x0c) store with k = 2 (see StoreFor).
void ShardSeeds(const std::string& dir, OptimizerName name, char option) {
  OptimizerConfig c;
  c.name = name;
  StoreOptions o{.shape = FmShape(2), .init_std = 0.1f, .seed = 17, .min_count = 1};
  ParamStore store(o, MakeOptimizer(c));
  std::vector<Key> keys = {3, 7, 11, 0xffffffffffull, 42};
  std::vector<float> rows(keys.size() * 3);
  store.Pull(keys.data(), keys.size(), true, rows.data());
  const std::string path = dir + "/tmp.bin";
  WriteShardFile(store.Snapshot(), path);
  WriteSeeds<pb::ShardHeader>(dir, c.name == OptimizerName::kAdam ? "adam-k2" : "adagrad-k2",
                              option, ReadAll(path));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace fmps

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: file_seeds OUT_DIR\n");
    return 2;
  }
  const std::string out = argv[1];
  std::filesystem::create_directories(out + "/model");
  std::filesystem::create_directories(out + "/shard");
  try {
    fmps::ModelSeeds(out + "/model");
    fmps::ShardSeeds(out + "/shard", fmps::OptimizerName::kAdagrad, 0x0a);
    fmps::ShardSeeds(out + "/shard", fmps::OptimizerName::kAdam, 0x0c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "file_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
