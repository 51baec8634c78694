// Top-k retrieval by maximum inner product: see recall_index.h.

#include "worker/predict/recall_index.h"

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
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
#include <limits>
#include <thread>
#include <typeinfo>

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
  // Candidates may come in any order: an equal score displaces a higher item index only.
  void Offer(float score, std::uint32_t item) {
    if (heap_.size() < k_) {
      heap_.push_back({score, item});
      std::push_heap(heap_.begin(), heap_.end(), Before);
    } else if (Before({score, item}, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), Before);
      heap_.back() = {score, item};
      std::push_heap(heap_.begin(), heap_.end(), Before);
    }
  }
  float threshold() const {
    return heap_.size() < k_ ? -std::numeric_limits<float>::infinity() : heap_.front().score;
  }
  void Reset(int k) {
    k_ = static_cast<std::size_t>(k);
    heap_.clear();
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
    SearchOn(q, threads_, out);
  }

  // Search on `threads` threads (the caller's one among them).
  void SearchOn(const RecallQuery& q, int threads, std::vector<TopK>* out) const {
    out->resize(q.n);
    const std::size_t per = (q.n + threads - 1) / static_cast<std::size_t>(threads);
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) {
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

// Sets the calling thread's OpenMP thread count (which Faiss uses for its parallel loops) for
// the guard's lifetime.
class OmpThreads {
 public:
  explicit OmpThreads(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(saved_); }
  OmpThreads(const OmpThreads&) = delete;
  OmpThreads& operator=(const OmpThreads&) = delete;

 private:
  int saved_;
};

// The coarse quantizer of IVF indexes: an IndexFlatL2 whose search runs on Eigen's GEMM
// through ExactIndex (the Debian Faiss runs its own on the reference BLAS, ~1 GFLOP/s, which
// made k-means training and every query's list assignment the bulk of the cost). Nearest
// centroid = largest <[x, 1], [2c, -|c|^2]>; ties go to the lower centroid index. Searches
// on set_threads() threads: the build's count during the build (Faiss calls it from one
// thread), then 1 (FaissIndex::Search calls it from each of its threads).
// add/reset keep the lifted centroids in step (Faiss's k-means calls them every iteration);
// other mutations (remove_ids, merge) are not supported.
class GemmQuantizer : public faiss::IndexFlatL2 {
 public:
  explicit GemmQuantizer(int dim) : faiss::IndexFlatL2(dim) {}

  void add(idx_t n, const float* x) override {
    faiss::IndexFlatL2::add(n, x);
    Refresh();
  }
  void reset() override {
    faiss::IndexFlatL2::reset();
    Refresh();
  }
  void set_threads(int threads) { threads_ = threads; }

  void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
              const faiss::SearchParameters* /*params*/) const override {
    constexpr idx_t kBlock = 65536;  // queries lifted at a time
    RowMatrix lifted;
    std::vector<TopK> tops;
    for (idx_t b = 0; b < n; b += kBlock) {
      const idx_t nb = std::min(kBlock, n - b);
      const ConstRowMap xs(x + b * d, nb, d);
      lifted.resize(nb, d + 1);
      lifted.leftCols(d) = xs;
      lifted.col(d).setOnes();
      exact_->SearchOn({lifted.data(), static_cast<std::size_t>(nb), static_cast<int>(k), {}},
                       threads_, &tops);
      for (idx_t u = 0; u < nb; ++u) {
        const float norm = xs.row(u).squaredNorm();
        const TopK& t = tops[u];
        for (idx_t j = 0; j < k; ++j) {
          const bool has = j < static_cast<idx_t>(t.items.size());
          distances[(b + u) * k + j] =
              has ? std::max(0.0f, norm - t.scores[j]) : std::numeric_limits<float>::infinity();
          labels[(b + u) * k + j] = has ? static_cast<idx_t>(t.items[j]) : -1;
        }
      }
    }
  }

 private:
  void Refresh() {
    const ConstRowMap c(get_xb(), ntotal, d);
    lifted_.resize(ntotal, d + 1);
    lifted_.leftCols(d) = 2.0f * c;
    lifted_.col(d) = -c.rowwise().squaredNorm();
    exact_ = std::make_unique<ExactIndex>(lifted_.data(), ntotal, d + 1, 1);
  }

  RowMatrix lifted_;
  std::unique_ptr<ExactIndex> exact_;
  int threads_ = 1;
};

// k-means of an IVF index trains on at most this many items per list (Faiss's
// max_points_per_centroid, default 256), a sample drawn under Faiss's fixed seed.
constexpr int kTrainPointsPerList = 64;

