#include "common/comm/collectives.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "common/base/error.h"

namespace fmps {
namespace {

template <typename T>
std::string ToBytes(std::span<const T> values) {
  std::string bytes(values.size_bytes(), '\0');
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), values.size_bytes());
  return bytes;
}

// Concatenates the slots, read as arrays of T.
template <typename T>
std::vector<T> Concat(const std::vector<std::string>& slots) {
  std::size_t total = 0;
  for (const std::string& s : slots) total += s.size() / sizeof(T);
  std::vector<T> out(total);
  std::size_t at = 0;
  for (const std::string& s : slots) {
    if (!s.empty()) std::memcpy(out.data() + at, s.data(), s.size());
    at += s.size() / sizeof(T);
  }
  return out;
}

}  // namespace

InProcCollectiveGroup::InProcCollectiveGroup(int size, int progress_width)
    : size_(size),
      width_(progress_width),
      slots_(size),
      latest_(static_cast<std::size_t>(size) * progress_width, 0.0) {}

void InProcCollectiveGroup::Abort(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (abort_reason_.empty()) abort_reason_ = reason.empty() ? "job aborted" : reason;
  cv_.notify_all();
}

std::vector<std::string> InProcCollectiveGroup::Exchange(int rank, std::string mine,
                                                         bool read_all) {
  std::unique_lock<std::mutex> lock(mu_);
  auto check = [&] {
    if (!abort_reason_.empty()) throw TransportError(abort_reason_);
  };
  // Wait until the previous exchange has been read by everyone.
  cv_.wait(lock, [&] { return !draining_ || !abort_reason_.empty(); });
  check();
  slots_[rank] = std::move(mine);
  if (++arrived_ == size_) {
    draining_ = true;
    leaving_ = size_;
    cv_.notify_all();
  } else {
    cv_.wait(lock, [&] { return draining_ || !abort_reason_.empty(); });
    check();
  }
  std::vector<std::string> out;
  if (read_all) out = slots_;
  if (--leaving_ == 0) {
    draining_ = false;
    arrived_ = 0;
    for (std::string& s : slots_) s.clear();
    cv_.notify_all();
  }
  return out;
}

void InProcCollectiveGroup::Post(int rank, std::span<const double> counters) {
  if (static_cast<int>(counters.size()) != width_) {
    throw std::logic_error("progress post of the wrong width");
  }
  std::lock_guard<std::mutex> lock(progress_mu_);
  std::copy(counters.begin(), counters.end(), latest_.begin() + rank * width_);
}

std::vector<double> InProcCollectiveGroup::Latest() {
  std::lock_guard<std::mutex> lock(progress_mu_);
  return latest_;
}

std::vector<double> InProcCollectives::Gather(std::span<const double> mine) {
  return Concat<double>(group_->Exchange(rank_, ToBytes(mine), is_root()));
}

std::vector<float> InProcCollectives::GatherV(std::span<const float> mine) {
  return Concat<float>(group_->Exchange(rank_, ToBytes(mine), is_root()));
}

std::vector<std::string> InProcCollectives::GatherBytes(const std::string& mine) {
  return group_->Exchange(rank_, mine, is_root());
}

void InProcCollectives::AllReduce(std::span<std::uint64_t> values, ReduceOp op) {
  const std::vector<std::string> all =
      group_->Exchange(rank_, ToBytes(std::span<const std::uint64_t>(values)), true);
  for (const std::string& s : all) {
    if (s.size() != values.size_bytes()) throw std::logic_error("AllReduce: counts differ");
  }
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::uint64_t r = 0;
    for (const std::string& s : all) {
      std::uint64_t v;
      std::memcpy(&v, s.data() + i * sizeof(v), sizeof(v));
      r = op == ReduceOp::kSum ? r + v : std::max(r, v);
    }
    values[i] = r;
  }
}

void InProcCollectives::Broadcast(std::string* bytes) {
  std::vector<std::string> all = group_->Exchange(rank_, is_root() ? *bytes : std::string(), true);
  *bytes = std::move(all[0]);
}

void InProcCollectives::PostProgress(std::span<const double> counters) {
  group_->Post(rank_, counters);
}

}  // namespace fmps
