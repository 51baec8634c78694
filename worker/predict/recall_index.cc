// Top-k retrieval by maximum inner product: see recall_index.h.

#include "worker/predict/recall_index.h"

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/index_factory.h>
#include <omp.h>

// GCC 12 reports false "may be used uninitialized" inside Eigen's AVX-512 GEMM kernels
// (avx512fintrin.h), at their instantiation in this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Our threads each run their own products: no OpenMP inside Eigen (this file is built
// with -fopenmp for Faiss).
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <thread>

#include "common/base/error.h"

namespace fmps {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMatrix>;

struct Candidate {
  float score;
  std::uint32_t item;
};
// a ranks before b: higher score, then lower item index.
bool Before(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.item < b.item);
}

// A bounded heap of the best k candidates; its top is the worst kept one.
class TopKHeap {
 public:
  explicit TopKHeap(int k) : k_(static_cast<std::size_t>(k)) { heap_.reserve(k_); }
  // Candidates must come in increasing item order (a later equal score never displaces).
  void Offer(float score, std::uint32_t item) {
    if (heap_.size() < k_) {
      heap_.push_back({score, item});
      std::push_heap(heap_.begin(), heap_.end(), Before);
    } else if (score > heap_.front().score) {
      std::pop_heap(heap_.begin(), heap_.end(), Before);
      heap_.back() = {score, item};
      std::push_heap(heap_.begin(), heap_.end(), Before);
    }
  }
  float threshold() const {
    return heap_.size() < k_ ? -std::numeric_limits<float>::infinity() : heap_.front().score;
  }
  void Take(TopK* out) {
    std::sort(heap_.begin(), heap_.end(), Before);
    out->items.clear();
    out->scores.clear();
    for (const Candidate& c : heap_) {
      out->items.push_back(c.item);
      out->scores.push_back(c.score);
    }
    heap_.clear();
  }

 private:
  std::size_t k_;
  std::vector<Candidate> heap_;
};

class ExactIndex : public RecallIndex {
 public:
  ExactIndex(const float* items, std::size_t count, int dim, int threads)
      : items_(items, static_cast<Eigen::Index>(count), dim), threads_(threads) {}

  void Search(const RecallQuery& q, std::vector<TopK>* out) const override {
    out->resize(q.n);
    const std::size_t per = (q.n + threads_ - 1) / static_cast<std::size_t>(threads_);
    std::vector<std::thread> pool;
    for (int t = 1; t < threads_; ++t) {
      const std::size_t b = std::min(q.n, per * t), e = std::min(q.n, per * (t + 1));
      if (b < e) pool.emplace_back([&, b, e] { SearchRange(q, b, e, out); });
    }
    SearchRange(q, 0, std::min(q.n, per), out);
    for (auto& th : pool) th.join();
  }

  void SetParameters(const std::string& params) override {
    throw ConfigError("--index: exact takes no parameters, got '" + params + "'");
  }

 private:
  static constexpr Eigen::Index kUserBlock = 64;
  static constexpr Eigen::Index kItemBlock = 2048;

  // Users [begin, end) of q, in blocks of kUserBlock against blocks of kItemBlock items.
  void SearchRange(const RecallQuery& q, std::size_t begin, std::size_t end,
                   std::vector<TopK>* out) const {
    const ConstRowMap users(q.users, static_cast<Eigen::Index>(q.n), items_.cols());
    RowMatrix scores;
    std::vector<TopKHeap> heaps;
    for (std::size_t u0 = begin; u0 < end; u0 += kUserBlock) {
      const Eigen::Index nu = std::min<Eigen::Index>(kUserBlock, end - u0);
      heaps.assign(nu, TopKHeap(q.k));
      for (Eigen::Index i0 = 0; i0 < items_.rows(); i0 += kItemBlock) {
        const Eigen::Index ni = std::min(kItemBlock, items_.rows() - i0);
        scores.resize(nu, ni);
        scores.noalias() = users.middleRows(u0, nu) * items_.middleRows(i0, ni).transpose();
        for (Eigen::Index u = 0; u < nu; ++u) {
          float* row = scores.data() + u * ni;
          if (!q.exclude.empty()) Exclude(q.exclude[u0 + u], i0, ni, row);
          Select(row, ni, static_cast<std::uint32_t>(i0), &heaps[u]);
        }
      }
      for (Eigen::Index u = 0; u < nu; ++u) heaps[u].Take(&(*out)[u0 + u]);
    }
  }

