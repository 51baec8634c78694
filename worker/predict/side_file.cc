// The csv files of embed and recall: see side_file.h.

#include "worker/predict/side_file.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <numeric>
#include <unordered_set>

#include "common/base/error.h"
#include "common/data/reader.h"
#include "common/model/embedding.h"

namespace fmps {
namespace {

constexpr std::size_t kBlockRows = 4096;

// A csv file read line by line: the header, then rows (BOM and '\r' stripped, blank lines
// skipped).
class CsvLines {
 public:
  CsvLines(const std::string& path, char delim) : path_(path), in_(path), delim_(delim) {
    if (!in_) throw IoError("cannot open " + path);
    std::string line;
    if (!Next(&line) || !SplitCsvCells(line, delim_, &header_)) {
      throw ConfigError(path + ": no csv header");
    }
    if (!header_.empty() && header_[0].rfind("\xEF\xBB\xBF", 0) == 0) header_[0].erase(0, 3);
  }
  bool Next(std::string* line) {
    while (std::getline(in_, *line)) {
      ++line_no_;
      if (!line->empty() && line->back() == '\r') line->pop_back();
      if (!line->empty()) return true;
    }
    return false;
  }
  std::size_t Column(const std::string& name, const char* what) const {
    auto it = std::find(header_.begin(), header_.end(), name);
    if (it == header_.end()) {
      throw ConfigError(path_ + ": no column '" + name + "' (the " + what + " id) in the header");
    }
    return static_cast<std::size_t>(it - header_.begin());
  }
  [[noreturn]] void Fail(const std::string& reason) const {
    throw DataError(path_ + ":" + std::to_string(line_no_) + ": " + reason);
  }
  const std::vector<std::string>& header() const { return header_; }
  char delim() const { return delim_; }

 private:
  std::string path_;
  std::ifstream in_;
  char delim_;
  std::vector<std::string> header_;
  std::uint64_t line_no_ = 0;
};

void CheckCsvModel(const Model& model) {
  if (model.meta().features.data.format != DataFormat::kCsv) {
    throw ConfigError("recall files are csv: the model was trained on data.format " +
                      std::string(ToString(model.meta().features.data.format)));
  }
}

}  // namespace

SideVectors EmbedSideFile(const Model& model, Side side, const std::string& path) {
  CheckCsvModel(model);
  const SideMap sides = ModelSides(model, path);
  FeatureSpec spec = model.meta().features;
  spec.labels = LabelPolicy::kOptional;
  spec.partial_columns = true;
  CsvLines lines(path, spec.data.csv.delimiter);
  const bool user = side == Side::kUser;
  const std::size_t id_col = lines.Column(user ? spec.sides.user.front() : spec.sides.item.front(),
                                          user ? "user" : "item");
  LineParser parser(spec, lines.header());
  SideVectors out;
  out.dim = model.shape().v_width() + 1;
  std::unordered_set<std::string> seen;
  RowBlock block;
  EmbedScratch scratch;
  auto flush = [&] {
    const std::size_t at = out.own.size();
    out.vectors.resize((at + block.rows()) * out.dim);
    out.own.resize(at + block.rows());
    EmbedSide(model, sides, block, side, &scratch, &out.vectors[at * out.dim], &out.own[at]);
    block.Clear();
  };
  std::string line, reason;
  std::vector<std::string> cells;
  while (lines.Next(&line)) {
    if (!SplitCsvCells(line, lines.delim(), &cells) || cells.size() <= id_col) {
      lines.Fail("bad csv row");
    }
    if (!seen.insert(cells[id_col]).second) continue;
    if (!parser.Parse(line, &block, &reason)) lines.Fail(reason);
    out.ids.push_back(cells[id_col]);
    if (block.rows() == kBlockRows) flush();
  }
  flush();
  return out;
}

std::vector<std::pair<std::string, std::string>> ReadInteractions(const Model& model,
                                                                  const std::string& path) {
  CheckCsvModel(model);
  const FeatureSpec& spec = model.meta().features;
  if (spec.sides.user.empty() || spec.sides.item.empty()) {
    throw ModelError(path + ": the model has no model.sides");
  }
  CsvLines lines(path, spec.data.csv.delimiter);
  const std::size_t u = lines.Column(spec.sides.user.front(), "user");
  const std::size_t i = lines.Column(spec.sides.item.front(), "item");
  std::vector<std::pair<std::string, std::string>> pairs;
  std::string line;
  std::vector<std::string> cells;
  while (lines.Next(&line)) {
    if (!SplitCsvCells(line, lines.delim(), &cells) || cells.size() <= std::max(u, i)) {
      lines.Fail("bad csv row");
    }
    pairs.emplace_back(cells[u], cells[i]);
  }
  return pairs;
}

void SortById(SideVectors* v) {
  const std::size_t n = v->ids.size();
  std::vector<std::int64_t> numbers(n);
  bool numeric = true;
  for (std::size_t r = 0; r < n && numeric; ++r) {
    const std::string& s = v->ids[r];
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), numbers[r]);
    numeric = ec == std::errc() && p == s.data() + s.size();
  }
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return numeric ? numbers[a] < numbers[b] : v->ids[a] < v->ids[b];
  });
  SideVectors sorted;
  sorted.dim = v->dim;
  for (std::size_t r : order) {
    sorted.ids.push_back(std::move(v->ids[r]));
    sorted.vectors.insert(sorted.vectors.end(), v->vectors.begin() + r * v->dim,
                          v->vectors.begin() + (r + 1) * v->dim);
    sorted.own.push_back(v->own[r]);
  }
  *v = std::move(sorted);
}

}  // namespace fmps
