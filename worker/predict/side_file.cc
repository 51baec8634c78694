// The side and interaction files of embed and recall: see side_file.h.

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

// A text file read line by line ('\r' stripped, empty lines skipped), naming file:line in
// errors.
class TextLines {
 public:
  explicit TextLines(const std::string& path) : path_(path), in_(path) {
    if (!in_) throw IoError("cannot open " + path);
  }
  bool Next(std::string* line) {
    while (std::getline(in_, *line)) {
      ++line_no_;
      if (!line->empty() && line->back() == '\r') line->pop_back();
      if (!line->empty()) return true;
    }
    return false;
  }
  [[noreturn]] void Fail(const std::string& reason) const {
    throw DataError(path_ + ":" + std::to_string(line_no_) + ": " + reason);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ifstream in_;
  std::uint64_t line_no_ = 0;
};

// A csv file: the header (BOM stripped), then rows.
class CsvLines : public TextLines {
 public:
  CsvLines(const std::string& path, char delim) : TextLines(path), delim_(delim) {
    std::string line;
    if (!Next(&line) || !SplitCsvCells(line, delim_, &header_)) {
      throw ConfigError(path + ": no csv header");
    }
    if (!header_.empty() && header_[0].rfind("\xEF\xBB\xBF", 0) == 0) header_[0].erase(0, 3);
  }
  std::size_t Column(const std::string& name, const char* what) const {
    auto it = std::find(header_.begin(), header_.end(), name);
    if (it == header_.end()) {
      throw ConfigError(path() + ": no column '" + name + "' (the " + what + " id) in the header");
    }
    return static_cast<std::size_t>(it - header_.begin());
  }
  const std::vector<std::string>& header() const { return header_; }
  char delim() const { return delim_; }

 private:
  char delim_;
  std::vector<std::string> header_;
};

// The first whitespace-separated token of `line` and the text after it.
std::string_view FirstToken(std::string_view line, std::string_view* rest) {
  const std::size_t b = std::min(line.find_first_not_of(" \t"), line.size());
  const std::size_t e = std::min(line.find_first_of(" \t", b), line.size());
  *rest = line.substr(e);
  return line.substr(b, e - b);
}

// The id of a side-file row whose id stands in place of the label (libffm: the first
// whitespace-separated token; criteo: the first tab-separated cell) and the rest of the line
// (starting with the separator).
std::string_view IdCell(std::string_view line, DataFormat format, std::string_view* rest) {
  if (format != DataFormat::kCriteo) return FirstToken(line, rest);
  const std::size_t tab = std::min(line.find('\t'), line.size());
  *rest = line.substr(tab);
  return line.substr(0, tab);
}

bool Blank(std::string_view line) { return line.find_first_not_of(" \t") == std::string::npos; }

DataFormat SideFileFormat(const Model& model) {
  const DataFormat format = model.meta().features.data.format;
  if (format == DataFormat::kLibsvm) {
    throw ConfigError(
        "recall files are csv, libffm or criteo: the model was trained on "
        "data.format libsvm");
  }
  return format;
}

// Rows of one side, embedded kBlockRows at a time; the first row of an id wins.
class SideBuilder {
 public:
  SideBuilder(const Model& model, Side side, const std::string& path)
      : model_(model), sides_(ModelSides(model, path)), side_(side) {
    out_.dim = model.shape().v_width() + 1;
  }
  bool Fresh(const std::string& id) { return seen_.insert(id).second; }
  RowBlock* block() { return &block_; }
  const SideMap& sides() const { return sides_; }
  // Records the row just parsed into block() under `id`.
  void Added(std::string id) {
    out_.ids.push_back(std::move(id));
    if (block_.rows() == kBlockRows) Flush();
  }
  SideVectors Finish() {
    Flush();
    return std::move(out_);
  }

 private:
  void Flush() {
    const std::size_t at = out_.own.size();
    out_.vectors.resize((at + block_.rows()) * out_.dim);
    out_.own.resize(at + block_.rows());
    EmbedSide(model_, sides_, block_, side_, &scratch_, &out_.vectors[at * out_.dim],
              &out_.own[at]);
    block_.Clear();
  }

