#include "common/comm/transport.h"

#include "common/base/error.h"

namespace fmps {

// ---- ChannelQueues ----

void ChannelQueues::Push(Received r) {
  const std::uint64_t n = next_++;
  if (Message* m = std::get_if<Message>(&r)) {
    data_.emplace_back(n, std::move(*m));
  } else {
    control_.emplace_back(n, std::get<ControlMessage>(std::move(r)));
  }
}

bool ChannelQueues::Empty(Channels from) const {
  switch (from) {
    case Channels::kData:
      return data_.empty();
    case Channels::kControl:
      return control_.empty();
    case Channels::kBoth:
      break;
  }
  return data_.empty() && control_.empty();
}

Received ChannelQueues::Pop(Channels from) {
  const bool data = from == Channels::kData ||
                    (from == Channels::kBoth && !data_.empty() &&
                     (control_.empty() || data_.front().first < control_.front().first));
  if (data) {
    Received r(std::in_place_type<Message>, std::move(data_.front().second));
    data_.pop_front();
    return r;
  }
  Received r(std::in_place_type<ControlMessage>, std::move(control_.front().second));
  control_.pop_front();
  return r;
}

// ---- InProcHub ----

class InProcHub::Endpoint : public Transport {
 public:
  Endpoint(InProcHub* hub, int id) : hub_(hub), id_(id) {}

  int endpoint() const override { return id_; }
  bool moves_buffers() const override { return true; }

  void Send(int dest, Message msg) override {
    msg.sender = id_;
    Deliver(dest, Received(std::in_place_type<Message>, std::move(msg)));
  }

  void SendControl(int dest, pb::Control msg) override {
    if (msg.body_case() == pb::Control::BODY_NOT_SET) {
      throw TransportError("send of a control message without a body");
    }
    Deliver(dest,
            Received(std::in_place_type<ControlMessage>, ControlMessage{id_, std::move(msg)}));
  }

  std::optional<Received> Receive(std::chrono::milliseconds timeout, Channels from) override {
    Mailbox& box = *hub_->boxes_[id_];
    std::unique_lock<std::mutex> lock(box.mu);
    box.cv.wait_for(lock, timeout, [&] { return !box.queues.Empty(from) || Aborted(); });
    CheckAborted();
    if (box.queues.Empty(from)) return std::nullopt;
    return box.queues.Pop(from);
  }

 private:
  void Deliver(int dest, Received r) {
    if (dest < 0 || dest >= static_cast<int>(hub_->boxes_.size())) {
      throw TransportError("send to unknown endpoint " + std::to_string(dest));
    }
    Mailbox& box = *hub_->boxes_[dest];
    {
      std::lock_guard<std::mutex> lock(box.mu);
      CheckAborted();
      box.queues.Push(std::move(r));
    }
    box.cv.notify_one();
  }
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
