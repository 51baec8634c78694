#include "worker/job/model_save.h"

#include <algorithm>
#include <span>
#include <utility>

#include "common/base/types.h"

namespace fmps {

namespace {
// Keys per AppendRows call: besides the dump the writer holds one piece's row pointers, not
// a sorted copy of the model (for FFM at 39 fields and k 8 a model of 674k keys is 850 MB).
constexpr std::size_t kSavePieceKeys = std::size_t{1} << 16;
}  // namespace

ModelSave::ModelSave(const ModelSaveRequest& request) {
  const Config& config = *request.config;
  const ModelShape shape = ShapeFromConfig(config.model);
  width_ = static_cast<std::size_t>(shape.row_width());
  Dump(request);
  ModelMeta meta;
  meta.shape = shape;
  meta.loss = config.model.loss;
  meta.features = *request.spec;
  meta.config_yaml = ConfigToYaml(config);
  // The bias row (the largest key, so the last after sorting) goes into the header.
  const auto bias =
      std::find_if(keys_.begin(), keys_.end(), [](const Where& w) { return w.key == kBiasKey; });
  if (bias != keys_.end()) meta.bias = RowOf(*bias)[0];
  meta.num_keys = keys_.size() - (bias != keys_.end() ? 1 : 0);
  saved_.num_keys = meta.num_keys;
  const ModelTarget& target = request.target;
  if (target.bytes != nullptr) {
    writer_.emplace(target.bytes, target.path, meta);
  } else {
    writer_.emplace(target.path, meta);
  }
  thread_ = std::thread([this] {
    try {
      Write();
    } catch (...) {
      error_ = std::current_exception();
    }
  });
}

ModelSave::~ModelSave() {
  if (thread_.joinable()) thread_.join();
}

void ModelSave::Dump(const ModelSaveRequest& request) {
  saved_.server_bytes = DumpServers(
      request.control, request.num_servers, static_cast<int>(width_),
      [&](int, std::span<const Key> ks, std::vector<float>&& vs) {
        const auto c = static_cast<std::uint32_t>(chunks_.size());
        chunks_.push_back(std::move(vs));  // kept as received: no copy
        for (std::size_t i = 0; i < ks.size(); ++i) {
          keys_.push_back({ks[i], c, static_cast<std::uint32_t>(i)});
        }
      },
      request.what);
  saved_.stored_keys = keys_.size();
}

void ModelSave::Write() {
  std::sort(keys_.begin(), keys_.end(),
            [](const Where& a, const Where& b) { return a.key < b.key; });
  if (!keys_.empty() && keys_.back().key == kBiasKey) keys_.pop_back();  // in the header
  std::vector<Key> piece_keys;
  std::vector<const float*> piece_rows;  // each row is copied once, into the file's buffer
  for (std::size_t begin = 0; begin < keys_.size(); begin += kSavePieceKeys) {
    const std::size_t end = std::min(keys_.size(), begin + kSavePieceKeys);
    piece_keys.clear();
    piece_rows.clear();
    for (std::size_t i = begin; i < end; ++i) {
      piece_keys.push_back(keys_[i].key);
      piece_rows.push_back(RowOf(keys_[i]));
    }
    writer_->AppendRows(piece_keys, piece_rows);
  }
  writer_->Seal();
}

SavedModel ModelSave::Finish() {
  thread_.join();
  if (error_) std::rethrow_exception(error_);
  writer_->Publish();
  return saved_;
}

SavedModel SaveModelFromServers(const ModelSaveRequest& request) {
  return ModelSave(request).Finish();
}

}  // namespace fmps