  const Model& model_;
  SideMap sides_;
  Side side_;
  SideVectors out_;
  std::unordered_set<std::string> seen_;
  RowBlock block_;
  EmbedScratch scratch_;
};

SideVectors EmbedCsvSideFile(const Model& model, Side side, const std::string& path) {
  SideBuilder builder(model, side, path);
  FeatureSpec spec = model.meta().features;
  spec.labels = LabelPolicy::kOptional;
  spec.partial_columns = true;
  CsvLines lines(path, spec.data.csv.delimiter);
  const bool user = side == Side::kUser;
  const std::size_t id_col = lines.Column(user ? spec.sides.user.front() : spec.sides.item.front(),
                                          user ? "user" : "item");
  LineParser parser(spec, lines.header());
  std::string line, reason;
  std::vector<std::string> cells;
  while (lines.Next(&line)) {
    if (!SplitCsvCells(line, lines.delim(), &cells) || cells.size() <= id_col) {
      lines.Fail("bad csv row");
    }
    if (!builder.Fresh(cells[id_col])) continue;
    if (!parser.Parse(line, builder.block(), &reason)) lines.Fail(reason);
    builder.Added(cells[id_col]);
  }
  return builder.Finish();
}

// libffm or criteo side file: a row of the format with its label replaced by the row's id.
// The rest is parsed as the training reader parses a row (a label 0 stands in for the id).
SideVectors EmbedIdFirstSideFile(const Model& model, Side side, const std::string& path) {
  SideBuilder builder(model, side, path);
  FeatureSpec spec = model.meta().features;
  spec.labels = LabelPolicy::kRequired;
  const DataFormat format = spec.data.format;
  LineParser parser(spec, {});
  TextLines lines(path);
  std::string line, row, reason;
  while (lines.Next(&line)) {
    std::string_view rest;
    const std::string id(IdCell(line, format, &rest));
    if (id.empty() && Blank(line)) continue;
    if (id.empty()) lines.Fail("empty id (the first cell)");
    if (format == DataFormat::kLibffm && id.find(':') != std::string::npos) {
      lines.Fail("missing id (first token '" + id +
                 "' is a feature; a row is ID field:feature:value ...)");
    }
    if (!builder.Fresh(id)) continue;
    row.clear();
    row.push_back('0');
    row.append(rest.data(), rest.size());
    RowBlock* block = builder.block();
    if (!parser.Parse(row, block, &reason)) lines.Fail(reason);
    for (std::size_t j = block->offsets[block->rows() - 1]; j < block->nnz(); ++j) {
      if (builder.sides().Of(block->fields[j]) == Side::kNone) {
        lines.Fail("field " + std::to_string(block->fields[j]) +
                   " is on no side of the model (model.sides)");
      }
    }
    builder.Added(id);
  }
  return builder.Finish();
}

// An interaction file of a libffm or criteo model: "user_id item_id" per line, separated as
// the side files separate the id (criteo: a tab).
std::vector<std::pair<std::string, std::string>> ReadIdPairs(DataFormat format,
                                                             const std::string& path) {
  std::vector<std::pair<std::string, std::string>> pairs;
  TextLines lines(path);
  std::string line;
  while (lines.Next(&line)) {
    if (Blank(line)) continue;
    std::string_view rest, none;
    const std::string_view user = IdCell(line, format, &rest);
    const std::string_view item = rest.empty() ? rest : IdCell(rest.substr(1), format, &none);
    if (user.empty() || item.empty()) lines.Fail("expected 'user_id item_id'");
    pairs.emplace_back(user, item);
  }
  return pairs;
}

}  // namespace

SideVectors EmbedSideFile(const Model& model, Side side, const std::string& path) {
  return SideFileFormat(model) == DataFormat::kCsv ? EmbedCsvSideFile(model, side, path)
                                                   : EmbedIdFirstSideFile(model, side, path);
}

std::vector<std::pair<std::string, std::string>> ReadInteractions(const Model& model,
                                                                  const std::string& path) {
  const DataFormat format = SideFileFormat(model);
  const FeatureSpec& spec = model.meta().features;
  if (spec.sides.user.empty() || spec.sides.item.empty()) {
    throw ModelError(path + ": the model has no model.sides");
  }
  if (format != DataFormat::kCsv) return ReadIdPairs(format, path);
  std::vector<std::pair<std::string, std::string>> pairs;
  std::string line;
  CsvLines lines(path, spec.data.csv.delimiter);
  const std::size_t u = lines.Column(spec.sides.user.front(), "user");
  const std::size_t i = lines.Column(spec.sides.item.front(), "item");
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
