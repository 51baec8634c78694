// The store's pull and push paths against a plain reference, at FM and FFM row widths: the
// prefetching and the blocked update of wide rows must not change a bit. Row-wise AdaGrad:
// the store must give w its own accumulator and each latent vector of k floats one (the
// reference runs the optimizer's own UpdateVectors on a plain row; its math is checked in
// optimizer_test).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "server/store/param_store.h"

namespace fmps {
namespace {

constexpr float kLr = 0.05f;
constexpr float kEps = 1e-8f;
constexpr float kInitAcc = 0.001f;
constexpr float kL2 = 0.01f;
constexpr float kStd = 0.1f;
constexpr std::uint64_t kSeed = 4;

// What a key's row should hold: the pulled floats (w, v) and AdaGrad's sums of squares.
struct RefRow {
  std::vector<float> param, sum;
};

RefRow NewRef(Key key, int width, int state_floats) {
  RefRow r;
  r.param.assign(static_cast<std::size_t>(width), 0.0f);
  r.sum.assign(static_cast<std::size_t>(state_floats), kInitAcc);
  if (key != kBiasKey) InitialEmbedding(kSeed, key, width - 1, kStd, r.param.data() + 1);
  return r;
}

bool Finite(const float* g, int n) {
  for (int i = 0; i < n; ++i) {
    if (!std::isfinite(g[i])) return false;
  }
  return true;
}

// AdaGrad on one float at a time, written out; the bias key's v stays 0.
void RefUpdate(Key key, const float* g, RefRow* r) {
  const int n = key == kBiasKey ? 1 : static_cast<int>(r->param.size());
  for (int i = 0; i < n; ++i) {
    const float p = r->param[i];
    const float gi = g[i] + kL2 * p;
    const float h = r->sum[i] + gi * gi;
    r->sum[i] = h;
    r->param[i] = p - kLr * gi / (std::sqrt(h) + kEps);
  }
}

// Row-wise AdaGrad on a plain row: w (vec 1, state sum[0]), then v in vectors of k (state
// sum[1 + j] for vector j); the bias key's v stays 0.
void RefRowwiseUpdate(const Optimizer& opt, int k, Key key, const float* g, RefRow* r) {
  std::uint32_t step = 0;
  opt.UpdateVectors(r->param.data(), r->sum.data(), g, 1, 1, kL2, &step);
  if (key == kBiasKey) return;
  const int v = static_cast<int>(r->param.size()) - 1;
  opt.UpdateVectors(r->param.data() + 1, r->sum.data() + 1, g + 1, v, k, kL2, &step);
}

// Random pushes (by key and by row handle) of random key subsets, a few gradient rows with
// one non-finite value anywhere in the row; every key's pulled row must equal the
// reference's bits after each push.
void CheckAgainstReference(const ModelShape& shape, bool rowwise = false) {
  const StoreOptions o{.shape = shape, .init_std = kStd, .seed = kSeed, .l2_w = kL2, .l2_v = kL2};
  const AdagradParams params{
      .lr = kLr, .eps = kEps, .initial_accumulator = kInitAcc, .rowwise = rowwise};
  const std::unique_ptr<Optimizer> ref_opt = MakeAdagrad(params);
  ParamStore store(o, MakeAdagrad(params));
  EXPECT_EQ(store.format().rowwise, rowwise);
  const int width = store.row_width();
  const int state_floats = rowwise ? 1 + shape.v_width() / shape.k : width;
  const auto w = static_cast<std::size_t>(width);
  std::mt19937_64 rng(21);
  std::vector<Key> pool(700);
  for (Key& key : pool) key = rng() >> 1;  // never kBiasKey
  pool.push_back(kBiasKey);
  std::map<Key, RefRow> ref;
  std::normal_distribution<float> normal(0.0f, 0.5f);
  const float bad[3] = {std::numeric_limits<float>::quiet_NaN(),
                        std::numeric_limits<float>::infinity(),
                        -std::numeric_limits<float>::infinity()};
  for (int step = 0; step < 24; ++step) {
    std::vector<Key> keys = pool;
    std::shuffle(keys.begin(), keys.end(), rng);
    keys.resize(1 + rng() % 400);
    const std::size_t n = keys.size();
    std::vector<float> pulled(n * w);
    std::vector<ParamStore::RowHandle> rows(n);
    store.Pull(keys.data(), n, true, pulled.data(), rows.data());
    std::vector<float> grads(n * w);
    for (float& g : grads) g = normal(rng);
    for (int b = 0; b < 3; ++b) {
      const std::size_t j = rng() % n;
      const std::size_t f = b == 0 ? w - 1 : rng() % w;  // the last float once per push
      grads[j * w + f] = bad[b];
    }
    std::size_t rejected = 0;
    for (std::size_t j = 0; j < n; ++j) {
      RefRow& r = ref.try_emplace(keys[j], NewRef(keys[j], width, state_floats)).first->second;
      ASSERT_EQ(0, std::memcmp(pulled.data() + j * w, r.param.data(), w * sizeof(float)))
          << "pull before step " << step << ", key #" << j;
      const float* g = grads.data() + j * w;
      if (!Finite(g, width)) {
        ++rejected;
        continue;
      }
      if (rowwise) {
        RefRowwiseUpdate(*ref_opt, shape.k, keys[j], g, &r);
      } else {
        RefUpdate(keys[j], g, &r);
      }
    }
    const std::size_t got = step % 2 == 0 ? store.PushRows(rows.data(), n, grads.data(), nullptr)
                                          : store.Push(keys.data(), n, grads.data(), nullptr);
    EXPECT_EQ(got, rejected) << "step " << step;
  }
  std::vector<Key> all;
  for (const auto& [key, r] : ref) all.push_back(key);
  std::vector<float> out(all.size() * w);
  store.Pull(all.data(), all.size(), false, out.data());
  for (std::size_t j = 0; j < all.size(); ++j) {
    ASSERT_EQ(0, std::memcmp(out.data() + j * w, ref[all[j]].param.data(), w * sizeof(float)))
        << "key #" << j;
  }
}

TEST(ParamStoreRowsTest, FmRowsMatchTheReference) { CheckAgainstReference(FmShape(8)); }

TEST(ParamStoreRowsTest, NarrowFfmRowsMatchTheReference) { CheckAgainstReference(FfmShape(4, 3)); }

TEST(ParamStoreRowsTest, WideFfmRowsMatchTheReference) { CheckAgainstReference(FfmShape(8, 39)); }

TEST(ParamStoreRowsTest, RowwiseFmRowsMatchTheReference) {
  CheckAgainstReference(FmShape(8), /*rowwise=*/true);
}

TEST(ParamStoreRowsTest, RowwiseNarrowFfmRowsMatchTheReference) {
  CheckAgainstReference(FfmShape(4, 3), /*rowwise=*/true);
}

TEST(ParamStoreRowsTest, RowwiseWideFfmRowsMatchTheReference) {
  CheckAgainstReference(FfmShape(8, 39), /*rowwise=*/true);
}

}  // namespace
}  // namespace fmps
