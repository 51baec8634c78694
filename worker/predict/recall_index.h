// Top-k retrieval by maximum inner product (`fmps recall`): every user vector against every
// item vector (common/model/embedding.h), exactly or through a Faiss index.
//
// Exact: blocked matrix products (Eigen's GEMM) of a block of users against a block of
// items, then a per-user top-k over the block's scores. Ties are broken by the lower item
// index, so the lists are deterministic (callers order the catalogue by item id, which makes
// ties go to the smaller id). Users are split over `threads` threads, each with its own
// scratch. Cost: O(users * items * dim) flops, memory O(threads * block^2) besides the items.
//
// Faiss: the index is built once from a factory string ("IVF1024,Flat", "HNSW32", "Flat",
// ...) over the items after the MIPS-to-L2 transform (one more dimension, so that the
// nearest items are those of largest inner product and IVF lists stay balanced; see
// recall_index.cc); parameters after '?' go to faiss::ParameterSpace (e.g.
// "IVF1024,Flat?nprobe=16", "HNSW32?efSearch=128"; several separated by ','). Candidates
// are re-scored exactly; the lists are approximate. `items` must outlive the index too.
// IVF indexes over a flat coarse quantizer get one that runs on Eigen's GEMM, and k-means
// trains on at most 64 items per list (a sample under Faiss's fixed seed); an IVF-Flat index
// is scanned by Eigen (inner products of each probed list, ties to the lower item index, so
// probing every list gives the exact lists), honouring nprobe only. Build cost:
// O(lists * min(items, 64 * lists) * dim * 10) flops for k-means plus O(items * lists * dim);
// search: O(nprobe * items / lists * dim) per user.
//
// Exclusion: a user's excluded item indices (sorted) never appear in its list; exact search
// skips them, Faiss search asks for k + (their number) and drops them.
//
// Thread safety: Search may be called from one thread at a time per index (it runs its own
// `threads` threads; Faiss runs single-threaded inside each, so there is no OpenMP team per
// call). The Faiss build runs Faiss's OpenMP loops on `threads` threads. A user's list does
// not depend on the thread count.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace fmps {

// One user's result: items (indices into the catalogue) in decreasing score.
struct TopK {
  std::vector<std::uint32_t> items;
  std::vector<float> scores;
};

struct RecallQuery {
  const float* users = nullptr;  // n * dim floats, row-major
  std::size_t n = 0;
  int k = 10;
  // Per user (n entries, or empty for none): sorted item indices to leave out.
  std::span<const std::vector<std::uint32_t>> exclude;
};

class RecallIndex {
 public:
  virtual ~RecallIndex() = default;
  // Fills (*out)[u] for the n users of `q`.
  virtual void Search(const RecallQuery& q, std::vector<TopK>* out) const = 0;
  // Sets search parameters ("nprobe=16", "efSearch=128"; as after '?' in the spec). Throws
  // ConfigError for a bad one, or for any on the exact index (it has none).
  virtual void SetParameters(const std::string& params) = 0;
};

// `spec` is "exact" or "faiss:<factory string>[?param=value,...]". `items` (count * dim
// floats, row-major) must outlive the index. Throws ConfigError
// naming --index for a bad spec.
std::unique_ptr<RecallIndex> MakeRecallIndex(const std::string& spec, const float* items,
                                             std::size_t count, int dim, int threads);

// The exact top-k of one user from its scores against every item (brute force: a full sort;
// for tests).
TopK BruteForceTopK(std::span<const float> scores, int k,
                    const std::vector<std::uint32_t>& exclude);

}  // namespace fmps
