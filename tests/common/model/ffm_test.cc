// FFM math through ModelKernel: the O(k*nnz^2) score against a naive pair sum in double,
// analytic gradients against finite differences, the all-ones path against the general one,
// the field-block embedding sums, and the shapes the kernel refuses.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "common/base/error.h"
#include "common/model/loss.h"
#include "common/model/model_kernel.h"
#include "tests/common/model/grad_table_check.h"

namespace fmps {
namespace {

struct FfmBatch {
  int k = 4;
  int fields = 3;
  std::vector<float> labels;
  std::vector<std::size_t> offsets{0};
  std::vector<std::uint32_t> local;
  std::vector<float> values;
  std::vector<std::uint32_t> field;
  std::vector<float> params;
  ModelShape shape() const { return FfmShape(k, fields); }
  std::size_t width() const { return static_cast<std::size_t>(shape().row_width()); }
  ModelBatch view() const {
    ModelBatch b;
    b.rows = labels.size();
    b.labels = labels.data();
    b.offsets = offsets.data();
    b.local = local.data();
    b.values = values.data();
    b.fields = field.data();
    return b;
  }
};

// Random rows of 0..max_nnz non-zeros over table rows 1..table_rows-1: keys and fields
// repeat within rows (both must work); `ones` makes every value 1.
FfmBatch MakeBatch(int k, int fields, int rows, int table_rows, std::uint32_t seed,
                   bool ones = false, int max_nnz = 9) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::uniform_int_distribution<int> nnz(0, max_nnz);
  std::uniform_int_distribution<std::uint32_t> pick(1, table_rows - 1);
  std::uniform_int_distribution<std::uint32_t> pick_field(0, fields - 1);
  FfmBatch b;
  b.k = k;
  b.fields = fields;
  b.params.resize(static_cast<std::size_t>(table_rows) * b.width());
  for (float& p : b.params) p = normal(rng);
  for (int r = 0; r < rows; ++r) {
    for (int j = nnz(rng); j > 0; --j) {
      b.local.push_back(pick(rng));
      b.field.push_back(pick_field(rng));
      b.values.push_back(ones ? 1.0f : normal(rng) * 2.0f);
    }
    b.offsets.push_back(b.local.size());
    b.labels.push_back(static_cast<float>(rng() % 2));
  }
  return b;
}

// y = w0 + sum_i w_i x_i + sum_{i<j} <v_{i,f_j}, v_{j,f_i}> x_i x_j, in double.
double NaiveScore(const FfmBatch& b, std::size_t r) {
  const std::size_t width = b.width();
  double s = b.params[0];
  for (std::size_t i = b.offsets[r]; i < b.offsets[r + 1]; ++i) {
    const float* pi = &b.params[b.local[i] * width];
    s += static_cast<double>(pi[0]) * b.values[i];
    for (std::size_t j = i + 1; j < b.offsets[r + 1]; ++j) {
      const float* pj = &b.params[b.local[j] * width];
      double dot = 0.0;
      for (int q = 0; q < b.k; ++q) {
        dot += static_cast<double>(pi[1 + b.field[j] * b.k + q]) * pj[1 + b.field[i] * b.k + q];
      }
      s += dot * b.values[i] * b.values[j];
    }
  }
  return s;
}

// (k, fields): the fixed-k vector code (4, 8, 16, 32) and the generic loop (3, 5).
class FfmKernelTest : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(FfmKernelTest, ScoreEqualsNaivePairSum) {
  const auto [k, fields] = GetParam();
  for (bool ones : {false, true}) {
    const FfmBatch b = MakeBatch(k, fields, 150, 25, 7 + k + fields, ones);
    std::vector<float> scores(b.labels.size());
    MakeKernel(b.shape(), Loss::kLogistic)->Scores(b.view(), b.params.data(), scores.data());
    for (std::size_t r = 0; r < scores.size(); ++r) {
      const double naive = NaiveScore(b, r);
      EXPECT_NEAR(scores[r], naive, 1e-4 * (1.0 + std::abs(naive))) << "row " << r;
    }
  }
}

TEST_P(FfmKernelTest, GradientsMatchFiniteDifferences) {
  const auto [k, fields] = GetParam();
  for (Loss loss : {Loss::kLogistic, Loss::kSquared}) {
    FfmBatch b = MakeBatch(k, fields, 12, 8, 99 + k + fields, /*ones=*/false, 6);
    std::vector<float> grads(b.params.size(), 0.0f), scores(b.labels.size());
    const double total =
        MakeKernel(b.shape(), loss)
            ->ForwardBackward(b.view(), b.params.data(), grads.data(), scores.data());
    auto loss_at = [&]() {
      double sum = 0.0;
      for (std::size_t r = 0; r < b.labels.size(); ++r) {
        sum += LossValue(loss, NaiveScore(b, r), b.labels[r]);
      }
      return sum;
    };
    EXPECT_NEAR(total, loss_at(), 1e-3 * (1.0 + std::abs(total)));
    const double h = 1e-3;
    for (std::size_t p = 0; p < b.params.size(); ++p) {
      const float saved = b.params[p];
      b.params[p] = saved + static_cast<float>(h);
      const double up = loss_at();
      b.params[p] = saved - static_cast<float>(h);
      const double down = loss_at();
      b.params[p] = saved;
      const double numeric = (up - down) / (2 * h);
      if (p >= 1 && p < b.width()) {  // the bias row's v is no parameter
        EXPECT_EQ(grads[p], 0.0f) << "bias v gradient at " << p;
        continue;
      }
      EXPECT_NEAR(grads[p], numeric, 2e-2 * (1.0 + std::abs(numeric)))
          << "param " << p << " loss " << ToString(loss);
    }
  }
}

// The all-ones rows (no multiplications by x) give what the general path gives on the same
// rows with x = 1 forced through it (a row with one value 0.5 on an all-zero table row).
TEST_P(FfmKernelTest, AllOnesPathEqualsGeneralPath) {
  const auto [k, fields] = GetParam();
  FfmBatch ones = MakeBatch(k, fields, 100, 20, 5 + k, /*ones=*/true);
  const std::uint32_t zero_row = 20;
  ones.params.resize(ones.params.size() + ones.width(), 0.0f);
  FfmBatch mixed = ones;
  mixed.local.clear();
  mixed.values.clear();
  mixed.field.clear();
  mixed.offsets = {0};
  for (std::size_t r = 0; r < ones.labels.size(); ++r) {
    for (std::size_t j = ones.offsets[r]; j < ones.offsets[r + 1]; ++j) {
      mixed.local.push_back(ones.local[j]);
      mixed.values.push_back(1.0f);
      mixed.field.push_back(ones.field[j]);
    }
    mixed.local.push_back(zero_row);
    mixed.values.push_back(0.5f);
    mixed.field.push_back(0);
    mixed.offsets.push_back(mixed.local.size());
  }
  auto kernel = MakeKernel(ones.shape(), Loss::kLogistic);
  std::vector<float> g1(ones.params.size(), 0.0f), g2 = g1;
  std::vector<float> s1(ones.labels.size()), s2 = s1;
  EXPECT_EQ(kernel->ForwardBackward(ones.view(), ones.params.data(), g1.data(), s1.data()),
            kernel->ForwardBackward(mixed.view(), mixed.params.data(), g2.data(), s2.data()));
  EXPECT_EQ(s1, s2);
  for (std::size_t p = 0; p < zero_row * ones.width(); ++p) ASSERT_EQ(g1[p], g2[p]) << p;
}

// ForwardBackward writes the gradient rows it uses (no zeroed table needed) and scales them
// per key at their last use: the bits of zeroing, adding and scaling afterwards, on rows of
// general values and of ones, keys twice in a row, in random and first-occurrence numbering.
TEST_P(FfmKernelTest, GarbageTableGivesTheBitsOfZeroThenAddThenScale) {
  const auto [k, fields] = GetParam();
  for (const bool ones : {false, true}) {
    for (const bool first_occurrence : {false, true}) {
      SCOPED_TRACE(std::string(ones ? "ones" : "values") + (first_occurrence ? " ordered" : ""));
      FfmBatch b = MakeBatch(k, fields, 40, 20, 41 + k, ones);
      b.local.insert(b.local.end(), {9, 4, 9});  // key 9 twice in the last row, one field
      b.field.insert(b.field.end(), {0, static_cast<std::uint32_t>(fields - 1), 0});
      b.values.insert(b.values.end(), {ones ? 1.0f : 0.5f, 1.0f, ones ? 1.0f : -2.0f});
      b.offsets.push_back(b.local.size());
      b.labels.push_back(0.0f);
      if (first_occurrence) b.local = testing_grads::FirstOccurrenceIds(b.local);
      const auto kernel = MakeKernel(b.shape(), Loss::kLogistic);
      testing_grads::ExpectSameBitsOnGarbageTable(*kernel, b.view(), b.params.data(), 20);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(KAndFields, FfmKernelTest,
                         ::testing::Values(std::make_tuple(4, 3), std::make_tuple(8, 5),
                                           std::make_tuple(8, 1), std::make_tuple(16, 4),
                                           std::make_tuple(32, 2), std::make_tuple(3, 4),
                                           std::make_tuple(5, 7)));

// A row of one non-zero has no pairs; a row with the same key twice in the same field pairs
// the key's vector for that field with itself.
TEST(FfmKernelTest, HandComputedRows) {
  FfmBatch b;
  b.k = 2;
  b.fields = 2;
  // Bias 0.5; key 1: w 1, v_{1,0} = (1, 2), v_{1,1} = (3, 4); key 2: w -1, v_{2,0} = (0, 1),
  // v_{2,1} = (2, 0).
  b.params = {0.5f, 0, 0, 0, 0, 1, 1, 2, 3, 4, -1, 0, 1, 2, 0};
  b.local = {1, 1, 2, 1, 1};
  b.field = {0, 1, 0, 1, 1};
  b.values = {2, 1, 1, 1, 1};
  b.offsets = {0, 1, 3, 5};
  b.labels = {1, 0, 1};
  std::vector<float> s(3);
  MakeKernel(b.shape(), Loss::kSquared)->Scores(b.view(), b.params.data(), s.data());
  EXPECT_FLOAT_EQ(s[0], 0.5f + 2.0f);  // w0 + w_1 * 2, no pair
  // key 1 in field 1, key 2 in field 0: <v_{1,0}, v_{2,1}> = 1*2 + 2*0 = 2.
  EXPECT_FLOAT_EQ(s[1], 0.5f + 1.0f - 1.0f + 2.0f);
  // key 1 twice in field 1: <v_{1,1}, v_{1,1}> = 9 + 16 = 25.
  EXPECT_FLOAT_EQ(s[2], 0.5f + 2.0f + 25.0f);
}

// n values of T copied to the end of a page followed by a page that may not be read: reading
// past the last one faults (with or without a sanitizer).
template <class T>
class BeforeAGuardPage {
 public:
  explicit BeforeAGuardPage(const std::vector<T>& v) {
    page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    bytes_ = (v.size() * sizeof(T) / page_ + 2) * page_;
    void* m = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(m, MAP_FAILED);
    base_ = static_cast<char*>(m);
    EXPECT_EQ(mprotect(base_ + bytes_ - page_, page_, PROT_NONE), 0);
    data_ = reinterpret_cast<T*>(base_ + bytes_ - page_ - v.size() * sizeof(T));
    std::memcpy(data_, v.data(), v.size() * sizeof(T));
  }
  ~BeforeAGuardPage() { munmap(base_, bytes_); }
  BeforeAGuardPage(const BeforeAGuardPage&) = delete;
  BeforeAGuardPage& operator=(const BeforeAGuardPage&) = delete;
  const T* get() const { return data_; }

 private:
  std::size_t page_ = 0, bytes_ = 0;
  char* base_ = nullptr;
  T* data_ = nullptr;
};

// With the batch's local ids, offsets and fields ending where the readable memory ends, and
// rows of differing lengths (empty ones, a last row longer than the one before it), the kernel
// reads nothing past the batch (a schedule that looks at the next row's keys, as software
// prefetching would, must stop at the last row) and gives the bits of the same batch in
// ordinary vectors.
TEST(FfmKernelTest, ReadsNothingPastTheBatch) {
  for (const int k : {4, 8, 5}) {
    SCOPED_TRACE(k);
    FfmBatch b = MakeBatch(k, 6, 12, 30, 23 + k, false, 12);
    b.local.insert(b.local.end(), {3, 7, 11, 3, 29, 1, 2, 5, 8, 13, 21, 28});  // a longer last row
    b.field.insert(b.field.end(), {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5});
    b.values.insert(b.values.end(), 12, 1.0f);
    b.offsets.push_back(b.local.size());
    b.labels.push_back(1.0f);
    const auto kernel = MakeKernel(b.shape(), Loss::kLogistic);
    std::vector<float> want(b.params.size(), 0.0f), got = want;
    std::vector<float> scores_want(b.labels.size()), scores_got = scores_want;
    const double loss =
        kernel->ForwardBackward(b.view(), b.params.data(), want.data(), scores_want.data());
    const BeforeAGuardPage<std::uint32_t> local(b.local), fields(b.field);
    const BeforeAGuardPage<std::size_t> offsets(b.offsets);
    ModelBatch v = b.view();
    v.local = local.get();
    v.fields = fields.get();
    v.offsets = offsets.get();
    EXPECT_EQ(kernel->ForwardBackward(v, b.params.data(), got.data(), scores_got.data()), loss);
    EXPECT_EQ(scores_got, scores_want);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
    kernel->Scores(v, b.params.data(), scores_got.data());
    EXPECT_EQ(scores_got, scores_want);
  }
}

TEST(FfmKernelTest, EmbeddingSumsArePerFieldBlockSums) {
  const FfmBatch b = MakeBatch(4, 3, 30, 10, 17);
  std::vector<float> sums(b.labels.size() * 12);
  MakeKernel(b.shape(), Loss::kLogistic)->EmbeddingSums(b.view(), b.params.data(), sums.data());
  for (std::size_t r = 0; r < b.labels.size(); ++r) {
    for (std::size_t f = 0; f < 12; ++f) {
      double naive = 0.0;
      for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j) {
        naive += static_cast<double>(b.params[b.local[j] * b.width() + 1 + f]) * b.values[j];
      }
      EXPECT_NEAR(sums[r * 12 + f], naive, 1e-4 * (1.0 + std::abs(naive)));
    }
  }
}

TEST(FfmKernelTest, ShapesAndBatchesItRefuses) {
  EXPECT_EQ(FfmShape(8, 39).v_width(), 312);
  EXPECT_EQ(FfmShape(8, 39).row_width(), 313);
  EXPECT_EQ(FfmShape(8, 39).ToString(), "ffm k=8 fields=39");
  EXPECT_THROW(MakeKernel(FfmShape(8, 0), Loss::kLogistic), ModelError);
  EXPECT_THROW(MakeKernel(FfmShape(8, kMaxFields + 1), Loss::kLogistic), ModelError);
  FfmBatch b = MakeBatch(4, 3, 5, 6, 3);
  b.field.clear();
  ModelBatch v = b.view();
  v.fields = nullptr;
  std::vector<float> s(5);
  EXPECT_THROW(MakeKernel(b.shape(), Loss::kLogistic)->Scores(v, b.params.data(), s.data()),
               ModelError);
}

}  // namespace
}  // namespace fmps
