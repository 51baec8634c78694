#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "server/store/initial_embedding.h"
#include "server/store/param_store.h"
#include "server/store/param_store_impl.h"

// Bulk state in and out of a store: Set (model loading), Restore and snapshots
// (checkpoints), ForEach (dumps). Not on the training path.
namespace fmps {

using store_internal::kLineBytes;
using store_internal::Load32;
using store_internal::LoadKey;
using store_internal::RoundUp;
using store_internal::Store32;

StoreSnapshot::StoreSnapshot() : data_(std::make_unique<Data>()) {}
StoreSnapshot::~StoreSnapshot() = default;
StoreSnapshot::StoreSnapshot(StoreSnapshot&&) noexcept = default;
StoreSnapshot& StoreSnapshot::operator=(StoreSnapshot&&) noexcept = default;

const StoreFormat& StoreSnapshot::format() const { return data_->format; }
std::size_t StoreSnapshot::size() const { return data_->rows; }
std::size_t StoreSnapshot::embedded() const { return data_->embedded; }
std::size_t StoreSnapshot::bytes() const { return sizeof(*this) + sizeof(Data) + data_->buf_bytes; }

KeyRecord StoreSnapshot::record(std::size_t i) const {
  const Data& d = *data_;
  const float* r = reinterpret_cast<const float*>(d.wbuf + i * d.stride);
  KeyRecord rec;
  rec.key = LoadKey(r);
  rec.w = r[2];
  rec.w_state = r + d.ws;
  if (d.format.step_counters) {
    rec.step_w = Load32(r + d.step);
    rec.step_v = Load32(r + d.step + 1);
  }
  if (!d.lazy_v) {
    if (rec.key != kBiasKey) {
      rec.v = r + d.v;
      rec.v_state = r + d.vs;
    }
  } else {
    rec.count = Load32(r + d.count);
    if (const std::uint32_t vref = Load32(r + d.vref); vref != 0) {
      rec.v = reinterpret_cast<const float*>(d.vbuf + (vref - 1) * d.vstride);
      rec.v_state = rec.v + d.format.shape.v_width();
    }
  }
  return rec;
}

void ParamStore::Impl::Set(Key key, const float* row) {
  const std::uint32_t idx = LookUp(key, /*create=*/true, /*init=*/true);
  float* r = WRow(idx);
  r[kW] = row[0];
  optimizer_->InitState(r + kW, r + ws_, 1, options_.l2_w);
  if (steps_) {
    Store32(r + step_, 0);
    Store32(r + step_ + 1, 0);
  }
  if (key == kBiasKey) return;
  const float* v_in = row + 1;
  float* v = nullptr;
  float* vs = nullptr;
  if (!lazy_v_) {
    v = r + v_;
    vs = r + vs_;
  } else {
    std::uint32_t vref = Load32(r + vref_);
    if (vref == 0 && std::any_of(v_in, v_in + v_width_, [](float x) { return x != 0.0f; })) {
      vref = GiveV(r) + 1;
    }
    if (vref == 0) return;  // an unembedded key stays unembedded
    v = VRow(vref - 1);
    vs = v + v_width_;
  }
  std::copy(v_in, v_in + v_width_, v);
  optimizer_->InitVectors(v, vs, v_width_, vec_, options_.l2_v);
}

bool ParamStore::Impl::Restore(const KeyRecord& rec) {
  const Key key = rec.key;
  const bool bias = key == kBiasKey;
  const bool has_v = rec.v != nullptr && !bias;
  std::uint32_t idx = LookUp(key, /*create=*/false, /*init=*/false);
  const bool created = idx == kNoRow;
  if (!created && lazy_v_ && !has_v && !bias && Load32(WRow(idx) + vref_) != 0) {
    throw std::invalid_argument("ParamStore::Restore: the key has a v but the record has none");
  }
  if (created) idx = LookUp(key, /*create=*/true, /*init=*/false);
  float* r = WRow(idx);
  const std::size_t v_state_bytes = static_cast<std::size_t>(vstate_) * sizeof(float);
  r[kW] = rec.w;
  if (state_ > 0)
    std::memcpy(r + ws_, rec.w_state, static_cast<std::size_t>(state_) * sizeof(float));
  if (steps_) {
    Store32(r + step_, rec.step_w);
    Store32(r + step_ + 1, rec.step_v);
  }
  if (bias) return created;  // its v (present when !lazy_v_) stays 0
  if (!lazy_v_) {
    if (has_v) {
      std::memcpy(r + v_, rec.v, static_cast<std::size_t>(v_width_) * sizeof(float));
      if (state_ > 0) std::memcpy(r + vs_, rec.v_state, v_state_bytes);
    } else {  // saved under min_count > 1 before it was embedded: as at creation
      InitialEmbedding(options_.seed, key, v_width_, options_.init_std, r + v_);
      optimizer_->InitVectors(r + v_, r + vs_, v_width_, vec_, options_.l2_v);
    }
    return created;
  }
  Store32(r + count_, rec.count);
  if (!has_v) return created;
  std::uint32_t vref = Load32(r + vref_);
  if (vref == 0) {
    vref = vrows_.Add() + 1;  // r stays valid: another arena
    Store32(r + vref_, vref);
  }
  float* v = VRow(vref - 1);
  std::memcpy(v, rec.v, static_cast<std::size_t>(v_width_) * sizeof(float));
  if (state_ > 0) std::memcpy(v + v_width_, rec.v_state, v_state_bytes);
  return created;
}

void ParamStore::Impl::FillSnapshot(StoreSnapshot::Data* d) const {
  const std::size_t w_bytes = RoundUp(std::size_t{rows_.rows()} * rows_.stride(), kLineBytes);
  const std::size_t v_bytes = lazy_v_ ? std::size_t{vrows_.rows()} * vrows_.stride() : 0;
  const std::size_t need = w_bytes + v_bytes;
  if (need > d->buf_bytes) {
    Unmap(d->buf, d->buf_bytes);  // first: lowers the peak
    d->buf = nullptr;
    d->buf_bytes = 0;
    // 1/8 slack, so that a recycled snapshot usually fits the next one of a growing store.
    const std::size_t bytes = RoundUp(need + need / 8, kPageBytes);
    d->buf = MapZeroed(bytes);
    d->buf_bytes = bytes;
  }
  d->wbuf = d->buf;
  d->vbuf = d->buf + w_bytes;
  rows_.CopyTo(d->buf);
  if (lazy_v_) vrows_.CopyTo(d->buf + w_bytes);
  d->format = format_;
  d->lazy_v = lazy_v_;
  d->v = v_;
  d->ws = ws_;
  d->vs = vs_;
  d->step = step_;
  d->count = count_;
  d->vref = vref_;
  d->stride = rows_.stride();
  d->vstride = vrows_.stride();
  d->rows = rows_.rows();
  d->embedded = embedded();
}

void ParamStore::Impl::ForEach(const std::function<void(Key, const float*)>& fn) const {
  std::vector<float> buf(static_cast<std::size_t>(row_width_));
  for (std::uint32_t i = 0; i < rows_.rows(); ++i) {
    const float* r = WRow(i);
    buf[0] = r[kW];
    const float* v = nullptr;
    if (!lazy_v_) {
      v = r + v_;
    } else if (const std::uint32_t vref = Load32(r + vref_); vref != 0) {
      v = VRow(vref - 1);
    }
    if (v != nullptr) {
      std::copy(v, v + v_width_, buf.begin() + 1);
    } else {
      std::fill(buf.begin() + 1, buf.end(), 0.0f);
    }
    fn(LoadKey(r), buf.data());
  }
}

}  // namespace fmps
