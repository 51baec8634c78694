#include "worker/cli/recall_commands.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/base/error.h"
#include "common/base/json.h"
#include "common/model/model_file.h"
#include "worker/cli/cli_args.h"
#include "worker/predict/recall_index.h"
#include "worker/predict/recall_metrics.h"
#include "worker/predict/scoring.h"
#include "worker/predict/side_file.h"

namespace fmps::cli {
namespace {

// A file written under a temporary name and renamed into place by Commit() (stdout for "-").
class OutputFile {
 public:
  OutputFile(const std::string& command, const std::string& path)
      : command_(command), path_(path), tmp_(path + ".tmp." + std::to_string(getpid())) {
    file_ = path == "-" ? stdout : std::fopen(tmp_.c_str(), "wb");
    if (file_ == nullptr) throw IoError(command + ": cannot write " + tmp_);
  }
  ~OutputFile() {
    if (file_ != nullptr && file_ != stdout) {
      std::fclose(file_);
      std::remove(tmp_.c_str());
    }
  }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  std::FILE* get() const { return file_; }
  void Commit() {
    if (file_ == stdout) {
      if (std::fflush(stdout) != 0) throw IoError(command_ + ": cannot write standard output");
      return;
    }
    std::FILE* f = file_;
    file_ = nullptr;
    const bool ok = std::fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (std::fclose(f) != 0 || !ok || std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      std::remove(tmp_.c_str());
      throw IoError(command_ + ": cannot write " + path_);
    }
  }

 private:
  std::string command_, path_, tmp_;
  std::FILE* file_ = nullptr;
};

Side ParseSide(const std::string& text) {
  if (text == "user") return Side::kUser;
  if (text == "item") return Side::kItem;
  throw ConfigError("embed: --side must be user or item, got '" + text + "'");
}

// A .npy file (format 1.0) of a little-endian float32 matrix rows x cols.
void WriteNpy(std::FILE* f, const std::vector<float>& data, std::size_t rows, int cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  const auto len = static_cast<std::uint16_t>(header.size());
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  std::fwrite(magic, 1, 8, f);
  const unsigned char le[2] = {static_cast<unsigned char>(len & 0xff),
                               static_cast<unsigned char>(len >> 8)};
  std::fwrite(le, 1, 2, f);
  std::fwrite(header.data(), 1, header.size(), f);
  std::fwrite(data.data(), sizeof(float), data.size(), f);
}

}  // namespace

int Embed(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "embed", {"model", "side", "data", "out", "format"}, {});
  const Model model = Model::Load(a.Require("embed", "model"));
  const Side side = ParseSide(a.Require("embed", "side"));
  const std::string format = a.Get("format", "text");
  if (format != "text" && format != "npy") {
    throw ConfigError("embed: --format must be text or npy, got '" + format + "'");
  }
  const std::string out_path = a.Require("embed", "out");
  if (format == "npy" && out_path == "-") throw ConfigError("embed: --format npy needs --out FILE");
  const SideVectors v = EmbedSideFile(model, side, a.Require("embed", "data"));
  OutputFile out("embed", out_path);
  if (format == "npy") {
    WriteNpy(out.get(), v.vectors, v.ids.size(), v.dim);
    OutputFile ids("embed", out_path + ".ids");
    for (const std::string& id : v.ids) std::fprintf(ids.get(), "%s\n", id.c_str());
    ids.Commit();
  } else {
    for (std::size_t r = 0; r < v.ids.size(); ++r) {
      std::fputs(v.ids[r].c_str(), out.get());
      for (int f = 0; f < v.dim; ++f) std::fprintf(out.get(), " %.9g", v.vectors[r * v.dim + f]);
      std::fputc('\n', out.get());
    }
  }
  out.Commit();
  return 0;
}

