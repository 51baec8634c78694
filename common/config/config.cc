// Strict YAML config loading: see config.h.
//
// Parsing runs in three steps: load the YAML tree (syntax errors, empty document, root not a
// mapping), apply the --set overrides to the tree, then walk the tree section by section into
// the typed structs. Every error names the dotted key and where its text came from: the
// file's line:column, or the override that supplied it (overrides are remembered per dotted
// path, so a value inside an override's subtree is blamed on that override).

#include "common/config/config.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/base/error.h"

namespace fmps {
namespace {

using KeyList = std::span<const char* const>;

constexpr const char* kTopKeys[] = {"data",    "model",      "optimizer", "train",
                                    "cluster", "checkpoint", "output"};
constexpr const char* kDataSectionTopKeys[] = {"data"};
constexpr const char* kDataKeys[] = {"train", "test", "format", "hash_bits", "csv", "on_error"};
constexpr const char* kCsvKeys[] = {"label",  "numeric",   "categorical",
                                    "ignore", "delimiter", "transform"};
constexpr const char* kModelKeys[] = {"k", "loss", "init_std", "l2_w", "l2_v", "min_count"};
constexpr const char* kOptimizerKeys[] = {"name", "lr", "beta1",     "beta2",
                                          "eps",  "l1", "ftrl_beta", "clip_gradient"};
constexpr const char* kTrainKeys[] = {"epochs", "batch_size",       "consistency", "max_delay",
                                      "seed",   "progress_seconds", "init_model"};
constexpr const char* kClusterKeys[] = {"servers", "local_servers", "local_workers",
                                        "timeout_seconds"};
constexpr const char* kCheckpointKeys[] = {"dir", "every_seconds", "keep"};
constexpr const char* kOutputKeys[] = {"dir"};

template <typename E>
struct EnumName {
  E value;
  const char* name;
};

constexpr EnumName<DataFormat> kFormats[] = {{DataFormat::kLibsvm, "libsvm"},
                                             {DataFormat::kLibffm, "libffm"},
                                             {DataFormat::kCriteo, "criteo"},
                                             {DataFormat::kCsv, "csv"}};
constexpr EnumName<NumericTransform> kTransforms[] = {
    {NumericTransform::kStandardize, "standardize"},
    {NumericTransform::kLogBucket, "log_bucket"},
    {NumericTransform::kNone, "none"}};
constexpr EnumName<OnError> kOnErrors[] = {{OnError::kSkip, "skip"}, {OnError::kFail, "fail"}};
constexpr EnumName<Loss> kLosses[] = {{Loss::kLogistic, "logistic"}, {Loss::kSquared, "squared"}};
constexpr EnumName<OptimizerName> kOptimizers[] = {{OptimizerName::kSgd, "sgd"},
                                                   {OptimizerName::kAdagrad, "adagrad"},
                                                   {OptimizerName::kAdam, "adam"},
                                                   {OptimizerName::kFtrl, "ftrl"}};
constexpr EnumName<Consistency> kConsistencies[] = {{Consistency::kAsync, "async"},
                                                    {Consistency::kBsp, "bsp"}};

template <typename E, std::size_t N>
const char* NameOf(const EnumName<E> (&table)[N], E v) {
  for (const auto& entry : table) {
    if (entry.value == v) return entry.name;
  }
  return "?";
}

// ---- Suggestions ------------------------------------------------------------------------

// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions), ignoring case.
std::size_t EditDistance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  const std::size_t m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  auto lower = [](char c) { return std::tolower(static_cast<unsigned char>(c)); };
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
          lower(a[i - 2]) == lower(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

// The candidate nearest to `word` when reasonably close (about a third of the letters
// changed at most, and not everything), else "".
std::string Nearest(std::string_view word, KeyList candidates) {
  std::string best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (const char* candidate : candidates) {
    const std::string_view c = candidate;
    const std::size_t distance = EditDistance(word, c);
    const std::size_t longest = std::max(word.size(), c.size());
    const std::size_t limit = std::max<std::size_t>(1, longest / 3);
    if (distance <= limit && distance < longest && distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::string Join(KeyList names) {
  std::string out;
  for (const char* name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

// ---- Locations and errors -----------------------------------------------------------------

// Quotes a value for a message, making control characters visible.
std::string Quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// What a node holds, for "got ..." in messages.
std::string Describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing (null)";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  if (node.Tag() == "!") return "the quoted string " + Quote(node.Scalar());
  return Quote(node.Scalar());
}

// Where values come from: the file (name + marks) or --set overrides (remembered per path).
class Context {
 public:
  explicit Context(std::string name) : name_(std::move(name)) {}

  // Records that the subtree at `path` now comes from `origin` ("--set a.b=v").
  void AddOrigin(const std::string& path, const std::string& origin) {
    std::erase_if(origins_, [&](const auto& o) { return IsWithin(o.first, path); });
    origins_.emplace_back(path, origin);
  }

  // "--set a.b=v" if `path` lies in an override's subtree, else "name:line:col" (1-based),
  // else "name".
  std::string Where(const std::string& path, const YAML::Mark& mark) const {
    const std::string* best = nullptr;
    std::size_t best_length = 0;
    for (const auto& [prefix, origin] : origins_) {
      if (IsWithin(path, prefix) && (best == nullptr || prefix.size() > best_length)) {
        best = &origin;
        best_length = prefix.size();
      }
    }
    if (best != nullptr) return *best;
    return FileWhere(mark);
  }

  // "name:line:col", or "name" for a null mark; ignores overrides.
  std::string FileWhere(const YAML::Mark& mark) const {
    if (mark.is_null()) return name_;
    return name_ + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
  }

  [[noreturn]] void Fail(const std::string& path, const YAML::Mark& mark,
                         const std::string& message) const {
    throw ConfigError(Where(path, mark) + ": " + message);
  }

 private:
  // True when `path` is `prefix` or lies below it ("a.b.c" or "a.b[2]" within "a.b").
  static bool IsWithin(const std::string& path, const std::string& prefix) {
    if (path.size() < prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
    return path.size() == prefix.size() || path[prefix.size()] == '.' || path[prefix.size()] == '[';
  }

  std::string name_;
  std::vector<std::pair<std::string, std::string>> origins_;
};

// One key: value pair of a mapping.
struct Entry {
  std::string path;  // dotted key, e.g. "model.k"
  YAML::Node key;
  YAML::Node value;

  // Position of the value, or of the key when the value has none (null values).
  YAML::Mark mark() const {
    if (value.IsDefined() && !value.IsNull() && !value.Mark().is_null()) return value.Mark();
    return key.Mark();
  }
};

// The entries of one mapping, checked against the allowed keys.
class Section {
 public:
  // `node` may be undefined (section absent) or null (section with nothing under it); both
  // give an empty section. `key_mark` locates the section's key for errors about it.
  Section(const Context& ctx, std::string path, const YAML::Node& node, YAML::Mark key_mark,
          KeyList allowed)
      : path_(std::move(path)), key_mark_(key_mark) {
    if (!node.IsDefined() || node.IsNull()) return;
    if (!node.IsMap()) {
      const YAML::Mark mark = node.Mark().is_null() ? key_mark : node.Mark();
      if (path_.empty()) {
        ctx.Fail(path_, mark,
                 "the config must be a mapping of sections (" + Join(allowed) + "), got " +
                     Describe(node));
      }
      ctx.Fail(
          path_, mark,
          path_ + ": expected a mapping with keys " + Join(allowed) + ", got " + Describe(node));
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar()) {
        ctx.Fail(path_, key.Mark(),
                 "keys must be plain names" + (path_.empty() ? "" : " under " + path_) + ", got " +
                     Describe(key));
      }
      const std::string name = key.Scalar();
      const std::string dotted = Dotted(name);
      if (std::find_if(allowed.begin(), allowed.end(), [&](const char* a) { return name == a; }) ==
          allowed.end()) {
        std::string message = "unknown key '" + dotted + "'";
        const std::string nearest = Nearest(name, allowed);
        if (!nearest.empty()) message += " (did you mean '" + Dotted(nearest) + "'?)";
        ctx.Fail(dotted, key.Mark(), message);
      }
      if (Find(name) != nullptr) {
        ctx.Fail(dotted, key.Mark(), "duplicate key '" + dotted + "'");
      }
      entries_.push_back(Entry{dotted, key, it->second});
    }
  }

  const Entry* Find(std::string_view name) const {
    const std::string dotted = Dotted(std::string(name));
    for (const Entry& e : entries_) {
      if (e.path == dotted) return &e;
    }
    return nullptr;
  }

  const YAML::Mark& key_mark() const { return key_mark_; }

 private:
  std::string Dotted(const std::string& name) const {
    return path_.empty() ? name : path_ + "." + name;
  }

  std::string path_;
  YAML::Mark key_mark_;
  std::vector<Entry> entries_;
};

// A sub-section of `parent` named `name` (empty if absent).
Section SubSection(const Context& ctx, const Section& parent, const std::string& path,
                   std::string_view name, KeyList allowed) {
  const Entry* e = parent.Find(name);
  if (e == nullptr) return Section(ctx, path, YAML::Node(), YAML::Mark::null_mark(), allowed);
  return Section(ctx, path, e->value, e->key.Mark(), allowed);
}

// ---- Scalars ------------------------------------------------------------------------------

bool IsPlainScalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() != "!"; }

std::string IntRangeText(std::int64_t lo, std::int64_t hi) {
  if (hi == std::numeric_limits<int>::max()) return ">= " + std::to_string(lo);
  return "in " + std::to_string(lo) + ".." + std::to_string(hi);
}

std::int64_t ReadInt(const Context& ctx, const Entry& e, std::int64_t lo, std::int64_t hi) {
  const std::string range = IntRangeText(lo, hi);
  if (!IsPlainScalar(e.value)) {
    ctx.Fail(e.path, e.mark(),
             e.path + ": expected an integer " + range + ", got " + Describe(e.value));
  }
  const std::string& text = e.value.Scalar();
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  if (begin != end && *begin == '+') ++begin;
  std::int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(begin, end, v);
  if (ec == std::errc::invalid_argument || ptr != end || begin == end) {
    ctx.Fail(e.path, e.mark(),
             e.path + ": expected an integer " + range + ", got " + Describe(e.value));
  }
  if (ec == std::errc::result_out_of_range || v < lo || v > hi) {
    ctx.Fail(e.path, e.mark(),
             e.path + ": " + Quote(text) + " is out of range (allowed: integers " + range + ")");
  }
  return v;
}

std::uint64_t ReadUint64(const Context& ctx, const Entry& e) {
  const std::string range = "in 0.." + std::to_string(std::numeric_limits<std::uint64_t>::max());
  if (!IsPlainScalar(e.value)) {
    ctx.Fail(e.path, e.mark(),
             e.path + ": expected an integer " + range + ", got " + Describe(e.value));
  }
  const std::string& text = e.value.Scalar();
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  if (begin != end && *begin == '+') ++begin;
  const bool negative = begin != end && *begin == '-';
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(negative ? begin + 1 : begin, end, v);
  if (ec == std::errc::invalid_argument || ptr != end || begin == end) {
    ctx.Fail(e.path, e.mark(),
             e.path + ": expected an integer " + range + ", got " + Describe(e.value));
  }
  if (ec == std::errc::result_out_of_range || (negative && v != 0)) {
    ctx.Fail(e.path, e.mark(),
             e.path + ": " + Quote(text) + " is out of range (allowed: integers " + range + ")");
  }
  return v;
}

// Allowed interval of a real-valued key; values must also be finite.
struct RealRange {
  double lo;
  bool lo_inclusive;
  double hi;  // +inf: unbounded
  bool hi_inclusive;
  const char* text;  // e.g. ">= 0", "in [0, 1)"
};

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr RealRange kNonNegative{0.0, true, kInf, false, ">= 0"};
constexpr RealRange kPositive{0.0, false, kInf, false, "> 0"};
constexpr RealRange kUnitOpen{0.0, true, 1.0, false, "in [0, 1)"};

template <typename T>
T ReadReal(const Context& ctx, const Entry& e, const RealRange& range) {
  const std::string expected = e.path + ": expected a finite number " + range.text;
  if (!IsPlainScalar(e.value)) ctx.Fail(e.path, e.mark(), expected + ", got " + Describe(e.value));
  const std::string& text = e.value.Scalar();
  T v = 0;
  // YAML spellings of the non-finite values; std::from_chars knows "inf" and "nan".
  if (text == ".inf" || text == ".Inf" || text == ".INF" || text == "+.inf" || text == "+.Inf" ||
      text == "+.INF") {
    v = std::numeric_limits<T>::infinity();
  } else if (text == "-.inf" || text == "-.Inf" || text == "-.INF") {
    v = -std::numeric_limits<T>::infinity();
  } else if (text == ".nan" || text == ".NaN" || text == ".NAN") {
    v = std::numeric_limits<T>::quiet_NaN();
  } else {
    const char* begin = text.data();
    const char* end = text.data() + text.size();
    if (begin != end && *begin == '+') ++begin;
    const auto [ptr, ec] = std::from_chars(begin, end, v, std::chars_format::general);
    if (ec == std::errc::invalid_argument || ptr != end || begin == end) {
      ctx.Fail(e.path, e.mark(), expected + ", got " + Describe(e.value));
    }
    if (ec == std::errc::result_out_of_range) v = std::numeric_limits<T>::quiet_NaN();
  }
  const double d = static_cast<double>(v);
  const bool ok = std::isfinite(d) && (range.lo_inclusive ? d >= range.lo : d > range.lo) &&
                  (range.hi_inclusive ? d <= range.hi : d < range.hi);
  if (!ok) {
    ctx.Fail(e.path, e.mark(),
             e.path + ": " + Quote(text) + " is out of range (allowed: finite numbers " +
                 range.text + ")");
  }
  return v;
}

std::string ReadString(const Context& ctx, const Entry& e, const char* what) {
  if (!e.value.IsScalar()) {
    ctx.Fail(e.path, e.mark(), e.path + ": expected " + what + ", got " + Describe(e.value));
  }
  return e.value.Scalar();
}

// One string or a list of strings; elements must be non-empty.
std::vector<std::string> ReadStringList(const Context& ctx, const Entry& e, const char* what) {
  std::vector<std::string> out;
  if (e.value.IsScalar()) {
    out.push_back(e.value.Scalar());
    if (out.back().empty()) ctx.Fail(e.path, e.mark(), e.path + ": empty " + what);
    return out;
  }
  if (!e.value.IsSequence()) {
    ctx.Fail(e.path, e.mark(),
             e.path + ": expected a " + what + " or a list of them, got " + Describe(e.value));
  }
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    const Entry element{e.path + "[" + std::to_string(i) + "]", e.key, e.value[i]};
    if (!element.value.IsScalar()) {
      ctx.Fail(element.path, element.mark(),
               element.path + ": expected a " + what + ", got " + Describe(element.value));
    }
    out.push_back(element.value.Scalar());
    if (out.back().empty()) {
      ctx.Fail(element.path, element.mark(), element.path + ": empty " + what);
    }
  }
  return out;
}

template <typename E, std::size_t N>
E ReadEnum(const Context& ctx, const Entry& e, const EnumName<E> (&table)[N]) {
  const char* names[N];
  for (std::size_t i = 0; i < N; ++i) names[i] = table[i].name;
  const std::string allowed = Join(names);
  if (!e.value.IsScalar()) {
    ctx.Fail(e.path, e.mark(),
             e.path + ": expected one of " + allowed + ", got " + Describe(e.value));
  }
  const std::string& text = e.value.Scalar();
  for (const auto& entry : table) {
    if (text == entry.name) return entry.value;
  }
  std::string message = e.path + ": unknown value " + Quote(text) + " (allowed: " + allowed + ")";
  const std::string nearest = Nearest(text, names);
  if (!nearest.empty()) message += "; did you mean '" + nearest + "'?";
  ctx.Fail(e.path, e.mark(), message);
}

// ---- Sections -----------------------------------------------------------------------------

// Reads the `data` section (an entry of `top`). Missing required keys are reported at the
// section's key in the file (or just the file name when there is no data section).
DataConfig ReadData(const Context& ctx, const Section& top, bool require_train) {
  const Section s = SubSection(ctx, top, "data", "data", kDataKeys);
  DataConfig d;
  const Entry* e = nullptr;
  if ((e = s.Find("train")) != nullptr) d.train = ReadStringList(ctx, *e, "path or glob");
  if (require_train && d.train.empty()) {
    throw ConfigError(ctx.FileWhere(s.key_mark()) +
                      ": data.train is required (a path or glob, or a list of them)");
  }
  if ((e = s.Find("test")) != nullptr) d.test = ReadStringList(ctx, *e, "path or glob");
  const Entry* format = s.Find("format");
  if (format == nullptr) {
    throw ConfigError(ctx.FileWhere(s.key_mark()) + ": data.format is required (one of " +
                      "libsvm, libffm, criteo, csv)");
  }
  d.format = ReadEnum(ctx, *format, kFormats);
  if ((e = s.Find("hash_bits")) != nullptr) d.hash_bits = static_cast<int>(ReadInt(ctx, *e, 0, 64));

  const Entry* csv_entry = s.Find("csv");
  if (csv_entry != nullptr && d.format != DataFormat::kCsv) {
    ctx.Fail(csv_entry->path, csv_entry->key.Mark(),
             "data.csv applies only to data.format: csv (data.format is " +
                 std::string(ToString(d.format)) + ")");
  }
  if (d.format == DataFormat::kCsv) {
    const Section csv = SubSection(ctx, s, "data.csv", "csv", kCsvKeys);
    CsvSpec& spec = d.csv;
    if ((e = csv.Find("label")) != nullptr) {
      spec.label = ReadString(ctx, *e, "the label column's name");
      if (spec.label.empty()) ctx.Fail(e->path, e->mark(), "data.csv.label: empty column name");
    } else {
      ctx.Fail(format->path, format->mark(),
               "data.format: csv requires data.csv.label (the label column's name)");
    }
    // Each column has exactly one role.
    std::vector<std::pair<std::string, std::string>> roles = {{spec.label, "data.csv.label"}};
    auto read_columns = [&](const char* name, std::vector<std::string>* out) {
      const Entry* entry = csv.Find(name);
      if (entry == nullptr) return;
      *out = ReadStringList(ctx, *entry, "column name");
      for (std::size_t i = 0; i < out->size(); ++i) {
        const std::string& column = (*out)[i];
        for (const auto& [other, role] : roles) {
          if (other == column) {
            const YAML::Node element = entry->value.IsSequence() ? entry->value[i] : entry->value;
            ctx.Fail(entry->path, element.Mark(),
                     entry->path + ": column " + Quote(column) + " already has a role in " + role +
                         " (each column has exactly one role)");
          }
        }
        roles.emplace_back(column, entry->path);
      }
    };
    read_columns("numeric", &spec.numeric);
    read_columns("categorical", &spec.categorical);
    read_columns("ignore", &spec.ignore);
    if ((e = csv.Find("delimiter")) != nullptr) {
      const std::string text = ReadString(ctx, *e, "one character");
      if (text.size() != 1 || text[0] == '\n' || text[0] == '\r') {
        ctx.Fail(e->path, e->mark(),
                 "data.csv.delimiter: expected exactly one character other than a line break "
                 "(e.g. \",\" or \"\\t\"), got " +
                     Quote(text));
      }
      spec.delimiter = text[0];
    }
    if ((e = csv.Find("transform")) != nullptr) spec.transform = ReadEnum(ctx, *e, kTransforms);
  }
  if ((e = s.Find("on_error")) != nullptr) d.on_error = ReadEnum(ctx, *e, kOnErrors);
  return d;
}

ModelConfig ReadModel(const Context& ctx, const Section& top) {
  const Section s = SubSection(ctx, top, "model", "model", kModelKeys);
  ModelConfig m;
  const Entry* e = nullptr;
  if ((e = s.Find("k")) != nullptr) m.k = static_cast<int>(ReadInt(ctx, *e, 1, 1024));
  if ((e = s.Find("loss")) != nullptr) m.loss = ReadEnum(ctx, *e, kLosses);
  if ((e = s.Find("init_std")) != nullptr) m.init_std = ReadReal<float>(ctx, *e, kNonNegative);
  if ((e = s.Find("l2_w")) != nullptr) m.l2_w = ReadReal<float>(ctx, *e, kNonNegative);
  if ((e = s.Find("l2_v")) != nullptr) m.l2_v = ReadReal<float>(ctx, *e, kNonNegative);
  if ((e = s.Find("min_count")) != nullptr) {
    m.min_count =
        static_cast<std::uint32_t>(ReadInt(ctx, *e, 0, std::numeric_limits<std::uint32_t>::max()));
  }
  return m;
}

OptimizerConfig ReadOptimizer(const Context& ctx, const Section& top) {
  const Section s = SubSection(ctx, top, "optimizer", "optimizer", kOptimizerKeys);
  OptimizerConfig o;
  const Entry* e = nullptr;
  if ((e = s.Find("name")) != nullptr) o.name = ReadEnum(ctx, *e, kOptimizers);
  const std::string chosen = std::string("optimizer.name is ") + ToString(o.name) +
                             (s.Find("name") == nullptr ? ", the default" : "");
  // Rejects a hyper-parameter that the chosen optimizer would ignore.
  auto require = [&](const Entry& entry, std::initializer_list<OptimizerName> users,
                     const char* users_text) {
    if (std::find(users.begin(), users.end(), o.name) == users.end()) {
      ctx.Fail(entry.path, entry.key.Mark(),
               entry.path + " applies only to optimizer.name: " + users_text + " (" + chosen + ")");
    }
  };
  if ((e = s.Find("lr")) != nullptr) o.lr = ReadReal<float>(ctx, *e, kPositive);
  if ((e = s.Find("beta1")) != nullptr) {
    require(*e, {OptimizerName::kAdam}, "adam");
    o.beta1 = ReadReal<float>(ctx, *e, kUnitOpen);
  }
  if ((e = s.Find("beta2")) != nullptr) {
    require(*e, {OptimizerName::kAdam}, "adam");
    o.beta2 = ReadReal<float>(ctx, *e, kUnitOpen);
  }
  if ((e = s.Find("eps")) != nullptr) {
    require(*e, {OptimizerName::kAdagrad, OptimizerName::kAdam}, "adagrad or adam");
    o.eps = ReadReal<float>(ctx, *e, kPositive);
  }
  if ((e = s.Find("l1")) != nullptr) {
    require(*e, {OptimizerName::kFtrl}, "ftrl");
    o.l1 = ReadReal<float>(ctx, *e, kNonNegative);
  }
  if ((e = s.Find("ftrl_beta")) != nullptr) {
    require(*e, {OptimizerName::kFtrl}, "ftrl");
    o.ftrl_beta = ReadReal<float>(ctx, *e, kNonNegative);
  }
  if ((e = s.Find("clip_gradient")) != nullptr) {
    o.clip_gradient = ReadReal<float>(ctx, *e, kNonNegative);
  }
  return o;
}

TrainConfig ReadTrain(const Context& ctx, const Section& top) {
  const Section s = SubSection(ctx, top, "train", "train", kTrainKeys);
  TrainConfig t;
  const Entry* e = nullptr;
  if ((e = s.Find("epochs")) != nullptr) t.epochs = static_cast<int>(ReadInt(ctx, *e, 1, 1000000));
  if ((e = s.Find("batch_size")) != nullptr) {
    t.batch_size = static_cast<int>(ReadInt(ctx, *e, 1, 10000000));
  }
  if ((e = s.Find("consistency")) != nullptr) t.consistency = ReadEnum(ctx, *e, kConsistencies);
  if ((e = s.Find("max_delay")) != nullptr) {
    if (t.consistency != Consistency::kAsync) {
      ctx.Fail(e->path, e->key.Mark(),
               "train.max_delay applies only to train.consistency: async (bsp runs one update "
               "per step)");
    }
    t.max_delay = static_cast<int>(ReadInt(ctx, *e, 1, 1024));
  }
  if ((e = s.Find("seed")) != nullptr) t.seed = ReadUint64(ctx, *e);
  if ((e = s.Find("progress_seconds")) != nullptr) {
    t.progress_seconds = ReadReal<double>(ctx, *e, kPositive);
  }
  if ((e = s.Find("init_model")) != nullptr) {
    t.init_model = ReadString(ctx, *e, "the path of a model.fmps to start from (empty for none)");
  }
  return t;
}

ClusterConfig ReadCluster(const Context& ctx, const Section& top) {
  const Section s = SubSection(ctx, top, "cluster", "cluster", kClusterKeys);
  ClusterConfig c;
  const Entry* e = nullptr;
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  if ((e = s.Find("servers")) != nullptr)
    c.servers = static_cast<int>(ReadInt(ctx, *e, 1, kIntMax));
  if ((e = s.Find("local_servers")) != nullptr) {
    c.local_servers = static_cast<int>(ReadInt(ctx, *e, 1, 64));
  }
  if ((e = s.Find("local_workers")) != nullptr) {
    c.local_workers = static_cast<int>(ReadInt(ctx, *e, 1, 256));
  }
  if ((e = s.Find("timeout_seconds")) != nullptr) {
    c.timeout_seconds = ReadReal<double>(ctx, *e, kPositive);
  }
  return c;
}

CheckpointConfig ReadCheckpoint(const Context& ctx, const Section& top) {
  const Section s = SubSection(ctx, top, "checkpoint", "checkpoint", kCheckpointKeys);
  CheckpointConfig c;
  const Entry* e = nullptr;
  if ((e = s.Find("dir")) != nullptr) {
    c.dir = ReadString(ctx, *e, "a directory path (empty for no checkpoints)");
  }
  for (const char* key : {"every_seconds", "keep"}) {
    if ((e = s.Find(key)) != nullptr && c.dir.empty()) {
      ctx.Fail(e->path, e->key.Mark(),
               e->path +
                   " applies only with checkpoint.dir set (no checkpoints are written "
                   "without it)");
    }
  }
  if ((e = s.Find("every_seconds")) != nullptr) {
    c.every_seconds = ReadReal<double>(ctx, *e, kPositive);
  }
  if ((e = s.Find("keep")) != nullptr) c.keep = static_cast<int>(ReadInt(ctx, *e, 1, 1000));
  return c;
}

OutputConfig ReadOutput(const Context& ctx, const Section& top, const std::string& default_dir) {
  const Section s = SubSection(ctx, top, "output", "output", kOutputKeys);
  OutputConfig o;
  o.dir = default_dir;
  if (const Entry* e = s.Find("dir"); e != nullptr) {
    o.dir = ReadString(ctx, *e, "a directory path");
    if (o.dir.empty()) {
      ctx.Fail(e->path, e->mark(), "output.dir: empty (omit the key for the default runs/<name>)");
    }
  }
  return o;
}

// ---- Documents and overrides -------------------------------------------------------------

// Records where each YAML document starts and where its root node is; ignores the rest.
class DocumentStarts : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;  // one per document
  std::vector<YAML::Mark> roots;   // one per document that has a root node
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnMapEnd() override {}

 private:
  void Node(const YAML::Mark& mark) {
    if (roots.size() < starts.size()) roots.push_back(mark);
  }
};

// Loads one YAML document that must be a non-empty mapping.
//
// The documents are first counted (up to 3) by a parser of our own rather than with
// YAML::LoadAll: on a ',' outside a flow collection (e.g. the text ",a", found by fuzzing)
// yaml-cpp 0.7's parser returns an empty document without consuming the token, so LoadAll
// never ends (allocating a node per turn). A document starting where the previous one did
// is that stray token.
YAML::Node LoadDocument(const Context& ctx, const std::string& text) {
  DocumentStarts docs;
  YAML::Node root;
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    while (docs.starts.size() < 3 && parser.HandleNextDocument(docs)) {
      const std::size_t n = docs.starts.size();
      if (n >= 2 && docs.starts[n - 1].pos == docs.starts[n - 2].pos) {
        const YAML::Mark& at = docs.starts[n - 1];
        std::string what = "invalid YAML: unexpected ";
        const auto pos = static_cast<std::size_t>(at.pos);
        if (pos < text.size() && std::isprint(static_cast<unsigned char>(text[pos]))) {
          what += '\'';
          what += text[pos];
          what += '\'';
        } else {
          what += "character";
        }
        throw ConfigError(ctx.FileWhere(at) + ": " + what);
      }
    }
    if (docs.starts.size() == 1) root = YAML::Load(text);
  } catch (const YAML::Exception& ex) {
    throw ConfigError(ctx.FileWhere(ex.mark) + ": invalid YAML: " + ex.msg);
  }
  if (docs.starts.size() > 1) {
    throw ConfigError(ctx.FileWhere(docs.roots.size() > 1 ? docs.roots[1] : docs.starts[1]) +
                      ": more than one YAML document; a config is a single document");
  }
  if (docs.starts.empty() || !root.IsDefined() || root.IsNull()) {
    throw ConfigError(ctx.FileWhere(YAML::Mark::null_mark()) +
                      ": the config is empty (it needs at least data.train and data.format)");
  }
  if (!root.IsMap()) {
    throw ConfigError(ctx.FileWhere(root.Mark()) + ": the config must be a mapping of sections (" +
                      Join(kTopKeys) + "), got " + Describe(root));
  }
  return root;
}

std::string Trim(std::string_view s) {
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return std::string(s);
}

// Applies one "a.b=value" override to the tree, creating missing intermediate mappings.
void ApplyOverride(Context* ctx, const YAML::Node& root, const std::string& text) {
  const std::string origin = "--set " + text;
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos) {
    throw ConfigError(origin + ": expected KEY=VALUE, e.g. --set optimizer.lr=0.05");
  }
  const std::string key = Trim(std::string_view(text).substr(0, eq));
  const std::string value_text = text.substr(eq + 1);
  std::vector<std::string> segments;
  for (std::size_t start = 0;;) {
    const std::size_t dot = key.find('.', start);
    segments.push_back(key.substr(start, dot == std::string::npos ? dot : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const std::string& segment : segments) {
    if (segment.empty()) {
      throw ConfigError(origin + ": malformed key " + Quote(key) +
                        " (expected a dotted path such as optimizer.lr)");
    }
  }
  YAML::Node value;
  if (Trim(value_text).empty()) {
    value = YAML::Node(std::string());
  } else {
    try {
      value = YAML::Load(value_text);
    } catch (const YAML::Exception& ex) {
      throw ConfigError(origin + ": cannot parse the value as YAML: " + ex.msg);
    }
  }
  YAML::Node current = root;
  std::string path;
  for (std::size_t i = 0; i + 1 < segments.size(); ++i) {
    path += (i == 0 ? "" : ".") + segments[i];
    YAML::Node child = current[segments[i]];
    if (!child.IsDefined() || child.IsNull()) {
      child = YAML::Node(YAML::NodeType::Map);
      ctx->AddOrigin(path, origin);
    } else if (!child.IsMap()) {
      throw ConfigError(origin + ": cannot set " + key + " because " + path + " is " +
                        Describe(child) + ", not a mapping");
    }
    current.reset(child);
  }
  current[segments.back()] = value;
  ctx->AddOrigin(key, origin);
}

std::string DefaultOutputDir(const std::string& name) {
  std::string stem = std::filesystem::path(name).stem().string();
  if (stem.empty()) stem = "config";
  return "runs/" + stem;
}

// ---- Emitting -----------------------------------------------------------------------------

// Shortest text that reads back to the same value, with a '.' before any exponent so that
// YAML 1.1 readers see a number too.
template <typename T>
std::string FormatReal(T v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, ec == std::errc() ? ptr : buf);
  const std::size_t exp = s.find('e');
  if (exp != std::string::npos && s.find('.') == std::string::npos) s.insert(exp, ".0");
  return s;
}

void EmitList(YAML::Emitter& out, const char* key, const std::vector<std::string>& values) {
  out << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const std::string& v : values) out << v;
  out << YAML::EndSeq;
}

void EmitData(YAML::Emitter& out, const DataConfig& d) {
  out << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  EmitList(out, "train", d.train);
  EmitList(out, "test", d.test);
  out << YAML::Key << "format" << YAML::Value << ToString(d.format);
  out << YAML::Key << "hash_bits" << YAML::Value << d.hash_bits;
  if (d.format == DataFormat::kCsv) {
    out << YAML::Key << "csv" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "label" << YAML::Value << d.csv.label;
    EmitList(out, "numeric", d.csv.numeric);
    EmitList(out, "categorical", d.csv.categorical);
    EmitList(out, "ignore", d.csv.ignore);
    out << YAML::Key << "delimiter" << YAML::Value << YAML::DoubleQuoted
        << std::string(1, d.csv.delimiter);
    out << YAML::Key << "transform" << YAML::Value << ToString(d.csv.transform);
    out << YAML::EndMap;
  }
  out << YAML::Key << "on_error" << YAML::Value << ToString(d.on_error);
  out << YAML::EndMap;
}

std::string Finish(const YAML::Emitter& out) {
  if (!out.good()) throw ConfigError("cannot write the config as YAML: " + out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

}  // namespace

const char* ToString(DataFormat v) { return NameOf(kFormats, v); }
const char* ToString(NumericTransform v) { return NameOf(kTransforms, v); }
const char* ToString(OnError v) { return NameOf(kOnErrors, v); }
const char* ToString(Loss v) { return NameOf(kLosses, v); }
const char* ToString(OptimizerName v) { return NameOf(kOptimizers, v); }
const char* ToString(Consistency v) { return NameOf(kConsistencies, v); }

Config ParseConfig(const std::string& yaml_text, const std::string& name,
                   const std::vector<std::string>& overrides) {
  Context ctx(name.empty() ? "config" : name);
  const YAML::Node root = LoadDocument(ctx, yaml_text);
  for (const std::string& o : overrides) ApplyOverride(&ctx, root, o);
  const Section top(ctx, "", root, root.Mark(), kTopKeys);
  Config c;
  c.data = ReadData(ctx, top, /*require_train=*/true);
  c.model = ReadModel(ctx, top);
  c.optimizer = ReadOptimizer(ctx, top);
  c.train = ReadTrain(ctx, top);
  c.cluster = ReadCluster(ctx, top);
  c.checkpoint = ReadCheckpoint(ctx, top);
  c.output = ReadOutput(ctx, top, DefaultOutputDir(name));
  return c;
}

Config LoadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw IoError("cannot open config file " + Quote(path) + ": " + std::strerror(errno));
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      throw IoError("cannot read config file " + Quote(path) + ": " + std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return ParseConfig(text, path, overrides);
}

DataConfig ParseDataSection(const std::string& yaml_text) {
  const Context ctx("data section");
  const YAML::Node root = LoadDocument(ctx, yaml_text);
  const Section top(ctx, "", root, root.Mark(), kDataSectionTopKeys);
  return ReadData(ctx, top, /*require_train=*/false);
}

std::string DataSectionToYaml(const DataConfig& data) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  EmitData(out, data);
  out << YAML::EndMap;
  return Finish(out);
}

std::string ConfigToYaml(const Config& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  EmitData(out, c.data);

  out << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "k" << YAML::Value << c.model.k;
  out << YAML::Key << "loss" << YAML::Value << ToString(c.model.loss);
  out << YAML::Key << "init_std" << YAML::Value << FormatReal(c.model.init_std);
  out << YAML::Key << "l2_w" << YAML::Value << FormatReal(c.model.l2_w);
  out << YAML::Key << "l2_v" << YAML::Value << FormatReal(c.model.l2_v);
  out << YAML::Key << "min_count" << YAML::Value << c.model.min_count;
  out << YAML::EndMap;

  const OptimizerConfig& o = c.optimizer;
  out << YAML::Key << "optimizer" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << ToString(o.name);
  out << YAML::Key << "lr" << YAML::Value << FormatReal(o.lr);
  if (o.name == OptimizerName::kAdam) {
    out << YAML::Key << "beta1" << YAML::Value << FormatReal(o.beta1);
    out << YAML::Key << "beta2" << YAML::Value << FormatReal(o.beta2);
  }
  if (o.name == OptimizerName::kAdagrad || o.name == OptimizerName::kAdam) {
    out << YAML::Key << "eps" << YAML::Value << FormatReal(o.eps);
  }
  if (o.name == OptimizerName::kFtrl) {
    out << YAML::Key << "l1" << YAML::Value << FormatReal(o.l1);
    out << YAML::Key << "ftrl_beta" << YAML::Value << FormatReal(o.ftrl_beta);
  }
  if (o.clip_gradient > 0) {  // 0 (off) is left out: digests of older configs stay the same
    out << YAML::Key << "clip_gradient" << YAML::Value << FormatReal(o.clip_gradient);
  }
  out << YAML::EndMap;

  const TrainConfig& t = c.train;
  out << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "epochs" << YAML::Value << t.epochs;
  out << YAML::Key << "batch_size" << YAML::Value << t.batch_size;
  out << YAML::Key << "consistency" << YAML::Value << ToString(t.consistency);
  if (t.consistency == Consistency::kAsync) {
    out << YAML::Key << "max_delay" << YAML::Value << t.max_delay;
  }
  out << YAML::Key << "seed" << YAML::Value << std::to_string(t.seed);
  out << YAML::Key << "progress_seconds" << YAML::Value << FormatReal(t.progress_seconds);
  out << YAML::Key << "init_model" << YAML::Value << t.init_model;
  out << YAML::EndMap;

  out << YAML::Key << "cluster" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "servers" << YAML::Value << c.cluster.servers;
  out << YAML::Key << "local_servers" << YAML::Value << c.cluster.local_servers;
  out << YAML::Key << "local_workers" << YAML::Value << c.cluster.local_workers;
  out << YAML::Key << "timeout_seconds" << YAML::Value << FormatReal(c.cluster.timeout_seconds);
  out << YAML::EndMap;

  out << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "dir" << YAML::Value << c.checkpoint.dir;
  if (!c.checkpoint.dir.empty()) {  // the other keys apply only with a dir
    out << YAML::Key << "every_seconds" << YAML::Value << FormatReal(c.checkpoint.every_seconds);
    out << YAML::Key << "keep" << YAML::Value << c.checkpoint.keep;
  }
  out << YAML::EndMap;

  out << YAML::Key << "output" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "dir" << YAML::Value << c.output.dir;
  out << YAML::EndMap;

  out << YAML::EndMap;
  return Finish(out);
}

std::vector<std::string> ExpandPaths(const std::vector<std::string>& patterns,
                                     const std::string& key) {
  std::vector<std::string> out;
  for (const std::string& pattern : patterns) {
    glob_t g{};
    const int rc = glob(pattern.c_str(), 0, nullptr, &g);
    std::vector<std::string> matches;
    if (rc == 0) matches.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    if (rc == GLOB_NOMATCH) throw ConfigError(key + ": no file matches " + Quote(pattern));
    if (rc != 0) {
      throw ConfigError(key + ": cannot expand " + Quote(pattern) +
                        (rc == GLOB_NOSPACE ? ": out of memory" : ": read error"));
    }
    std::sort(matches.begin(), matches.end());
    for (std::string& path : matches) {
      struct stat st;
      if (stat(path.c_str(), &st) != 0) {
        throw ConfigError(key + ": cannot use " + Quote(path) + ": " + std::strerror(errno));
      }
      if (S_ISDIR(st.st_mode)) {
        throw ConfigError(key + ": " + Quote(path) +
                          " is a directory, not a file (use a glob such as '" + path + "/*')");
      }
      if (!S_ISREG(st.st_mode)) {
        throw ConfigError(key + ": " + Quote(path) + " is not a regular file");
      }
      out.push_back(std::move(path));
    }
  }
  return out;
}

}  // namespace fmps
