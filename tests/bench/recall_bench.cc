// Recall speed on a synthetic catalogue (tests/bench/README.md, "Recall"): exact top-k
// (worker/predict/recall_index.h) beside the bare matrix product of the same shape, and
// Faiss IVF recall/speed pairs against the exact top-k.
//
//   recall_bench [--items N] [--users U] [--dim D] [--k K] [--threads T] [--clusters C]
//                [--ivf L1,L2,...] [--nprobe P1,P2,...] [--hnsw M1,...] [--efsearch E1,...]
//
// Each `faiss:IVF<L>,Flat` (default 1024,4096; 0 for none) is built once and searched at
// every nprobe; each `faiss:HNSW<M>` (default none) at every efSearch.
// Items and users are drawn around C random centres (a trained embedding's items cluster by
// taste; C = 0 draws plain N(0, 1) vectors). Prints one line per case.
#define EIGEN_DONT_PARALLELIZE  // our threads each run their own products
#include <Eigen/Core>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "worker/predict/recall_index.h"
#include "worker/predict/recall_metrics.h"

namespace {

using Clock = std::chrono::steady_clock;
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<float> Vectors(std::size_t n, int dim, int clusters, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> centres(static_cast<std::size_t>(std::max(clusters, 1)) * dim);
  std::mt19937 crng(12345);  // the same centres for users and items
  for (float& c : centres) c = normal(crng);
  std::vector<float> v(n * dim);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = clusters > 0 ? rng() % clusters : 0;
    for (int f = 0; f < dim; ++f) {
      v[i * dim + f] = clusters > 0 ? centres[c * dim + f] + 0.3f * normal(rng) : normal(rng);
    }
  }
  return v;
}

