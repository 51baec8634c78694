#include "common/data/reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <system_error>
#include <utility>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "common/base/log.h"
#include "common/base/parse_number.h"

namespace fmps {
namespace {

using internal::NumStatus;

constexpr std::size_t kPage = 4096;
// 128 KiB: the read buffer stays in the parsing core's L2 instead of cycling through the
// shared L3, where a single-node server's rows and slots live (with 1 MiB, single-node
// training was ~9% slower over 17 interleaved pairs on a noisy host; parse MB/s is equal).
constexpr std::size_t kBufferSize = std::size_t{1} << 17;
// Readable bytes after a line's end, for RowParser's 8-byte loads (see ScanU64Padded).
constexpr std::size_t kLinePadding = 64;
constexpr std::uint32_t kCriteoInts = 13;
constexpr std::uint32_t kCriteoColumns = 40;  // label + 13 integer + 26 categorical
constexpr std::size_t kMaxQuoted = 40;        // longest token quoted verbatim in a reason
constexpr float kFloatMax = std::numeric_limits<float>::max();

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

std::size_t RoundUp(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// Feature separators of libsvm / libffm lines.
inline bool IsSep(char c) { return c == ' ' || c == '\t'; }

inline bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

bool IsBlank(std::string_view line) {
  for (char c : line) {
    if (!IsSpace(c)) return false;
  }
  return true;
}

std::string_view StripLineEnd(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

std::string_view StripBom(std::string_view line) {
  if (line.size() >= 3 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.remove_prefix(3);
  return line;
}

// Reasons are built by appending into a reused string, so a bad row costs no allocation
// once the string has grown.
// Control bytes (binary garbage, terminal escapes) are written as \xNN so that a message
// stays one printable line.
void AppendQuoted(std::string* r, std::string_view tok) {
  r->push_back('\'');
  for (const char c : tok.substr(0, kMaxQuoted)) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b != 0x7f) {
      r->push_back(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      r->append("\\x");
      r->push_back(kHex[b >> 4]);
      r->push_back(kHex[b & 15]);
    }
  }
  if (tok.size() > kMaxQuoted) r->append("...");
  r->push_back('\'');
}

void AppendUint(std::string* r, std::uint64_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  r->append(buf, static_cast<std::size_t>(res.ptr - buf));
}

// "<what> '<tok>' in feature <n>"
void FeatureReason(std::string* r, std::string_view what, std::string_view tok, int feature) {
  r->assign(what);
  r->push_back(' ');
  AppendQuoted(r, tok);
  r->append(" in feature ");
  AppendUint(r, static_cast<std::uint64_t>(feature));
}

// Fills *reason for a value that failed to parse with `st`.
void NumberReason(std::string* r, NumStatus st, std::string_view tok, std::string_view where) {
  r->assign(st == NumStatus::kNonFinite ? "non-finite value " : "bad number ");
  AppendQuoted(r, tok);
  r->append(" in ");
  r->append(where);
}

const char* TokenEnd(const char* p, const char* end) {
  while (p != end && !IsSep(*p)) ++p;
  return p;
}

// Parses a label token per loss. Returns false with *reason set.
bool ParseLabel(std::string_view tok, bool logistic, float* y, std::string* reason) {
  if (tok.empty()) {
    reason->assign("missing label");
    return false;
  }
  float v;
  NumStatus st = internal::ParseFloat(tok, &v);
  if (st != NumStatus::kOk) {
    NumberReason(reason, st, tok, "label");
    return false;
  }
  if (!logistic) {
    *y = v;
    return true;
  }
  if (v == 1.0f) {
    *y = 1.0f;
  } else if (v == 0.0f || v == -1.0f) {
    *y = 0.0f;
  } else {
    reason->assign("label ");
    AppendQuoted(reason, tok);
    reason->append(" is not 0/1 or -1/+1 for logistic loss");
    return false;
  }
  return true;
}

// Parses the value after "id:" starting at p, other than a single digit (slow path for
// anything odd). On success stores it and returns the end of the token; on failure returns
// nullptr with *st set and *tok_end at the token end.
[[gnu::noinline]] const char* ParseFeatureValueSlow(const char* p, const char* end, float* value,
                                                    NumStatus* st, const char** tok_end) {
  const char* q = internal::FastSimpleFloat(p, end, value);
  if (q != nullptr && (q == end || IsSep(*q))) return q;
  double d = 0.0;
  const char* r = internal::FastDouble(p, end, &d);
  if (r != nullptr && (r == end || IsSep(*r)) && std::fabs(d) <= kFloatMax &&
      internal::DoubleToFloatExact(d, value)) {
    return r;
  }
  const char* e = TokenEnd(p, end);
  *st = internal::ParseFloat(p, e, value);
  *tok_end = e;
  return *st == NumStatus::kOk ? e : nullptr;
}

// The value of a feature: single digits ("1", by far the most common) inline.
[[gnu::always_inline]] inline const char* ParseFeatureValue(const char* p, const char* end,
                                                            float* value, NumStatus* st,
                                                            const char** tok_end) {
  if (p != end && internal::IsDigit(*p) && (p + 1 == end || IsSep(p[1]))) [[likely]] {
    *value = static_cast<float>(*p - '0');
    return p + 1;
  }
  return ParseFeatureValueSlow(p, end, value, st, tok_end);
}

// The 32-bit identity of a csv column used in hashing: derived from its name, so files may
// order their columns differently.
std::uint32_t CsvColumnId(std::string_view name) {
  return static_cast<std::uint32_t>(Mix64(HashToken(0x63737600u, name)));
}

// Splits a csv line into cells (RFC 4180 quoting). Cells are views into `line` or, for quoted
// cells containing "", into *scratch (reserved up front so views stay valid). Returns false
// with *reason set on an unterminated quote or text after a closing quote.
bool SplitCsv(std::string_view line, char delim, std::vector<std::string_view>* cells,
              std::string* scratch, std::string* reason) {
  cells->clear();
  const char* p = line.data();
  const char* const end = p + line.size();
  if (line.empty() || std::memchr(p, '"', line.size()) == nullptr) {
    for (;;) {
      const char* q = static_cast<const char*>(std::memchr(p, delim, end - p));
      if (q == nullptr) {
        cells->emplace_back(p, end - p);
        return true;
      }
      cells->emplace_back(p, q - p);
      p = q + 1;
    }
  }
  scratch->clear();
  if (scratch->capacity() < line.size()) scratch->reserve(line.size());
  for (;;) {
    if (p != end && *p == '"') {
      ++p;
      const char* start = p;
      bool escaped = false;
      for (;;) {
        const char* q = static_cast<const char*>(std::memchr(p, '"', end - p));
        if (q == nullptr) {
          reason->assign("unterminated quote");
          return false;
        }
        if (q + 1 != end && q[1] == '"') {
          escaped = true;
          p = q + 2;
          continue;
        }
        p = q;
        break;
      }
      std::string_view content(start, p - start);
      if (escaped) {
        const std::size_t off = scratch->size();
        for (std::size_t i = 0; i < content.size(); ++i) {
          scratch->push_back(content[i]);
          if (content[i] == '"') ++i;  // "" -> "
        }
        cells->emplace_back(scratch->data() + off, scratch->size() - off);
      } else {
        cells->push_back(content);
      }
      ++p;  // closing quote
      if (p == end) return true;
      if (*p != delim) {
        reason->assign("unexpected text after closing quote in column ");
        AppendUint(reason, cells->size());
        return false;
      }
      ++p;
    } else {
      const char* q = static_cast<const char*>(std::memchr(p, delim, end - p));
      if (q == nullptr) {
        cells->emplace_back(p, end - p);
        return true;
      }
      cells->emplace_back(p, q - p);
      p = q + 1;
    }
  }
}

enum class CsvRole : std::uint8_t { kIgnore, kLabel, kNumeric, kCategorical };

struct CsvColumn {
  std::string name;
  CsvRole role = CsvRole::kIgnore;
  std::uint32_t id = 0;
  Key numeric_key = 0;  // standardize / none
  double mean = 0.0;
  double std = 1.0;
};

std::string InFile(std::string_view file) {
  return file.empty() ? std::string(" in the csv header")
                      : " in the header of '" + std::string(file) + "'";
}

// Maps a csv header to column roles; throws ConfigError on any mismatch with spec.
std::vector<CsvColumn> BuildCsvColumns(const CsvSpec& csv, const std::vector<std::string>& header,
                                       std::string_view file) {
  if (csv.label.empty()) throw ConfigError("data.csv.label: required for format csv");
  std::vector<CsvColumn> columns(header.size());
  auto in_header = [&](const std::string& name) {
    return std::find(header.begin(), header.end(), name) != header.end();
  };
  auto check_present = [&](const std::string& key, const std::string& name) {
    if (!in_header(name)) {
      throw ConfigError(key + ": column '" + name + "' is not present" + InFile(file));
    }
  };
  check_present("data.csv.label", csv.label);
  for (const auto& n : csv.numeric) check_present("data.csv.numeric", n);
  for (const auto& n : csv.categorical) check_present("data.csv.categorical", n);
  for (const auto& n : csv.ignore) check_present("data.csv.ignore", n);
  for (std::size_t i = 0; i < header.size(); ++i) {
    const std::string& name = header[i];
    CsvColumn& c = columns[i];
    c.name = name;
    c.id = CsvColumnId(name);
    int roles = 0;
    if (name == csv.label) {
      c.role = CsvRole::kLabel;
      ++roles;
    }
    auto count = [&](const std::vector<std::string>& list, CsvRole role) {
      for (const auto& n : list) {
        if (n == name) {
          c.role = role;
          ++roles;
        }
      }
    };
    count(csv.numeric, CsvRole::kNumeric);
    count(csv.categorical, CsvRole::kCategorical);
    count(csv.ignore, CsvRole::kIgnore);
    if (roles == 0) {
      throw ConfigError("data.csv: column '" + name + "'" + InFile(file) +
                        " has no role (list it under label, numeric, categorical or ignore)");
    }
    if (roles > 1) {
      throw ConfigError("data.csv: column '" + name + "'" + InFile(file) +
                        " has more than one role");
    }
  }
  return columns;
}

// Turns one line into a row of a RowBlock, for every format. No allocation once its scratch
// buffers have grown. Parse requires kLinePadding readable bytes after the line's end.
class RowParser {
 public:
  // `header` is the csv header (csv only); `file` names it in errors. `need_stats`: require
  // spec.numeric_stats for every numeric column when transform is standardize.
  RowParser(const FeatureSpec& spec, const std::vector<std::string>* header, std::string_view file,
            bool need_stats)
      : format_(spec.data.format),
        hash_bits_(spec.data.hash_bits),
        logistic_(spec.loss == Loss::kLogistic),
        delim_(spec.data.csv.delimiter),
        transform_(spec.data.csv.transform) {
    if (format_ != DataFormat::kCsv) return;
    static const std::vector<std::string> kNoHeader;
    columns_ = BuildCsvColumns(spec.data.csv, header ? *header : kNoHeader, file);
    if (need_stats && transform_ == NumericTransform::kStandardize) {
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

  const std::vector<CsvColumn>& columns() const { return columns_; }

  bool Parse(std::string_view line, RowBlock* block, std::string* reason) {
    bool ok;
    switch (format_) {
      case DataFormat::kLibsvm:
        ok = ParseLibsvm(line, block, reason);
        break;
      case DataFormat::kLibffm:
        ok = ParseLibffm(line, block, reason);
        break;
      case DataFormat::kCriteo:
        ok = ParseCriteo(line, block, reason);
        break;
      default:
        ok = ParseCsv(line, block, reason);
        break;
    }
    if (!ok) block->AbandonRow();
    return ok;
  }

 private:
  // The label of a libsvm / libffm line; a first token that looks like a feature means the
  // label is missing.
  bool ParseSparseLabel(std::string_view tok, float* y, std::string* reason) const {
    if (ParseLabel(tok, logistic_, y, reason)) return true;
    if (tok.find(':') != std::string_view::npos) {
      reason->assign("missing label (first token ");
      AppendQuoted(reason, tok);
      reason->append(" is a feature)");
    }
    return false;
  }

  // Rejects raw id 2^64-1 (the bias key) when ids are kept as given.
  bool IdInRange(std::uint64_t id) const { return hash_bits_ != 0 || id != kBiasKey; }

  bool ParseLibsvm(std::string_view line, RowBlock* block, std::string* reason) {
    const char* p = line.data();
    const char* const end = p + line.size();
    while (p != end && IsSep(*p)) ++p;
    const char* q = TokenEnd(p, end);
    float y;
    if (!ParseSparseLabel({p, static_cast<std::size_t>(q - p)}, &y, reason)) return false;
    p = q;
    int feature = 0;
    for (;;) {
      while (p != end && IsSep(*p)) ++p;
      if (p == end) break;
      ++feature;
      const char* tok = p;
      std::uint64_t id;
      NumStatus st = internal::ScanU64Padded(&p, end, &id);
      if (st != NumStatus::kOk || p == end || *p != ':' || !IdInRange(id)) {
        return IdError(tok, end, feature, reason);
      }
      ++p;
      float v;
      const char* tok_end;
      const char* r = ParseFeatureValue(p, end, &v, &st, &tok_end);
      if (r == nullptr) {
        FeatureReason(reason, st == NumStatus::kNonFinite ? "non-finite value" : "bad number",
                      {p, static_cast<std::size_t>(tok_end - p)}, feature);
        return false;
      }
      p = r;
      if (v != 0.0f) block->AddFeature(KeyFromId(id, hash_bits_), v);
    }
    block->FinishRow(y);
    return true;
  }

  // Explains why the "id:value" token at tok is bad (cold path).
  bool IdError(const char* tok, const char* end, int feature, std::string* reason) const {
    const char* e = TokenEnd(tok, end);
    std::string_view token(tok, e - tok);
    std::size_t colon = token.find(':');
    std::string_view id = token.substr(0, colon);
    std::uint64_t v;
    NumStatus st = internal::ParseU64(id.data(), id.data() + id.size(), &v);
    if (st == NumStatus::kOk && colon == std::string_view::npos) {
      FeatureReason(reason, "missing ':value' after id", token, feature);
    } else if (st == NumStatus::kOutOfRange || (st == NumStatus::kOk && !IdInRange(v))) {
      FeatureReason(reason, "id out of range", token, feature);
    } else {
      FeatureReason(reason, "bad id", token, feature);
    }
    return false;
  }

  bool ParseLibffm(std::string_view line, RowBlock* block, std::string* reason) {
    const char* p = line.data();
    const char* const end = p + line.size();
    while (p != end && IsSep(*p)) ++p;
    const char* q = TokenEnd(p, end);
    float y;
    if (!ParseSparseLabel({p, static_cast<std::size_t>(q - p)}, &y, reason)) return false;
    p = q;
    int feature = 0;
    for (;;) {
      while (p != end && IsSep(*p)) ++p;
      if (p == end) break;
      ++feature;
      const char* tok = p;
      std::uint64_t field, id;
      NumStatus st = internal::ScanU64Padded(&p, end, &field);
      if (st != NumStatus::kOk || p == end || *p != ':') return FfmError(tok, end, feature, reason);
      ++p;
      st = internal::ScanU64Padded(&p, end, &id);
      if (st != NumStatus::kOk || p == end || *p != ':' || !IdInRange(id)) {
        return FfmError(tok, end, feature, reason);
      }
      ++p;
      float v;
      const char* tok_end;
      const char* r = ParseFeatureValue(p, end, &v, &st, &tok_end);
      if (r == nullptr) {
        if (p == tok_end) return FfmError(tok, end, feature, reason);
        FeatureReason(reason, st == NumStatus::kNonFinite ? "non-finite value" : "bad number",
                      {p, static_cast<std::size_t>(tok_end - p)}, feature);
        return false;
      }
      p = r;
      if (v != 0.0f) block->AddFeature(KeyFromId(id, hash_bits_), v);
    }
    block->FinishRow(y);
    return true;
  }

  // Explains why the "field:id:value" token at tok is bad (cold path).
  bool FfmError(const char* tok, const char* end, int feature, std::string* reason) const {
    const char* e = TokenEnd(tok, end);
    std::string_view token(tok, e - tok);
    std::size_t c1 = token.find(':');
    std::size_t c2 = c1 == std::string_view::npos ? c1 : token.find(':', c1 + 1);
    if (c2 == std::string_view::npos || c1 == 0 || c2 == c1 + 1 || c2 + 1 == token.size()) {
      reason->assign("missing part in feature ");
      AppendUint(reason, static_cast<std::uint64_t>(feature));
      reason->append(" ");
      AppendQuoted(reason, token);
      reason->append(", expected field:id:value");
      return false;
    }
    std::string_view field = token.substr(0, c1);
    std::string_view id = token.substr(c1 + 1, c2 - c1 - 1);
    std::uint64_t v;
    if (internal::ParseU64(field.data(), field.data() + field.size(), &v) != NumStatus::kOk) {
      FeatureReason(reason, "bad field", token, feature);
      return false;
    }
    NumStatus st = internal::ParseU64(id.data(), id.data() + id.size(), &v);
    if (st == NumStatus::kOutOfRange || (st == NumStatus::kOk && !IdInRange(v))) {
      FeatureReason(reason, "id out of range", token, feature);
    } else {
      FeatureReason(reason, "bad id", token, feature);
    }
    return false;
  }

  bool ParseCriteo(std::string_view line, RowBlock* block, std::string* reason) {
    const char* p = line.data();
    const char* const end = p + line.size();
    float y = 0.0f;
    for (std::uint32_t col = 0;; ++col) {
      const char* q = static_cast<const char*>(std::memchr(p, '\t', end - p));
      if (q == nullptr) q = end;
      std::string_view cell(p, q - p);
      if (col >= kCriteoColumns) {
        reason->assign("too many columns (");
        AppendUint(reason, kCriteoColumns + 1 + std::count(q, end, '\t'));
        reason->append(", at most ");
        AppendUint(reason, kCriteoColumns);
        reason->append(")");
        return false;
      }
      if (col == 0) {
        if (!ParseLabel(cell, logistic_, &y, reason)) return false;
      } else if (!cell.empty()) {
        if (col <= kCriteoInts) {
          double v;
          NumStatus st = internal::ParseDouble(cell, &v);
          if (st != NumStatus::kOk) {
            NumberReason(reason, st, cell, "column I");
            AppendUint(reason, col);
            return false;
          }
          AddBucket(col, v, block);
        } else {
          block->AddFeature(KeyFromToken(col, cell, hash_bits_), 1.0f);
        }
      }
      if (q == end) break;
      p = q + 1;
    }
    block->FinishRow(y);
    return true;
  }

  void AddBucket(std::uint32_t column, double v, RowBlock* block) const {
    char buf[24];
    auto res = std::to_chars(buf, buf + sizeof(buf), LogBucket(v));
    block->AddFeature(
        KeyFromToken(column, {buf, static_cast<std::size_t>(res.ptr - buf)}, hash_bits_), 1.0f);
  }

  bool ParseCsv(std::string_view line, RowBlock* block, std::string* reason) {
    if (!SplitCsv(line, delim_, &cells_, &unescaped_, reason)) return false;
    if (cells_.size() != columns_.size()) {
      reason->assign("expected ");
      AppendUint(reason, columns_.size());
      reason->append(" columns, found ");
      AppendUint(reason, cells_.size());
      return false;
    }
    float y = 0.0f;
    for (std::size_t i = 0; i < cells_.size(); ++i) {
      const CsvColumn& c = columns_[i];
      std::string_view cell = cells_[i];
      switch (c.role) {
        case CsvRole::kIgnore:
          break;
        case CsvRole::kLabel:
          if (!ParseLabel(cell, logistic_, &y, reason)) return false;
          break;
        case CsvRole::kCategorical:
          if (!cell.empty()) block->AddFeature(KeyFromToken(c.id, cell, hash_bits_), 1.0f);
          break;
        case CsvRole::kNumeric: {
          if (cell.empty()) break;
          double x;
          NumStatus st = internal::ParseDouble(cell, &x);
          float v = 0.0f;
          if (st == NumStatus::kOk) {
            if (transform_ == NumericTransform::kLogBucket) {
              AddBucket(c.id, x, block);
              break;
            }
            const double t =
                transform_ == NumericTransform::kStandardize ? (x - c.mean) / c.std : x;
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
          block->AddFeature(c.numeric_key, v);
          break;
        }
      }
    }
    block->FinishRow(y);
    return true;
  }

  DataFormat format_;
  int hash_bits_;
  bool logistic_;
  char delim_;
  NumericTransform transform_;
  std::vector<CsvColumn> columns_;
  std::vector<std::string_view> cells_;  // scratch
  std::string unescaped_;                // scratch
};

// Opens `path` read-only or throws IoError naming it.
int OpenFile(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw IoError("cannot open '" + path + "': " + ErrnoText(errno));
  return fd;
}

// read(2) with EINTR handling; throws IoError.
std::size_t ReadSome(int fd, char* dst, std::size_t n, const std::string& path) {
  for (;;) {
    ssize_t r = ::read(fd, dst, n);
    if (r >= 0) return static_cast<std::size_t>(r);
    if (errno != EINTR) throw IoError("cannot read '" + path + "': " + ErrnoText(errno));
  }
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// The first line of a file (BOM and '\r' stripped), for csv headers. Throws ConfigError if
// the file is empty.
std::string ReadFirstLine(const std::string& path) {
  Fd fd(OpenFile(path));
  std::string line;
  char buf[65536];
  for (;;) {
    std::size_t n = ReadSome(fd.get(), buf, sizeof(buf), path);
    if (n == 0) break;
    const char* nl = static_cast<const char*>(std::memchr(buf, '\n', n));
    line.append(buf, nl ? static_cast<std::size_t>(nl - buf) : n);
    if (nl) break;
  }
  std::string_view v = StripBom(StripLineEnd(line));
  if (v.empty() && line.empty()) {
    throw ConfigError("data.csv: '" + path + "' is empty; a csv file needs a header row");
  }
  return std::string(v);
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

// Number of '\n' bytes in [from, limit) of a file (cold path: line numbers of bad rows).
std::uint64_t CountNewlines(const std::string& path, std::uint64_t from, std::uint64_t limit) {
  Fd fd(OpenFile(path));
  if (from > 0 && ::lseek(fd.get(), static_cast<off_t>(from), SEEK_SET) < 0) {
    throw IoError("cannot seek in '" + path + "': " + ErrnoText(errno));
  }
  std::vector<char> buf(kBufferSize);
  std::uint64_t count = 0, done = from;
  while (done < limit) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), limit - done));
    std::size_t n = ReadSome(fd.get(), buf.data(), want, path);
    if (n == 0) break;
    count += static_cast<std::uint64_t>(std::count(buf.data(), buf.data() + n, '\n'));
    done += n;
  }
  return count;
}

// Size of a regular file; throws IoError if it cannot be opened or stat'ed or is not regular.
std::uint64_t FileSize(const std::string& path) {
  Fd fd(OpenFile(path));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw IoError("cannot stat '" + path + "': " + ErrnoText(errno));
  if (!S_ISREG(st.st_mode)) throw IoError("'" + path + "' is not a regular file");
  return static_cast<std::uint64_t>(st.st_size);
}

// "[begin, end)" for messages.
std::string RangeText(const ByteRange& r) {
  std::string out("[");
  AppendUint(&out, r.begin);
  out.append(", ");
  AppendUint(&out, r.end);
  out.push_back(')');
  return out;
}

// Checks that the non-empty `ranges` are sorted and disjoint and that begin <= end; returns
// them without the empty ones and with touching ones merged. Throws ConfigError naming `what`
// otherwise.
std::vector<ByteRange> NormalizeRanges(const std::vector<ByteRange>& ranges,
                                       std::string_view what) {
  std::vector<ByteRange> out;
  std::uint64_t last_end = 0;
  for (const ByteRange& r : ranges) {
    if (r.begin > r.end) {
      throw ConfigError(std::string(what) + ": range " + RangeText(r) + " has begin > end");
    }
    if (r.begin == r.end) continue;
    if (!out.empty() && r.begin < last_end) {
      throw ConfigError(std::string(what) + ": range " + RangeText(r) +
                        " overlaps or precedes the range before it");
    }
    last_end = r.end;
    if (!out.empty() && out.back().end == r.begin) {
      out.back().end = r.end;
    } else {
      out.push_back(r);
    }
  }
  return out;
}

// Yields the lines of a set of byte ranges of the concatenation of files: exactly the lines
// whose first byte lies in one of the ranges, in order.
class LineSource {
 public:
  // Stats the files (IoError on failure). Reads nothing until SetRanges.
  explicit LineSource(std::vector<std::string> paths) {
    for (auto& p : paths) {
      const std::uint64_t size = FileSize(p);
      files_.push_back({std::move(p), size, total_});
      total_ += size;
    }
    buf_ = AllocateBuffer(kBufferSize);
    cap_ = kBufferSize;
  }
  ~LineSource() {
    CloseFile();
    std::free(buf_);
  }
  LineSource(const LineSource&) = delete;
  LineSource& operator=(const LineSource&) = delete;

  std::uint64_t total_bytes() const { return total_; }

  // Sets the ranges to read (see NormalizeRanges; ConfigError if one ends beyond the files)
  // and rewinds.
  void SetRanges(const std::vector<ByteRange>& ranges) {
    ranges_ = NormalizeRanges(ranges, "data ranges");
    if (!ranges_.empty() && ranges_.back().end > total_) {
      std::string msg("data ranges: range ");
      msg.append(RangeText(ranges_.back()));
      msg.append(" ends beyond the files (");
      AppendUint(&msg, total_);
      msg.append(" bytes); were the data files changed?");
      throw ConfigError(msg);
    }
    bytes_ = 0;
    segments_.clear();
    for (const ByteRange& r : ranges_) {
      bytes_ += r.end - r.begin;
      for (std::size_t i = 0; i < files_.size(); ++i) {
        const File& f = files_[i];
        const std::uint64_t b = std::max(r.begin, f.begin);
        const std::uint64_t e = std::min(r.end, f.begin + f.size);
        if (b < e) segments_.push_back({i, b - f.begin, e - f.begin});
      }
    }
    Rewind();
  }

  void Rewind() {
    CloseFile();
    next_seg_ = 0;
    next_pos_ = 0;
    exhausted_ = false;
  }

  // Next line of the ranges (terminator, trailing '\r' and a leading BOM removed); false at
  // the end. The view is valid until the next call.
  bool Next(std::string_view* line) {
    for (;;) {
      if (fd_ < 0 && !OpenNextSegment()) return false;
      const std::size_t avail = lim_ - pos_;
      const std::uint64_t off = read_off_ - avail;  // file offset of buf_[pos_]
      if (!skipping_ && off >= local_end_) {
        CloseFile();
        continue;
      }
      char* s = buf_ + pos_;
      const void* nl =
          avail > scanned_ ? std::memchr(s + scanned_, '\n', avail - scanned_) : nullptr;
      std::size_t len;
      if (nl == nullptr) {
        if (!eof_) {
          if (skipping_) {
            pos_ = lim_;
            scanned_ = 0;
          } else {
            scanned_ = avail;
          }
          Refill();
          continue;
        }
        if (avail == 0 || skipping_) {
          CloseFile();
          continue;
        }
        len = avail;  // last line without a newline
        pos_ = lim_;
      } else {
        len = static_cast<std::size_t>(static_cast<const char*>(nl) - s);
        pos_ += len + 1;
        if (skipping_) {  // the partial line before the segment's first line start
          skipping_ = false;
          scanned_ = 0;
          segments_[seg_].first_line_off = off + len + 1;
          continue;
        }
      }
      scanned_ = 0;
      line_off_ = off;
      ++lines_;
      next_pos_ = files_[file_].begin + (read_off_ - (lim_ - pos_));
      std::string_view v(s, len);
      if (!v.empty() && v.back() == '\r') v.remove_suffix(1);
      if (off == 0) v = StripBom(v);
      *line = v;
      return true;
    }
  }

  std::size_t file_index() const { return file_; }
  const std::string& path() const { return files_[file_].path; }
  std::uint64_t line_offset() const { return line_off_; }

  // 1-based line number of the current line in its file. The lines before the segment's
  // first line are counted once, lazily, the first time a number is needed (from the start
  // of an earlier counted segment of the same file when there is one).
  std::uint64_t LineNumber() {
    Segment& s = segments_[seg_];
    if (s.base < 0) {
      std::uint64_t from = 0, count = 0;
      for (std::size_t j = seg_; j-- > 0 && segments_[j].file == s.file;) {
        const Segment& p = segments_[j];
        if (p.base >= 0 && p.first_line_off <= s.first_line_off) {
          from = p.first_line_off;
          count = static_cast<std::uint64_t>(p.base);
          break;
        }
      }
      s.base = static_cast<std::int64_t>(count + CountNewlines(path(), from, s.first_line_off));
    }
    return static_cast<std::uint64_t>(s.base) + lines_;
  }

  std::uint64_t range_bytes() const { return bytes_; }

  // Bytes of the ranges before the position after the last line returned.
  std::uint64_t consumed() const {
    if (exhausted_) return bytes_;
    std::uint64_t c = 0;
    for (const ByteRange& r : ranges_) {
      if (next_pos_ <= r.begin) break;
      c += std::min(next_pos_, r.end) - r.begin;
    }
    return c;
  }

  // The ranges after the position after the last line returned (see ShardReader).
  void Remaining(std::vector<ByteRange>* out) const {
    out->clear();
    if (exhausted_) return;
    for (const ByteRange& r : ranges_) {
      if (r.end <= next_pos_) continue;
      out->push_back({std::max(r.begin, next_pos_), r.end});
    }
  }

 private:
  struct File {
    std::string path;
    std::uint64_t size;
    std::uint64_t begin;  // offset in the concatenation
  };

  // The part of one range within one file: lines starting in [begin, end) of the file.
  struct Segment {
    std::size_t file;
    std::uint64_t begin, end;
    std::uint64_t first_line_off = 0;  // offset of the segment's first line (once reached)
    std::int64_t base = -1;            // '\n' count before first_line_off, or -1 if unknown
  };

  bool OpenNextSegment() {
    if (next_seg_ >= segments_.size()) {
      exhausted_ = true;
      return false;
    }
    seg_ = next_seg_++;
    Segment& sg = segments_[seg_];
    const File& f = files_[sg.file];
    local_end_ = sg.end;
    file_ = sg.file;
    fd_ = OpenFile(f.path);
#ifdef POSIX_FADV_SEQUENTIAL
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    pos_ = lim_ = scanned_ = 0;
    eof_ = false;
    lines_ = 0;
    if (sg.begin == 0) {
      read_off_ = 0;
      skipping_ = false;
      sg.first_line_off = 0;
      sg.base = 0;
    } else {
      // Start at b-1: the first line start >= b follows the first '\n' at or after b-1.
      const std::uint64_t start = (sg.begin - 1) / kPage * kPage;
      if (::lseek(fd_, static_cast<off_t>(start), SEEK_SET) < 0) {
        throw IoError("cannot seek in '" + f.path + "': " + ErrnoText(errno));
      }
      read_off_ = start;
      Refill();
      pos_ = std::min<std::size_t>(lim_, static_cast<std::size_t>(sg.begin - 1 - start));
      skipping_ = true;
    }
    return true;
  }

  void CloseFile() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // A page-aligned buffer of `size` bytes plus kLinePadding readable bytes after it, zeroed
  // (so that loads past a line's end never touch uninitialised memory).
  static char* AllocateBuffer(std::size_t size) {
    void* mem = nullptr;
    if (posix_memalign(&mem, kPage, size + kLinePadding) != 0) throw std::bad_alloc();
    std::memset(mem, 0, size + kLinePadding);
    return static_cast<char*>(mem);
  }

  // Keeps the unfinished line [pos_, lim_) and reads more after it. The kept bytes are placed
  // so that read(2) always writes to a page-aligned address; the buffer grows for long lines.
  void Refill() {
    const std::size_t rem = lim_ - pos_;
    const std::size_t dst = RoundUp(rem, kPage);
    if (cap_ - dst < kBufferSize / 2) {
      const std::size_t new_cap = std::max(cap_ * 2, dst + kBufferSize);
      char* nb = AllocateBuffer(new_cap);
      std::memcpy(nb + dst - rem, buf_ + pos_, rem);
      std::free(buf_);
      buf_ = nb;
      cap_ = new_cap;
    } else if (pos_ != dst - rem && rem > 0) {
      std::memmove(buf_ + dst - rem, buf_ + pos_, rem);
    }
    pos_ = dst - rem;
    lim_ = dst;
    const std::size_t n = ReadSome(fd_, buf_ + lim_, cap_ - lim_, files_[file_].path);
    if (n == 0) eof_ = true;
    lim_ += n;
    read_off_ += n;
  }

  std::vector<File> files_;
  std::uint64_t total_ = 0;        // bytes of all files
  std::vector<ByteRange> ranges_;  // normalized, in concatenated coordinates
  std::uint64_t bytes_ = 0;        // of ranges_
  std::vector<Segment> segments_;  // ranges_ cut at file boundaries, in order
  std::size_t next_seg_ = 0;
  std::size_t seg_ = 0;   // current segment
  std::size_t file_ = 0;  // its file
  int fd_ = -1;
  char* buf_ = nullptr;
  std::size_t cap_ = 0;
  std::size_t pos_ = 0;         // next unconsumed byte
  std::size_t lim_ = 0;         // end of valid data
  std::size_t scanned_ = 0;     // bytes after pos_ known to hold no '\n'
  std::uint64_t read_off_ = 0;  // file offset of buf_[lim_]
  bool eof_ = false;
  bool skipping_ = false;
  std::uint64_t local_end_ = 0;  // lines starting at or after this offset are not ours
  std::uint64_t lines_ = 0;      // lines returned from this segment so far
  std::uint64_t line_off_ = 0;   // offset of the current line
  std::uint64_t next_pos_ = 0;   // concatenated offset just after the last line returned
  bool exhausted_ = false;       // every segment done
};

}  // namespace

std::int64_t LogBucket(double v) {
  if (std::isnan(v)) return 0;
  if (v > 2.0) {
    const double l = std::log(v);
    return static_cast<std::int64_t>(std::floor(l * l));
  }
  if (v < -9.0e18) return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(std::floor(v));
}

std::vector<NumericStat> ComputeNumericStats(const FeatureSpec& spec,
                                             const std::vector<std::string>& files) {
  if (spec.data.format != DataFormat::kCsv) return {};
  const CsvSpec& csv = spec.data.csv;
  const std::size_t k = csv.numeric.size();
  std::vector<std::uint64_t> n(k, 0);
  std::vector<double> mean(k, 0.0), m2(k, 0.0);
  // Per file: column index -> numeric stat index (or -1).
  std::vector<std::vector<int>> stat_of(files.size());
  for (std::size_t f = 0; f < files.size(); ++f) {
    std::vector<std::string> header = ReadCsvHeader(files[f], csv.delimiter);
    std::vector<CsvColumn> columns = BuildCsvColumns(csv, header, files[f]);
    for (const CsvColumn& c : columns) {
      int idx = -1;
      if (c.role == CsvRole::kNumeric) {
        idx = static_cast<int>(std::find(csv.numeric.begin(), csv.numeric.end(), c.name) -
                               csv.numeric.begin());
      }
      stat_of[f].push_back(idx);
    }
  }
  LineSource source(files);
  source.SetRanges({{0, source.total_bytes()}});
  std::vector<std::string_view> cells;
  std::string scratch, reason;
  std::string_view line;
  while (source.Next(&line)) {
    if (source.line_offset() == 0 || IsBlank(line)) continue;
    const std::vector<int>& map = stat_of[source.file_index()];
    if (!SplitCsv(line, csv.delimiter, &cells, &scratch, &reason) || cells.size() != map.size()) {
      continue;
    }
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (map[i] < 0 || cells[i].empty()) continue;
      double x;
      if (internal::ParseDouble(cells[i], &x) != NumStatus::kOk) continue;
      const auto j = static_cast<std::size_t>(map[i]);
      ++n[j];
      const double d = x - mean[j];
      mean[j] += d / static_cast<double>(n[j]);
      m2[j] += d * (x - mean[j]);
    }
  }
  std::vector<NumericStat> stats(k);
  for (std::size_t j = 0; j < k; ++j) {
    stats[j].column = csv.numeric[j];
    if (n[j] == 0) continue;
    stats[j].mean = mean[j];
    const double sd = std::sqrt(m2[j] / static_cast<double>(n[j]));
    stats[j].std = (sd > 0.0 && std::isfinite(sd)) ? sd : 1.0;
  }
  return stats;
}

std::uint64_t TotalBytes(const std::vector<std::string>& files) {
  std::uint64_t total = 0;
  for (const auto& f : files) total += FileSize(f);
  return total;
}

ByteRange ShardRange(std::uint64_t total_bytes, int shard, int num_shards) {
  if (num_shards < 1 || shard < 0 || shard >= num_shards) {
    std::string msg("invalid shard ");
    msg.append(std::to_string(shard));
    msg.append(" of ");
    msg.append(std::to_string(num_shards));
    throw ConfigError(msg);
  }
  // floor(total * i / n) without overflow: total = q * n + r.
  const std::uint64_t n = static_cast<std::uint64_t>(num_shards);
  const std::uint64_t q = total_bytes / n, r = total_bytes % n;
  auto cut = [&](std::uint64_t i) { return q * i + r * i / n; };
  const std::uint64_t i = static_cast<std::uint64_t>(shard);
  return {cut(i), cut(i + 1)};
}

std::vector<std::vector<ByteRange>> SplitRanges(const std::vector<ByteRange>& ranges, int n) {
  if (n < 1) {
    std::string msg("SplitRanges: invalid number of parts ");
    msg.append(std::to_string(n));
    throw ConfigError(msg);
  }
  const std::vector<ByteRange> in = NormalizeRanges(ranges, "SplitRanges");
  std::uint64_t total = 0;
  for (const ByteRange& r : in) total += r.end - r.begin;
  std::vector<std::vector<ByteRange>> parts(static_cast<std::size_t>(n));
  std::size_t k = 0;                                 // current input range
  std::uint64_t pos = in.empty() ? 0 : in[0].begin;  // next byte to assign, within in[k]
  for (int i = 0; i < n; ++i) {
    const ByteRange share = ShardRange(total, i, n);
    std::uint64_t want = share.end - share.begin;
    while (want > 0) {
      const std::uint64_t take = std::min(want, in[k].end - pos);
      parts[static_cast<std::size_t>(i)].push_back({pos, pos + take});
      pos += take;
      want -= take;
      if (pos == in[k].end && ++k < in.size()) pos = in[k].begin;
    }
  }
  return parts;
}

class ShardReader::Impl {
 public:
  Impl(FeatureSpec spec, std::vector<std::string> files, int shard, int num_shards)
      : Impl(std::move(spec), std::move(files)) {
    source_.SetRanges({ShardRange(source_.total_bytes(), shard, num_shards)});
  }
  Impl(FeatureSpec spec, std::vector<std::string> files, const std::vector<ByteRange>& ranges)
      : Impl(std::move(spec), std::move(files)) {
    source_.SetRanges(ranges);
  }

  std::size_t Read(std::size_t max_rows, RowBlock* block) {
    std::size_t rows = 0;
    std::string_view line;
    while (rows < max_rows && source_.Next(&line)) {
      if (csv_ && source_.line_offset() == 0) continue;  // the file's header
      if (line.empty() || (IsSpace(line[0]) && IsBlank(line))) continue;
      RowParser& parser = parsers_[csv_ ? source_.file_index() : 0];
      if (parser.Parse(line, block, &reason_)) {
        ++rows;
      } else {
        BadRow();
      }
    }
    rows_read_ += rows;
    return rows;
  }

  void Rewind() { source_.Rewind(); }
  std::uint64_t rows_read() const { return rows_read_; }
  std::uint64_t bytes_in_shard() const { return source_.range_bytes(); }
  std::uint64_t bytes_consumed() const { return source_.consumed(); }
  const BadRowStats& bad_rows() const { return bad_; }
  void Remaining(std::vector<ByteRange>* out) const { source_.Remaining(out); }

 private:
  Impl(FeatureSpec spec, std::vector<std::string> files) : spec_(std::move(spec)), source_(files) {
    csv_ = spec_.data.format == DataFormat::kCsv;
    if (csv_) {
      for (const auto& f : files) {
        std::vector<std::string> header = ReadCsvHeader(f, spec_.data.csv.delimiter);
        parsers_.emplace_back(spec_, &header, f, true);
      }
    } else {
      parsers_.emplace_back(spec_, nullptr, "", true);
    }
  }

  void BadRow() {
    ++bad_.count;
    const bool fail = spec_.data.on_error == OnError::kFail;
    if (!fail && bad_.first.size() >= BadRowStats::kMaxReported) return;
    std::string msg = source_.path() + ":" + std::to_string(source_.LineNumber()) + ": " + reason_;
    if (fail) throw DataError(msg);
    Warn(msg + " (row skipped)");
    bad_.first.push_back(std::move(msg));
  }

  FeatureSpec spec_;
  LineSource source_;
  bool csv_ = false;
  std::vector<RowParser> parsers_;  // csv: one per file (headers may differ); else one
  std::string reason_;
  std::uint64_t rows_read_ = 0;
  BadRowStats bad_;
};

ShardReader::ShardReader(FeatureSpec spec, std::vector<std::string> files, int shard,
                         int num_shards)
    : impl_(std::make_unique<Impl>(std::move(spec), std::move(files), shard, num_shards)) {}
ShardReader::ShardReader(FeatureSpec spec, std::vector<std::string> files,
                         std::vector<ByteRange> ranges)
    : impl_(std::make_unique<Impl>(std::move(spec), std::move(files), ranges)) {}
ShardReader::~ShardReader() = default;
std::size_t ShardReader::Read(std::size_t max_rows, RowBlock* block) {
  return impl_->Read(max_rows, block);
}
void ShardReader::Rewind() { impl_->Rewind(); }
std::vector<ByteRange> ShardReader::Remaining() const {
  std::vector<ByteRange> out;
  impl_->Remaining(&out);
  return out;
}
void ShardReader::Remaining(std::vector<ByteRange>* out) const { impl_->Remaining(out); }
std::uint64_t ShardReader::rows_read() const { return impl_->rows_read(); }
std::uint64_t ShardReader::bytes_in_shard() const { return impl_->bytes_in_shard(); }
std::uint64_t ShardReader::bytes_consumed() const { return impl_->bytes_consumed(); }
const BadRowStats& ShardReader::bad_rows() const { return impl_->bad_rows(); }

struct LineParser::State {
  State(const FeatureSpec& spec, const std::vector<std::string>& header)
      : parser(spec, &header, "", true) {}
  RowParser parser;
  std::string padded;  // the line followed by kLinePadding readable bytes
  std::string reason;
};

LineParser::LineParser(const FeatureSpec& spec, std::vector<std::string> csv_header)
    : state_(std::make_shared<State>(spec, csv_header)) {}

bool LineParser::Parse(std::string_view line, RowBlock* block, std::string* reason) {
  line = StripLineEnd(line);
  state_->padded.assign(line);
  state_->padded.append(kLinePadding, '\0');
  return state_->parser.Parse(std::string_view(state_->padded.data(), line.size()), block,
                              reason ? reason : &state_->reason);
}

}  // namespace fmps