  static void Exclude(const std::vector<std::uint32_t>& ex, Eigen::Index i0, Eigen::Index ni,
                      float* row) {
    auto it = std::lower_bound(ex.begin(), ex.end(), static_cast<std::uint32_t>(i0));
    for (; it != ex.end() && *it < i0 + ni; ++it) {
      row[*it - i0] = -std::numeric_limits<float>::infinity();
    }
  }

  // Offers the scores above the heap's threshold. Most chunks of kChunk scores hold none:
  // their (vectorised) maximum is checked first. Excluded (-inf) and NaN scores never pass,
  // and a later equal score never displaces (ties go to the lower index).
  static void Select(const float* row, Eigen::Index ni, std::uint32_t first, TopKHeap* heap) {
    constexpr Eigen::Index kChunk = 16;
    float threshold = heap->threshold();
    Eigen::Index i = 0;
    for (; i + kChunk <= ni; i += kChunk) {
      if (Eigen::Map<const Eigen::Array<float, kChunk, 1>>(row + i).maxCoeff() <= threshold) {
        continue;
      }
      for (Eigen::Index j = i; j < i + kChunk; ++j) {
        if (row[j] > threshold) {
          heap->Offer(row[j], first + static_cast<std::uint32_t>(j));
          threshold = heap->threshold();
        }
      }
    }
    for (; i < ni; ++i) {
      if (row[i] > threshold) {
        heap->Offer(row[i], first + static_cast<std::uint32_t>(i));
        threshold = heap->threshold();
      }
    }
  }

  ConstRowMap items_;
  int threads_;
};

// Faiss over the items after the MIPS-to-L2 transform: item x -> [x, sqrt(M^2 - |x|^2)]
// (M the largest item norm), query q -> [q, 0]; then |q' - x'|^2 = |q|^2 + M^2 - 2 <q, x>, so
// the nearest items are those of largest inner product, and k-means (IVF) or graph (HNSW)
// indexes built with the L2 metric keep balanced lists, which inner-product k-means does not
// (large-norm centroids attract most items). Candidates are re-scored exactly.
class FaissIndex : public RecallIndex {
 public:
  FaissIndex(const std::string& factory, const std::string& params, const float* items,
             std::size_t count, int dim, int threads)
      : items_(items, static_cast<Eigen::Index>(count), dim), count_(count), threads_(threads) {
    omp_set_num_threads(threads);
    const float m2 = count == 0 ? 0.0f : items_.rowwise().squaredNorm().maxCoeff();
    RowMatrix lifted(static_cast<Eigen::Index>(count), dim + 1);
    lifted.leftCols(dim) = items_;
    lifted.col(dim) = (m2 - items_.rowwise().squaredNorm().array()).max(0.0f).sqrt();
    try {
      index_.reset(faiss::index_factory(dim + 1, factory.c_str(), faiss::METRIC_L2));
      const auto n = static_cast<faiss::Index::idx_t>(count);
      if (!index_->is_trained) index_->train(n, lifted.data());
      index_->add(n, lifted.data());
    } catch (const std::exception& e) {
      throw ConfigError("--index: faiss:" + factory + ": " + e.what());
    }
    if (!params.empty()) SetParameters(params);
  }