// The bare product users x items in the exact search's blocks (64 users x 2048 items) on
// `threads` threads, no selection; returns seconds.
double BareProduct(const std::vector<float>& users, std::size_t nu, const std::vector<float>& items,
                   std::size_t ni, int dim, int threads) {
  const Eigen::Map<const RowMatrix> u(users.data(), nu, dim), it(items.data(), ni, dim);
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  std::vector<float> sink(threads, 0.0f);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      RowMatrix s;
      for (std::size_t u0 = 64 * t; u0 < nu; u0 += 64 * threads) {
        const Eigen::Index bu = std::min<std::size_t>(64, nu - u0);
        for (Eigen::Index i0 = 0; i0 < static_cast<Eigen::Index>(ni); i0 += 2048) {
          const Eigen::Index bi = std::min<Eigen::Index>(2048, ni - i0);
          s.resize(bu, bi);
          s.noalias() = u.middleRows(u0, bu) * it.middleRows(i0, bi).transpose();
          sink[t] += s(0, 0);
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  const double sec = Seconds(t0);
  if (sink[0] == 12345.678f) std::puts("");  // keep the product
  return sec;
}

std::vector<std::vector<std::uint32_t>> Lists(const std::vector<fmps::TopK>& t) {
  std::vector<std::vector<std::uint32_t>> l;
  for (const auto& x : t) l.push_back(x.items);
  return l;
}

const char* Find(int argc, char** argv, const char* name) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return nullptr;
}

long Arg(int argc, char** argv, const char* name, long fallback) {
  const char* v = Find(argc, argv, name);
  return v == nullptr ? fallback : std::atol(v);
}

// A comma-separated list of numbers ("1024,4096"); "0" or "" gives none.
std::vector<int> ListArg(int argc, char** argv, const char* name, const char* fallback) {
  const char* v = Find(argc, argv, name);
  std::vector<int> out;
  for (const char* p = v == nullptr ? fallback : v; *p != '\0';) {
    char* end = nullptr;
    const long x = std::strtol(p, &end, 10);
    if (end == p) break;
    if (x > 0) out.push_back(static_cast<int>(x));
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

// Seconds of CPU time this process has used (all threads).
double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Timing {
  double wall = 1e30;  // best of the runs
  double cpu = 1e30;   // CPU seconds of that best run
};

// One timed Search; keeps it in *best if faster.
void TimeOnce(const fmps::RecallIndex& index, const fmps::RecallQuery& q,
              std::vector<fmps::TopK>* out, Timing* best) {
  const auto t0 = Clock::now();
  const double c0 = CpuSeconds();
  index.Search(q, out);
  const double wall = Seconds(t0);
  if (wall < best->wall) *best = {wall, CpuSeconds() - c0};
}

struct Baseline {
  int k;
  const fmps::RecallIndex* exact;
  fmps::RecallQuery sample;              // the first users, for the exact runs beside each setting
  const std::vector<fmps::TopK>* lists;  // the exact lists of all users
};

// Builds faiss:<factory>, then prints one line per parameter setting: users/s (wall) and
// users per CPU-second, recall of the exact top-k, and the speed-up over exact search timed
// in alternation with it (best of 3 each: a busy machine slows both alike).
void Sweep(const std::string& factory, const std::string& param, const std::vector<int>& values,
           const std::vector<float>& items, std::size_t ni, int dim, int threads,
           const fmps::RecallQuery& q, const Baseline& base) {
  auto t0 = Clock::now();
  const auto index = fmps::MakeRecallIndex("faiss:" + factory, items.data(), ni, dim, threads);
  std::printf("%s built in %.1f s\n", factory.c_str(), Seconds(t0));
  std::vector<fmps::TopK> approx, scratch;
  for (int v : values) {
    index->SetParameters(param + "=" + std::to_string(v));  // one build, several settings
    Timing t, e;
    for (int rep = 0; rep < 3; ++rep) {
      TimeOnce(*base.exact, base.sample, &scratch, &e);
      TimeOnce(*index, q, &approx, &t);
    }
    const double speed = q.n / t.wall, exact = base.sample.n / e.wall;
    std::printf(
        "%-14s %s %4d: %7.0f users/s %7.0f per CPU-s  recall %.4f  %5.1fx exact (%4.0f users/s; "
        "CPU %5.1fx)\n",
        factory.c_str(), param.c_str(), v, speed, q.n / t.cpu,
        fmps::ListOverlap(Lists(approx), Lists(*base.lists), base.k), speed / exact, exact,
        (q.n / t.cpu) / (base.sample.n / e.cpu));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t ni = Arg(argc, argv, "--items", 1000000);
  const std::size_t nu = Arg(argc, argv, "--users", 2000);
  const int dim = static_cast<int>(Arg(argc, argv, "--dim", 17));
  const int k = static_cast<int>(Arg(argc, argv, "--k", 100));
  const int threads = static_cast<int>(
      Arg(argc, argv, "--threads", std::max(1u, std::thread::hardware_concurrency())));
  const std::vector<int> lists = ListArg(argc, argv, "--ivf", "1024,4096");
  const std::vector<int> nprobes = ListArg(argc, argv, "--nprobe", "1,2,4,8,16,32");
  const std::vector<int> hnsw = ListArg(argc, argv, "--hnsw", "0");
  const std::vector<int> efs = ListArg(argc, argv, "--efsearch", "16,32,64,128,256");
  const int clusters = static_cast<int>(Arg(argc, argv, "--clusters", 1000));
  const std::vector<float> items = Vectors(ni, dim, clusters, 1);
  const std::vector<float> users = Vectors(nu, dim, clusters, 2);
  std::printf("catalogue %zu items x %d dims (%d clusters), %zu users, top-%d, %d threads\n", ni,
              dim, clusters, nu, k, threads);
  fmps::RecallQuery q{users.data(), nu, k, {}};
  std::vector<fmps::TopK> exact;
  const auto index = fmps::MakeRecallIndex("exact", items.data(), ni, dim, threads);
  // Alternating runs, best of 3 each: a busy machine slows both alike.
  double best_bare = 1e30;
  Timing best_exact;
  for (int rep = 0; rep < 3; ++rep) {
    best_bare = std::min(best_bare, BareProduct(users, nu, items, ni, dim, threads));
    TimeOnce(*index, q, &exact, &best_exact);
  }
  const double flops = 2.0 * static_cast<double>(nu) * ni * dim;
  std::printf("bare product:   %9.0f users/s  %6.1f GFLOP/s\n", nu / best_bare,
              flops / best_bare * 1e-9);
  std::printf("exact top-%d:   %9.0f users/s  %8.0f per CPU-s  (%.0f%% of the bare product)\n", k,
              nu / best_exact.wall, nu / best_exact.cpu, 100.0 * best_bare / best_exact.wall);
  const std::size_t sample = std::min<std::size_t>(nu, 256);
  const Baseline base{k, index.get(), {users.data(), sample, k, {}}, &exact};
  for (int l : lists) {
    Sweep("IVF" + std::to_string(l) + ",Flat", "nprobe", nprobes, items, ni, dim, threads, q, base);
  }
  for (int m : hnsw) {
    Sweep("HNSW" + std::to_string(m), "efSearch", efs, items, ni, dim, threads, q, base);
  }
  return 0;
}