namespace {

using ItemLists = std::vector<std::vector<std::uint32_t>>;

// Per user row of `users`: the sorted catalogue indices of its items among `pairs` (pairs
// naming an unknown user or item are left out).
ItemLists ItemsPerUser(const std::vector<std::pair<std::string, std::string>>& pairs,
                       const SideVectors& users,
                       const std::unordered_map<std::string, std::uint32_t>& item_index) {
  std::unordered_map<std::string, std::size_t> user_index;
  for (std::size_t u = 0; u < users.ids.size(); ++u) user_index.emplace(users.ids[u], u);
  ItemLists lists(users.ids.size());
  for (const auto& [user, item] : pairs) {
    auto u = user_index.find(user);
    auto i = item_index.find(item);
    if (u != user_index.end() && i != item_index.end()) lists[u->second].push_back(i->second);
  }
  for (auto& l : lists) {
    std::sort(l.begin(), l.end());
    l.erase(std::unique(l.begin(), l.end()), l.end());
  }
  return lists;
}

// Searches every user against `index`, kChunk users at a time.
std::vector<TopK> SearchAll(const RecallIndex& index, const SideVectors& users, int k,
                            const ItemLists& exclude) {
  constexpr std::size_t kChunk = 16384;
  std::vector<TopK> all(users.ids.size()), part;
  for (std::size_t u0 = 0; u0 < users.ids.size(); u0 += kChunk) {
    RecallQuery q;
    q.users = users.vectors.data() + u0 * users.dim;
    q.n = std::min(kChunk, users.ids.size() - u0);
    q.k = k;
    if (!exclude.empty()) q.exclude = std::span(exclude).subspan(u0, q.n);
    index.Search(q, &part);
    for (std::size_t u = 0; u < q.n; ++u) all[u0 + u] = std::move(part[u]);
  }
  return all;
}

ItemLists Lists(const std::vector<TopK>& top) {
  ItemLists l;
  for (const TopK& t : top) l.push_back(t.items);
  return l;
}

void WriteLists(const std::string& path, const SideVectors& users, const SideVectors& items,
                const std::vector<TopK>& top) {
  OutputFile out("recall", path);
  for (std::size_t u = 0; u < top.size(); ++u) {
    std::fputs(users.ids[u].c_str(), out.get());
    for (std::size_t j = 0; j < top[u].items.size(); ++j) {
      std::fprintf(out.get(), " %s:%.6g", items.ids[top[u].items[j]].c_str(), top[u].scores[j]);
    }
    std::fputc('\n', out.get());
  }
  out.Commit();
}

// The metrics JSON line of `fmps recall --truth` (overlap only with a Faiss index).
std::string MetricsJson(const std::vector<TopK>& top, const ItemLists& truth, int k,
                        const std::vector<TopK>* exact) {
  std::string json = "{";
  char buf[160];
  for (int cut : {10, 50, 100}) {
    if (cut > k) continue;
    const RankingMetricsAtK m = RankingMetrics(Lists(top), truth, cut);
    if (json.size() == 1) json += "\"users\": " + std::to_string(m.users);
    std::snprintf(buf, sizeof(buf),
                  ", \"hit_rate@%d\": %.6f, \"recall@%d\": %.6f, \"ndcg@%d\": %.6f, "
                  "\"mrr@%d\": %.6f",
                  cut, m.hit_rate, cut, m.recall, cut, m.ndcg, cut, m.mrr);
    json += buf;
    if (exact != nullptr) {
      std::snprintf(buf, sizeof(buf), ", \"overlap@%d\": %.6f", cut,
                    ListOverlap(Lists(top), Lists(*exact), cut));
      json += buf;
    }
  }
  return json + "}";
}

}  // namespace

int Recall(int argc, char** argv) {
  Args a = ParseArgs(
      argc, argv, 2, "recall",
      {"model", "users", "items", "k", "exclude", "index", "threads", "out", "truth"}, {});
  const Model model = Model::Load(a.Require("recall", "model"));
  const int k = static_cast<int>(
      std::min<std::uint64_t>(ParseUint("recall", "k", a.Get("k", "100")), 1u << 20));
  if (k < 1) throw ConfigError("recall: --k must be at least 1");
  const int threads = a.Get("threads").empty()
                          ? DefaultScoringThreads()
                          : static_cast<int>(std::clamp<std::uint64_t>(
                                ParseUint("recall", "threads", a.Get("threads")), 1, 1024));
  const std::string spec = a.Get("index", "exact");
  const std::string out_path = a.Require("recall", "out");
  SideVectors items = EmbedSideFile(model, Side::kItem, a.Require("recall", "items"));
  SortById(&items);
  const SideVectors users = EmbedSideFile(model, Side::kUser, a.Require("recall", "users"));
  std::unordered_map<std::string, std::uint32_t> item_index;
  for (std::size_t i = 0; i < items.ids.size(); ++i) {
    item_index.emplace(items.ids[i], static_cast<std::uint32_t>(i));
  }
  ItemLists exclude;
  if (std::string path = a.Get("exclude"); !path.empty()) {
    exclude = ItemsPerUser(ReadInteractions(model, path), users, item_index);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto index =
      MakeRecallIndex(spec, items.vectors.data(), items.ids.size(), items.dim, threads);
  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<TopK> top = SearchAll(*index, users, k, exclude);
  const double search_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::fprintf(stderr, "recall: %zu users x %zu items, index %s built in %.3f s, %.0f users/s\n",
               users.ids.size(), items.ids.size(), spec.c_str(),
               std::chrono::duration<double>(t1 - t0).count(),
               static_cast<double>(users.ids.size()) / std::max(search_s, 1e-9));
  WriteLists(out_path, users, items, top);
  if (std::string path = a.Get("truth"); !path.empty()) {
    const ItemLists truth = ItemsPerUser(ReadInteractions(model, path), users, item_index);
    std::vector<TopK> exact;
    if (spec != "exact") {
      exact = SearchAll(
          *MakeRecallIndex("exact", items.vectors.data(), items.ids.size(), items.dim, threads),
          users, k, exclude);
    }
    std::printf("%s\n", MetricsJson(top, truth, k, spec != "exact" ? &exact : nullptr).c_str());
  }
  return 0;
}

}  // namespace fmps::cli
