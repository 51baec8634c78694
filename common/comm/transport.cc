#include "common/comm/transport.h"

#include "common/base/error.h"

namespace fmps {

class InProcHub::Endpoint : public Transport {
 public:
  Endpoint(InProcHub* hub, int id) : hub_(hub), id_(id) {}

  int endpoint() const override { return id_; }
  bool moves_buffers() const override { return true; }

  void Send(int dest, Message msg) override {
    if (dest < 0 || dest >= static_cast<int>(hub_->boxes_.size())) {
      throw TransportError("send to unknown endpoint " + std::to_string(dest));
    }
    msg.sender = id_;
    Mailbox& box = *hub_->boxes_[dest];
    {
      std::lock_guard<std::mutex> lock(box.mu);
      CheckAborted();
      box.queue.push_back(std::move(msg));
    }
    box.cv.notify_one();
  }

  std::optional<Message> Recv(std::chrono::milliseconds timeout) override {
    Mailbox& box = *hub_->boxes_[id_];
    std::unique_lock<std::mutex> lock(box.mu);
    box.cv.wait_for(lock, timeout, [&] { return !box.queue.empty() || Aborted(); });
    CheckAborted();
    if (box.queue.empty()) return std::nullopt;
    Message m = std::move(box.queue.front());
    box.queue.pop_front();
    return m;
  }

 private:
  bool Aborted() {
    std::lock_guard<std::mutex> lock(hub_->abort_mu_);
    return hub_->aborted_;
  }
  void CheckAborted() {
    std::lock_guard<std::mutex> lock(hub_->abort_mu_);
    if (hub_->aborted_) throw TransportError(hub_->abort_reason_);
  }

  InProcHub* hub_;
  int id_;
};

InProcHub::InProcHub(int endpoints) {
  for (int i = 0; i < endpoints; ++i) boxes_.push_back(std::make_unique<Mailbox>());
}

InProcHub::~InProcHub() = default;

std::unique_ptr<Transport> InProcHub::Connect(int id) {
  return std::make_unique<Endpoint>(this, id);
}

void InProcHub::Abort(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(abort_mu_);
    if (aborted_) return;
    aborted_ = true;
    abort_reason_ = reason;
  }
  for (auto& box : boxes_) {
    std::lock_guard<std::mutex> lock(box->mu);  // orders the flag before waiters re-check
    box->cv.notify_all();
  }
}

}  // namespace fmps