// An IVF index with a flat L2 coarse quantizer gets a GemmQuantizer and the training sample
// above; other indexes (HNSW, IVF over an HNSW quantizer, ...) are left as built.
struct TunedIvf {
  GemmQuantizer* quantizer = nullptr;         // the new quantizer (owned by the index)
  const faiss::IndexIVFFlat* flat = nullptr;  // the index, if an IVF-Flat (FaissIndex scans it)
};
TunedIvf TuneIvf(faiss::Index* index) {
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(index);
  if (ivf == nullptr || ivf->quantizer->ntotal != 0 ||
      ivf->quantizer->metric_type != faiss::METRIC_L2 ||
      (typeid(*ivf->quantizer) != typeid(faiss::IndexFlatL2) &&
       typeid(*ivf->quantizer) != typeid(faiss::IndexFlat))) {
    return {};
  }
  auto* q = new GemmQuantizer(static_cast<int>(ivf->d));
  if (ivf->own_fields) delete ivf->quantizer;
  ivf->quantizer = q;
  ivf->own_fields = true;
  ivf->cp.max_points_per_centroid = kTrainPointsPerList;
  return {q, typeid(*ivf) == typeid(faiss::IndexIVFFlat) ? static_cast<faiss::IndexIVFFlat*>(ivf)
                                                         : nullptr};
}

// Faiss over the items after the MIPS-to-L2 transform: item x -> [x, sqrt(M^2 - |x|^2)]
// (M the largest item norm), query q -> [q, 0]; then |q' - x'|^2 = |q|^2 + M^2 - 2 <q, x>, so
// the nearest items are those of largest inner product, and k-means (IVF) or graph (HNSW)
// indexes built with the L2 metric keep balanced lists, which inner-product k-means does not
// (large-norm centroids attract most items). Candidates are re-scored exactly.
//
// Threads: the build runs Faiss's OpenMP loops on `threads` threads (1 with a GemmQuantizer,
// which then runs on `threads`). Search splits the users into fixed blocks of kSearchBlock
// taken round-robin by `threads` threads of ours, each running Faiss single-threaded on its
// block (no OpenMP team per call, whose idle members spin on a loaded machine); a user's
// list does not depend on the thread count.
class FaissIndex : public RecallIndex {
 public:
  FaissIndex(const std::string& factory, const std::string& params, const float* items,
             std::size_t count, int dim, int threads)
      : items_(items, static_cast<Eigen::Index>(count), dim), count_(count), threads_(threads) {
    const float m2 = count == 0 ? 0.0f : items_.rowwise().squaredNorm().maxCoeff();
    RowMatrix lifted(static_cast<Eigen::Index>(count), dim + 1);
    lifted.leftCols(dim) = items_;
    lifted.col(dim) = (m2 - items_.rowwise().squaredNorm().array()).max(0.0f).sqrt();
    try {
      index_.reset(faiss::index_factory(dim + 1, factory.c_str(), faiss::METRIC_L2));
      const TunedIvf tuned = TuneIvf(index_.get());
      ivf_flat_ = tuned.flat;
      // With a GemmQuantizer the heavy part (k-means assignments, list assignment) runs on
      // its threads; Faiss's own loops are then O(items * dim), and an OpenMP team would
      // mostly spin-wait in them: one OpenMP thread.
      const OmpThreads omp(tuned.quantizer != nullptr ? 1 : threads);
      if (tuned.quantizer != nullptr) tuned.quantizer->set_threads(threads);
      const auto n = static_cast<faiss::Index::idx_t>(count);
      if (!index_->is_trained) index_->train(n, lifted.data());
      index_->add(n, lifted.data());
      if (tuned.quantizer != nullptr) tuned.quantizer->set_threads(1);
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
    out->resize(q.n);
    // Faiss's own search cannot skip excluded items: it returns that many more candidates.
    std::size_t extra = 0;
    if (ivf_flat_ == nullptr) {
      for (const auto& ex : q.exclude) extra = std::max(extra, ex.size());
    }
    const auto kk = static_cast<idx_t>(std::min(count_, q.k + extra));
    const std::size_t blocks = (q.n + kSearchBlock - 1) / kSearchBlock;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads_; ++t) {
      pool.emplace_back([&, t] {
        omp_set_num_threads(1);  // this thread's own setting: Faiss runs serially here
        Scratch s;
        for (std::size_t b = t; b < blocks; b += threads_) {
          SearchBlock(q, b * kSearchBlock, std::min(q.n, (b + 1) * kSearchBlock), kk, &s, out);
        }
      });
    }
    for (auto& th : pool) th.join();
  }

 private:
  using idx_t = faiss::Index::idx_t;
  static constexpr std::size_t kSearchBlock = 64;

  struct Scratch {
    RowMatrix lifted;
    std::vector<float> dist;
    std::vector<idx_t> labels;
    std::vector<Candidate> kept;
    // IVF-Flat scan (ScanIvfFlat).
    std::vector<float> coarse_dist;
    std::vector<idx_t> coarse;
    Eigen::VectorXf scores;
    TopKHeap heap{1};
    TopK top;
  };

