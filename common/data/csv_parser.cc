#include "common/data/csv_parser.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "common/base/parse_number.h"
#include "common/data/criteo_parser.h"
#include "common/data/line_source.h"
#include "common/data/parse_text.h"
#include "common/data/reader.h"

namespace fmps::data_internal {
namespace {

// The 32-bit identity of a csv column used in hashing: derived from its name, so files may
// order their columns differently.
std::uint32_t CsvColumnId(std::string_view name) {
  return static_cast<std::uint32_t>(Mix64(HashToken(0x63737600u, name)));
}

// Appends the cell ending at the next delimiter (or the line's end) at *p; advances *p past
// that delimiter. Returns true when the cell was the line's last.
bool TakePlainCell(const char** p, const char* end, char delim,
                   std::vector<std::string_view>* cells) {
  const char* q = static_cast<const char*>(std::memchr(*p, delim, end - *p));
  if (q == nullptr) {
    cells->emplace_back(*p, end - *p);
    return true;
  }
  cells->emplace_back(*p, q - *p);
  *p = q + 1;
  return false;
}

// Appends the quoted cell whose opening quote is at *p (its content unescaped into *scratch
// when it holds ""); leaves *p on the closing quote. False on an unterminated quote.
bool TakeQuotedCell(const char** p, const char* end, std::vector<std::string_view>* cells,
                    std::string* scratch) {
  const char* start = ++*p;
  bool escaped = false;
  for (;;) {
    const char* q = static_cast<const char*>(std::memchr(*p, '"', end - *p));
    if (q == nullptr) return false;
    if (q + 1 != end && q[1] == '"') {
      escaped = true;
      *p = q + 2;
      continue;
    }
    *p = q;
    break;
  }
  std::string_view content(start, *p - start);
  if (!escaped) {
    cells->push_back(content);
    return true;
  }
  const std::size_t off = scratch->size();
  for (std::size_t i = 0; i < content.size(); ++i) {
    scratch->push_back(content[i]);
    if (content[i] == '"') ++i;  // "" -> "
  }
  cells->emplace_back(scratch->data() + off, scratch->size() - off);
  return true;
}

// SplitCsv for a line holding at least one quote.
bool SplitQuotedCsv(std::string_view line, char delim, std::vector<std::string_view>* cells,
                    std::string* scratch, std::string* reason) {
  const char* p = line.data();
  const char* const end = p + line.size();
  scratch->clear();
  if (scratch->capacity() < line.size()) scratch->reserve(line.size());
  for (;;) {
    if (p == end || *p != '"') {
      if (TakePlainCell(&p, end, delim, cells)) return true;
      continue;
    }
    if (!TakeQuotedCell(&p, end, cells, scratch)) {
      reason->assign("unterminated quote");
      return false;
    }
    ++p;  // closing quote
    if (p == end) return true;
    if (*p != delim) {
      reason->assign("unexpected text after closing quote in column ");
      AppendUint(reason, cells->size());
      return false;
    }
    ++p;
  }
}

std::string InFile(std::string_view file) {
  return file.empty() ? std::string(" in the csv header")
                      : " in the header of '" + std::string(file) + "'";
}

// The field of a feature column (see csv_parser.h); 0 for the label and ignored columns.
std::uint32_t FieldOfCsvColumn(const CsvSpec& csv, const CsvColumn& c) {
  auto index = [&](const std::vector<std::string>& list) {
    return static_cast<std::uint32_t>(std::find(list.begin(), list.end(), c.name) - list.begin());
  };
  if (c.role == CsvRole::kNumeric) return index(csv.numeric);
  if (c.role == CsvRole::kCategorical) {
    return static_cast<std::uint32_t>(csv.numeric.size()) + index(csv.categorical);
  }
  return 0;
}

// Throws ConfigError unless every configured column is in `header`.
void CheckColumnsPresent(const CsvSpec& csv, const std::vector<std::string>& header,
                         std::string_view file, LabelPolicy labels, bool partial) {
  auto check_present = [&](const std::string& key, const std::string& name) {
    if (std::find(header.begin(), header.end(), name) == header.end()) {
      throw ConfigError(key + ": column '" + name + "' is not present" + InFile(file));
    }
  };
  if (labels == LabelPolicy::kRequired) check_present("data.csv.label", csv.label);
  if (partial) return;
  for (const auto& n : csv.numeric) check_present("data.csv.numeric", n);
  for (const auto& n : csv.categorical) check_present("data.csv.categorical", n);
  for (const auto& n : csv.ignore) check_present("data.csv.ignore", n);
}

// The role of column `name`; throws ConfigError unless it has exactly one.
CsvRole RoleOf(const CsvSpec& csv, const std::string& name, std::string_view file) {
  CsvRole role = CsvRole::kIgnore;
  int roles = 0;
  auto count = [&](const std::vector<std::string>& list, CsvRole r) {
    for (const auto& n : list) {
      if (n == name) {
        role = r;
        ++roles;
      }
    }
  };
  if (name == csv.label) {
    role = CsvRole::kLabel;
    ++roles;
  }
  count(csv.numeric, CsvRole::kNumeric);
  count(csv.categorical, CsvRole::kCategorical);
  count(csv.ignore, CsvRole::kIgnore);
  if (roles == 0) {
    throw ConfigError("data.csv: column '" + name + "'" + InFile(file) +
                      " has no role (list it under label, numeric, categorical or ignore)");
  }
  if (roles > 1) {
    throw ConfigError("data.csv: column '" + name + "'" + InFile(file) + " has more than one role");
  }
  return role;
}

}  // namespace

bool SplitCsv(std::string_view line, char delim, std::vector<std::string_view>* cells,
              std::string* scratch, std::string* reason) {
  cells->clear();
  if (!line.empty() && std::memchr(line.data(), '"', line.size()) != nullptr) {
    return SplitQuotedCsv(line, delim, cells, scratch, reason);
  }
  const char* p = line.data();
  const char* const end = p + line.size();
  while (!TakePlainCell(&p, end, delim, cells)) {
  }
  return true;
}

std::vector<CsvColumn> BuildCsvColumns(const CsvSpec& csv, const std::vector<std::string>& header,
                                       std::string_view file, LabelPolicy labels, bool partial) {
  if (csv.label.empty()) throw ConfigError("data.csv.label: required for format csv");
  CheckColumnsPresent(csv, header, file, labels, partial);
  std::vector<CsvColumn> columns(header.size());
  for (std::size_t i = 0; i < header.size(); ++i) {
    CsvColumn& c = columns[i];
    c.name = header[i];
    c.id = CsvColumnId(c.name);
    c.role = RoleOf(csv, c.name, file);
    c.field = FieldOfCsvColumn(csv, c);
    c.multi = c.role == CsvRole::kCategorical &&
              std::find(csv.multi.begin(), csv.multi.end(), c.name) != csv.multi.end();
  }
  return columns;
}

std::vector<std::string> ReadCsvHeader(const std::string& path, char delim) {
  std::string line = ReadFirstLine(path);
  std::vector<std::string_view> cells;
  std::string scratch, reason;
  if (!SplitCsv(line, delim, &cells, &scratch, &reason)) {
    throw ConfigError("data.csv: bad header in '" + path + "': " + reason);
  }
  return std::vector<std::string>(cells.begin(), cells.end());
}

CsvParser::CsvParser(const FeatureSpec& spec, const std::vector<std::string>& header,
                     std::string_view file)
    : hash_bits_(spec.data.hash_bits),
      logistic_(spec.loss == Loss::kLogistic),
      delim_(spec.data.csv.delimiter),
      multi_separator_(spec.data.csv.multi_separator),
      transform_(spec.data.csv.transform),
      columns_(BuildCsvColumns(spec.data.csv, header, file, spec.labels, spec.partial_columns)),
      has_label_(std::find(header.begin(), header.end(), spec.data.csv.label) != header.end()) {
  if (transform_ == NumericTransform::kStandardize) {
    for (const auto& name : spec.data.csv.numeric) {
      auto it = std::find_if(spec.numeric_stats.begin(), spec.numeric_stats.end(),
                             [&](const NumericStat& s) { return s.column == name; });
      if (it == spec.numeric_stats.end()) {
        throw ConfigError("data.csv.numeric: no statistics for column '" + name +
                          "' (transform standardize needs a first pass, ComputeNumericStats)");
      }
      for (auto& c : columns_) {
        if (c.name == name) {
          c.mean = it->mean;
          c.std = it->std == 0.0 ? 1.0 : it->std;
        }
      }
    }
  }
  for (auto& c : columns_) c.numeric_key = KeyFromToken(c.id, "", hash_bits_);
}

// A numeric cell (not empty): one non-zero, or a bad row.
bool CsvParser::AddNumeric(const CsvColumn& c, std::string_view cell, RowBlock* block,
                           std::string* reason) const {
  double x;
  NumStatus st = internal::ParseDouble(cell, &x);
  float v = 0.0f;
  if (st == NumStatus::kOk) {
    if (transform_ == NumericTransform::kLogBucket) {
      AddLogBucketFeature(c.id, x, c.field, hash_bits_, block);
      return true;
    }
    const double t = transform_ == NumericTransform::kStandardize ? (x - c.mean) / c.std : x;
    if (std::fabs(t) <= kFloatMax) {
      v = static_cast<float>(t);
    } else {
      st = NumStatus::kNonFinite;
    }
  }
  if (st != NumStatus::kOk) {
    NumberReason(reason, st, cell, "column '");
    reason->append(c.name);
    reason->push_back('\'');
    return false;
  }
  block->AddFeature(c.numeric_key, v, c.field);
  return true;
}

// A multi-valued categorical cell: one feature per non-empty value, all in the column's field.
void CsvParser::AddMulti(const CsvColumn& c, std::string_view cell, RowBlock* block) const {
  while (!cell.empty()) {
    const std::size_t cut = cell.find(multi_separator_);
    const std::string_view value = cell.substr(0, cut);
    if (!value.empty()) block->AddFeature(KeyFromToken(c.id, value, hash_bits_), 1.0f, c.field);
    if (cut == std::string_view::npos) break;
    cell.remove_prefix(cut + 1);
  }
}

bool CsvParser::Parse(std::string_view line, RowBlock* block, std::string* reason) {
  if (!SplitCsv(line, delim_, &cells_, &unescaped_, reason)) return false;
  if (cells_.size() != columns_.size()) {
    reason->assign("expected ");
    AppendUint(reason, columns_.size());
    reason->append(" columns, found ");
    AppendUint(reason, cells_.size());
    return false;
  }
  float y = has_label_ ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  for (std::size_t i = 0; i < cells_.size(); ++i) {
    const CsvColumn& c = columns_[i];
    const std::string_view cell = cells_[i];
    switch (c.role) {
      case CsvRole::kIgnore:
        break;
      case CsvRole::kLabel:
        if (!ParseLabel(cell, logistic_, &y, reason)) return false;
        break;
      case CsvRole::kCategorical:
        if (c.multi) {
          AddMulti(c, cell, block);
        } else if (!cell.empty()) {
          block->AddFeature(KeyFromToken(c.id, cell, hash_bits_), 1.0f, c.field);
        }
        break;
      case CsvRole::kNumeric:
        if (!cell.empty() && !AddNumeric(c, cell, block, reason)) return false;
        break;
    }
  }
  block->FinishRow(y);
  return true;
}

}  // namespace fmps::data_internal

namespace fmps {

bool SplitCsvCells(std::string_view line, char delim, std::vector<std::string>* cells) {
  std::vector<std::string_view> views;
  std::string scratch, reason;
  if (!data_internal::SplitCsv(line, delim, &views, &scratch, &reason)) return false;
  cells->assign(views.begin(), views.end());
  return true;
}

}  // namespace fmps