  void SetParameters(const std::string& params) override {
    try {
      faiss::ParameterSpace().set_index_parameters(index_.get(), params.c_str());
    } catch (const std::exception& e) {
      throw ConfigError("--index: parameters '" + params + "': " + e.what());
    }
  }

  void Search(const RecallQuery& q, std::vector<TopK>* out) const override {
    omp_set_num_threads(threads_);
    out->resize(q.n);
    std::size_t extra = 0;
    for (const auto& ex : q.exclude) extra = std::max(extra, ex.size());
    const auto kk = static_cast<faiss::Index::idx_t>(std::min(count_, q.k + extra));
    const ConstRowMap users(q.users, static_cast<Eigen::Index>(q.n), items_.cols());
    RowMatrix lifted = RowMatrix::Zero(static_cast<Eigen::Index>(q.n), items_.cols() + 1);
    lifted.leftCols(items_.cols()) = users;
    std::vector<float> dist(q.n * kk);
    std::vector<faiss::Index::idx_t> labels(q.n * kk);
    index_->search(static_cast<faiss::Index::idx_t>(q.n), lifted.data(), kk, dist.data(),
                   labels.data());
    for (std::size_t u = 0; u < q.n; ++u) {
      Keep(q, u, &labels[u * kk], static_cast<std::size_t>(kk), users.row(u), &(*out)[u]);
    }
  }

 private:
  // The best q.k of one user's candidates that are not excluded, re-scored exactly.
  template <typename Row>
  void Keep(const RecallQuery& q, std::size_t u, const faiss::Index::idx_t* labels, std::size_t n,
            const Row& user, TopK* t) const {
    std::vector<Candidate> kept;
    for (std::size_t j = 0; j < n; ++j) {
      if (labels[j] < 0) continue;
      const auto i = static_cast<std::uint32_t>(labels[j]);
      if (!q.exclude.empty() && std::binary_search(q.exclude[u].begin(), q.exclude[u].end(), i)) {
        continue;
      }
      kept.push_back({user.dot(items_.row(i)), i});
    }
    std::sort(kept.begin(), kept.end(), Before);
    if (kept.size() > static_cast<std::size_t>(q.k)) kept.resize(q.k);
    t->items.clear();
    t->scores.clear();
    for (const Candidate& c : kept) {
      t->items.push_back(c.item);
      t->scores.push_back(c.score);
    }
  }

  ConstRowMap items_;
  std::unique_ptr<faiss::Index> index_;
  std::size_t count_;
  int threads_;
};

}  // namespace

std::unique_ptr<RecallIndex> MakeRecallIndex(const std::string& spec, const float* items,
                                             std::size_t count, int dim, int threads) {
  threads = std::max(1, threads);
  if (spec == "exact") return std::make_unique<ExactIndex>(items, count, dim, threads);
  if (spec.rfind("faiss:", 0) == 0 && spec.size() > 6) {
    const std::string rest = spec.substr(6);
    const std::size_t q = rest.find('?');
    return std::make_unique<FaissIndex>(rest.substr(0, q),
                                        q == std::string::npos ? "" : rest.substr(q + 1), items,
                                        count, dim, threads);
  }
  throw ConfigError("--index: expected exact or faiss:<factory string>, got '" + spec + "'");
}

TopK BruteForceTopK(std::span<const float> scores, int k,
                    const std::vector<std::uint32_t>& exclude) {
  std::vector<Candidate> all;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    const auto item = static_cast<std::uint32_t>(i);
    if (std::binary_search(exclude.begin(), exclude.end(), item) || std::isnan(scores[i])) continue;
    all.push_back({scores[i], item});
  }
  std::sort(all.begin(), all.end(), Before);
  if (all.size() > static_cast<std::size_t>(k)) all.resize(k);
  TopK t;
  for (const Candidate& c : all) {
    t.items.push_back(c.item);
    t.scores.push_back(c.score);
  }
  return t;
}

}  // namespace fmps