  // Users [begin, end) of q through the index, then Keep.
  void SearchBlock(const RecallQuery& q, std::size_t begin, std::size_t end, idx_t kk, Scratch* s,
                   std::vector<TopK>* out) const {
    const auto nb = static_cast<Eigen::Index>(end - begin);
    const ConstRowMap users(q.users + begin * items_.cols(), nb, items_.cols());
    s->lifted.resize(nb, items_.cols() + 1);
    s->lifted.leftCols(items_.cols()) = users;
    s->lifted.col(items_.cols()).setZero();
    s->dist.resize(nb * kk);
    s->labels.resize(nb * kk);
    if (ivf_flat_ != nullptr) {
      ScanIvfFlat(q, begin, kk, s);
    } else {
      index_->search(nb, s->lifted.data(), kk, s->dist.data(), s->labels.data());
    }
    for (Eigen::Index u = 0; u < nb; ++u) {
      Keep(q, begin + u, &s->labels[u * kk], static_cast<std::size_t>(kk), users.row(u), &s->kept,
           &(*out)[begin + u]);
    }
  }

  // IVF-Flat search of s->lifted's users into s->labels (kk per user, -1 padded): the nprobe
  // nearest lists from the quantizer, then each list's lifted item vectors times the lifted
  // user ([u, 0]: the inner product itself) by Eigen, into a bounded heap that skips the
  // user's excluded items (so kk = k suffices, however many there are). Faiss's own scan
  // computes one scalar L2 distance per item (Debian's build has no SIMD kernels), ~20x
  // slower per item on 17-dim vectors.
  void ScanIvfFlat(const RecallQuery& q, std::size_t begin, idx_t kk, Scratch* s) const {
    const auto nb = static_cast<idx_t>(s->lifted.rows());
    const auto nprobe = static_cast<idx_t>(std::min(ivf_flat_->nprobe, ivf_flat_->nlist));
    s->coarse_dist.resize(nb * nprobe);
    s->coarse.resize(nb * nprobe);
    ivf_flat_->quantizer->search(nb, s->lifted.data(), nprobe, s->coarse_dist.data(),
                                 s->coarse.data());
    const faiss::InvertedLists* lists = ivf_flat_->invlists;
    for (idx_t u = 0; u < nb; ++u) {
      const std::vector<std::uint32_t>* ex = q.exclude.empty() ? nullptr : &q.exclude[begin + u];
      s->heap.Reset(static_cast<int>(kk));
      for (idx_t j = 0; j < nprobe; ++j) {
        const idx_t list = s->coarse[u * nprobe + j];
        if (list < 0) continue;
        const auto size = static_cast<Eigen::Index>(lists->list_size(list));
        faiss::InvertedLists::ScopedCodes codes(lists, list);
        faiss::InvertedLists::ScopedIds ids(lists, list);
        const ConstRowMap vectors(reinterpret_cast<const float*>(codes.get()), size,
                                  s->lifted.cols());
        s->scores.resize(size);
        s->scores.noalias() = vectors * s->lifted.row(u).transpose();
        float threshold = s->heap.threshold();
        for (Eigen::Index i = 0; i < size; ++i) {
          if (s->scores[i] < threshold) continue;
          const auto item = static_cast<std::uint32_t>(ids.get()[i]);
          if (ex != nullptr && std::binary_search(ex->begin(), ex->end(), item)) continue;
          s->heap.Offer(s->scores[i], item);
          threshold = s->heap.threshold();
        }
      }
      s->heap.Take(&s->top);
      for (idx_t j = 0; j < kk; ++j) {
        const bool has = j < static_cast<idx_t>(s->top.items.size());
        s->labels[u * kk + j] = has ? static_cast<idx_t>(s->top.items[j]) : -1;
      }
    }
  }

  // The best q.k of one user's candidates that are not excluded, re-scored exactly.
  template <typename Row>
  void Keep(const RecallQuery& q, std::size_t u, const idx_t* labels, std::size_t n,
            const Row& user, std::vector<Candidate>* kept, TopK* t) const {
    kept->clear();
    for (std::size_t j = 0; j < n; ++j) {
      if (labels[j] < 0) continue;
      const auto i = static_cast<std::uint32_t>(labels[j]);
      if (!q.exclude.empty() && std::binary_search(q.exclude[u].begin(), q.exclude[u].end(), i)) {
        continue;
      }
      kept->push_back({user.dot(items_.row(i)), i});
    }
    std::sort(kept->begin(), kept->end(), Before);
    if (kept->size() > static_cast<std::size_t>(q.k)) kept->resize(q.k);
    t->items.clear();
    t->scores.clear();
    for (const Candidate& c : *kept) {
      t->items.push_back(c.item);
      t->scores.push_back(c.score);
    }
  }

  ConstRowMap items_;
  std::unique_ptr<faiss::Index> index_;
  const faiss::IndexIVFFlat* ivf_flat_ = nullptr;  // index_ if an IVF-Flat with GemmQuantizer
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
