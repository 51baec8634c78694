#include "worker/predict/scoring.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/base/error.h"
#include "common/data/row_block.h"

namespace fmps {
namespace {

// A block of rows on its way through the pipeline.
struct Slot {
  std::uint64_t seq = 0;  // position of the block in the input
  RowBlock block;
  std::vector<float> scores;
  std::string text;
};

void ScoreSlot(const Model& model, const ScoringOptions& options, std::vector<std::uint32_t>* local,
               Slot* s) {
  s->scores.resize(s->block.rows());
  model.Score(s->block, local, s->scores.data());
  s->text.clear();
  if (options.format) options.format(s->scores, &s->text);
}

ScoredRows View(const Slot& s) { return {s.scores, s.block.labels, s.text}; }

// Reader thread -> scorer threads -> the calling thread, over a fixed pool of slots.
// Invariant: the blocks in flight (read, not yet passed to the sink) are consecutive and at
// most pool-size many, so block `seq` can wait for the sink in done_[seq % pool size].
class Pipeline {
 public:
  Pipeline(const Model& model, const ScoringOptions& options, ShardReader* reader)
      : model_(model), options_(options), reader_(reader) {
    const std::size_t n = 2 * static_cast<std::size_t>(options.threads) + 2;
    for (std::size_t i = 0; i < n; ++i) {
      pool_.push_back(std::make_unique<Slot>());
      free_.push_back(pool_.back().get());
    }
    done_.assign(n, nullptr);
  }

  ~Pipeline() { Join(); }

  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  void Run(const std::function<void(const ScoredRows&)>& sink) {
    try {
      threads_.emplace_back([this] { ReadLoop(); });
      for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { ScoreLoop(); });
      WriteLoop(sink);
    } catch (...) {
      Fail(std::current_exception());
    }
    Join();
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void ReadLoop() {
    try {
      for (;;) {
        Slot* s = nullptr;
        {
          std::unique_lock<std::mutex> lock(mu_);
          read_cv_.wait(lock, [&] { return stop_ || !free_.empty(); });
          if (stop_) return;
          s = free_.back();
          free_.pop_back();
        }
        s->block.Clear();
        const bool any = reader_->Read(options_.block_rows, &s->block) > 0;
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (any) {
            s->seq = blocks_read_++;
            to_score_.push_back(s);
          } else {
            free_.push_back(s);
            read_done_ = true;
          }
        }
        if (!any) {
          score_cv_.notify_all();
          write_cv_.notify_one();
          return;
        }
        score_cv_.notify_one();
      }
    } catch (...) {
      Fail(std::current_exception());
    }
  }

  void ScoreLoop() {
    std::vector<std::uint32_t> local;
    try {
      for (;;) {
        Slot* s = nullptr;
        {
          std::unique_lock<std::mutex> lock(mu_);
          score_cv_.wait(lock, [&] { return stop_ || read_done_ || !to_score_.empty(); });
          if (stop_ || to_score_.empty()) return;
          s = to_score_.front();
          to_score_.pop_front();
        }
        ScoreSlot(model_, options_, &local, s);
        {
          std::lock_guard<std::mutex> lock(mu_);
          done_[s->seq % done_.size()] = s;
        }
        write_cv_.notify_one();
      }
    } catch (...) {
      Fail(std::current_exception());
    }
  }

  void WriteLoop(const std::function<void(const ScoredRows&)>& sink) {
    for (std::uint64_t next = 0;; ++next) {
      Slot*& waiting = done_[next % done_.size()];
      Slot* s = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        write_cv_.wait(lock, [&] {
          return stop_ || waiting != nullptr || (read_done_ && next == blocks_read_);
        });
        if (stop_ || waiting == nullptr) return;
        s = waiting;
        waiting = nullptr;
      }
      sink(View(*s));
      {
        std::lock_guard<std::mutex> lock(mu_);
        free_.push_back(s);
      }
      read_cv_.notify_one();
    }
  }

  // Records the first error and stops every thread.
  void Fail(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::move(e);
      stop_ = true;
    }
    read_cv_.notify_all();
    score_cv_.notify_all();
    write_cv_.notify_all();
  }

  void Join() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    read_cv_.notify_all();
    score_cv_.notify_all();
    write_cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }

  const Model& model_;
  const ScoringOptions& options_;
  ShardReader* reader_;

  std::mutex mu_;
  std::condition_variable read_cv_;   // a slot became free
  std::condition_variable score_cv_;  // a block was read, or reading ended
  std::condition_variable write_cv_;  // a block was scored, or reading ended
  std::vector<std::unique_ptr<Slot>> pool_;
  std::vector<Slot*> free_;
  std::deque<Slot*> to_score_;  // read, in input order
  std::vector<Slot*> done_;     // scored, waiting for the sink: block seq at seq % size
  std::uint64_t blocks_read_ = 0;
  bool read_done_ = false;
  bool stop_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

}  // namespace

int DefaultScoringThreads() {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

ScoringStats ScoreFile(const Model& model, const FeatureSpec& spec, const std::string& data,
                       const ScoringOptions& options,
                       const std::function<void(const ScoredRows& rows)>& sink) {
  if (options.threads < 1) throw ConfigError("scoring needs at least one thread");
  if (options.block_rows < 1) throw ConfigError("scoring needs at least one row per block");
  ShardReader reader(spec, {data}, 0, 1);
  if (options.threads == 1) {
    Slot s;
    std::vector<std::uint32_t> local;
    for (;;) {
      s.block.Clear();
      if (reader.Read(options.block_rows, &s.block) == 0) break;
      ScoreSlot(model, options, &local, &s);
      sink(View(s));
    }
  } else {
    Pipeline(model, options, &reader).Run(sink);
  }
  return {reader.rows_read(), reader.bad_rows()};
}

ScoringStats ScoreFile(const Model& model, const FeatureSpec& spec, const std::string& data,
                       int threads,
                       const std::function<void(std::span<const float> scores,
                                                std::span<const float> labels)>& sink_in_order) {
  ScoringOptions options;
  options.threads = threads;
  return ScoreFile(model, spec, data, options,
                   [&](const ScoredRows& rows) { sink_in_order(rows.scores, rows.labels); });
}

}  // namespace fmps
