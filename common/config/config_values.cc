// Typed reading of config values: see config_values.h.

#include "common/config/config_values.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>
#include <type_traits>
#include <vector>

#include "common/base/error.h"

namespace fmps {
namespace {

bool IsPlainScalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() != "!"; }

// An integer's text as sign and magnitude (a leading '+' is allowed, "-0" is 0). Fails with
// "expected an integer <range>" unless the text is one; `overflow` when it has over 64 bits.
struct IntegerText {
  bool negative = false;
  std::uint64_t magnitude = 0;
  bool overflow = false;
};

IntegerText ReadIntegerText(const Context& ctx, const Entry& e, const std::string& range) {
  const std::string expected = e.path + ": expected an integer " + range + ", got ";
  if (!IsPlainScalar(e.value)) ctx.Fail(e.path, e.mark(), expected + Describe(e.value));
  const std::string& text = e.value.Scalar();
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  if (begin != end && *begin == '+') ++begin;
  IntegerText t;
  t.negative = begin != end && *begin == '-';
  if (t.negative) ++begin;
  const auto [ptr, ec] = std::from_chars(begin, end, t.magnitude);
  if (ec == std::errc::invalid_argument || ptr != end || begin == end) {
    ctx.Fail(e.path, e.mark(), expected + Describe(e.value));
  }
  t.overflow = ec == std::errc::result_out_of_range;
  return t;
}

[[noreturn]] void FailIntegerRange(const Context& ctx, const Entry& e, const std::string& range) {
  ctx.Fail(e.path, e.mark(),
           e.path + ": " + Quote(e.value.Scalar()) + " is out of range (allowed: integers " +
               range + ")");
}

std::int64_t ReadInt(const Context& ctx, const Entry& e, std::int64_t lo, std::int64_t hi) {
  const std::string range = IntRangeText(lo, hi);
  const IntegerText t = ReadIntegerText(ctx, e, range);
  constexpr std::uint64_t kMaxMagnitude = std::uint64_t{1} << 63;  // of a negative int64
  if (t.overflow || t.magnitude > (t.negative ? kMaxMagnitude : kMaxMagnitude - 1)) {
    FailIntegerRange(ctx, e, range);
  }
  const std::int64_t v = t.negative ? static_cast<std::int64_t>(0 - t.magnitude)
                                    : static_cast<std::int64_t>(t.magnitude);
  if (v < lo || v > hi) FailIntegerRange(ctx, e, range);
  return v;
}

std::uint64_t ReadUint64(const Context& ctx, const Entry& e) {
  const std::string range = "in 0.." + std::to_string(std::numeric_limits<std::uint64_t>::max());
  const IntegerText t = ReadIntegerText(ctx, e, range);
  if (t.overflow || (t.negative && t.magnitude != 0)) FailIntegerRange(ctx, e, range);
  return t.magnitude;
}

// The number `text` spells (YAML's .inf/.nan spellings included); false if it is none.
template <typename T>
bool ParseReal(const std::string& text, T* v) {
  if (text == ".inf" || text == ".Inf" || text == ".INF" || text == "+.inf" || text == "+.Inf" ||
      text == "+.INF") {
    *v = std::numeric_limits<T>::infinity();
  } else if (text == "-.inf" || text == "-.Inf" || text == "-.INF") {
    *v = -std::numeric_limits<T>::infinity();
  } else if (text == ".nan" || text == ".NaN" || text == ".NAN") {
    *v = std::numeric_limits<T>::quiet_NaN();
  } else {
    const char* begin = text.data();
    const char* end = text.data() + text.size();
    if (begin != end && *begin == '+') ++begin;
    const auto [ptr, ec] = std::from_chars(begin, end, *v, std::chars_format::general);
    if (ec == std::errc::invalid_argument || ptr != end || begin == end) return false;
    if (ec == std::errc::result_out_of_range) *v = std::numeric_limits<T>::quiet_NaN();
  }
  return true;
}

template <typename T>
T ReadReal(const Context& ctx, const Entry& e, const RealRange& range) {
  const std::string expected = e.path + ": expected a finite number " + range.text;
  T v = 0;
  if (!IsPlainScalar(e.value) || !ParseReal(e.value.Scalar(), &v)) {
    ctx.Fail(e.path, e.mark(), expected + ", got " + Describe(e.value));
  }
  const double d = static_cast<double>(v);
  const bool ok = std::isfinite(d) && (range.lo_inclusive ? d >= range.lo : d > range.lo) &&
                  (range.hi_inclusive ? d <= range.hi : d < range.hi);
  if (!ok) {
    ctx.Fail(e.path, e.mark(),
             e.path + ": " + Quote(e.value.Scalar()) +
                 " is out of range (allowed: finite numbers " + range.text + ")");
  }
  return v;
}

std::string ReadString(const Context& ctx, const Entry& e, const TextField& f) {
  if (!e.value.IsScalar()) {
    ctx.Fail(e.path, e.mark(), e.path + ": expected " + f.what + ", got " + Describe(e.value));
  }
  if (e.value.Scalar().empty() && f.empty_error != nullptr) {
    ctx.Fail(e.path, e.mark(), e.path + ": " + f.empty_error);
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

char ReadChar(const Context& ctx, const Entry& e) {
  if (!e.value.IsScalar()) {
    ctx.Fail(e.path, e.mark(), e.path + ": expected one character, got " + Describe(e.value));
  }
  const std::string& text = e.value.Scalar();
  if (text.size() != 1 || text[0] == '\n' || text[0] == '\r') {
    ctx.Fail(e.path, e.mark(),
             e.path +
                 ": expected exactly one character other than a line break (e.g. \",\" or "
                 "\"\\t\"), got " +
                 Quote(text));
  }
  return text[0];
}

// true or false, as written (YAML's other spellings, yes/no/on/off, are not taken).
bool ReadBool(const Context& ctx, const Entry& e) {
  if (e.value.IsScalar() && e.value.Scalar() == "true") return true;
  if (e.value.IsScalar() && e.value.Scalar() == "false") return false;
  ctx.Fail(e.path, e.mark(), e.path + ": expected true or false, got " + Describe(e.value));
}

template <typename E>
E ReadEnum(const Context& ctx, const Entry& e) {
  const KeyList names = EnumNames<E>();
  const std::string allowed = JoinNames(names);
  if (!e.value.IsScalar()) {
    ctx.Fail(e.path, e.mark(),
             e.path + ": expected one of " + allowed + ", got " + Describe(e.value));
  }
  const std::string& text = e.value.Scalar();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (text == names[i]) return static_cast<E>(i);
  }
  std::string message = e.path + ": unknown value " + Quote(text) + " (allowed: " + allowed + ")";
  const std::string nearest = Nearest(text, names);
  if (!nearest.empty()) message += "; did you mean '" + nearest + "'?";
  ctx.Fail(e.path, e.mark(), message);
}

template <typename T>
struct IsEnumField : std::false_type {};
template <typename E>
struct IsEnumField<EnumField<E>> : std::true_type {};

}  // namespace

void ReadFieldValue(const Context& ctx, const Entry& e, const ConfigField& field, Config* config) {
  std::visit(
      [&](const auto& f) {
        using F = std::decay_t<decltype(f)>;
        auto& member = f.member(*config);
        if constexpr (std::is_same_v<F, IntField<int>> ||
                      std::is_same_v<F, IntField<std::uint32_t>>) {
          member = static_cast<std::decay_t<decltype(member)>>(ReadInt(ctx, e, f.lo, f.hi));
        } else if constexpr (std::is_same_v<F, Uint64Field>) {
          member = ReadUint64(ctx, e);
        } else if constexpr (std::is_same_v<F, RealField<float>> ||
                             std::is_same_v<F, RealField<double>>) {
          member = ReadReal<std::decay_t<decltype(member)>>(ctx, e, f.range);
        } else if constexpr (std::is_same_v<F, TextField>) {
          member = ReadString(ctx, e, f);
        } else if constexpr (std::is_same_v<F, ListField>) {
          member = ReadStringList(ctx, e, f.what);
        } else if constexpr (std::is_same_v<F, CharField>) {
          member = ReadChar(ctx, e);
        } else if constexpr (std::is_same_v<F, BoolField>) {
          member = ReadBool(ctx, e);
        } else {
          static_assert(IsEnumField<F>::value);
          member = ReadEnum<std::decay_t<decltype(member)>>(ctx, e);
        }
      },
      field.kind);
}

std::string ExpectedText(const ConfigField& field) {
  return std::visit(
      [](const auto& f) -> std::string {
        using F = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<F, ListField>) {
          return std::string("a ") + f.what + ", or a list of them";
        } else if constexpr (std::is_same_v<F, TextField>) {
          return f.what;
        } else if constexpr (std::is_same_v<F, BoolField>) {
          return "true or false";
        } else if constexpr (std::is_same_v<F, IntField<int>>) {
          return "an integer in " + std::to_string(f.lo) + ".." + std::to_string(f.hi);
        } else if constexpr (IsEnumField<F>::value) {
          return "one of " +
                 JoinNames(EnumNames<std::decay_t<decltype(f.member(std::declval<Config&>()))>>());
        } else {
          return "a value";
        }
      },
      field.kind);
}

}  // namespace fmps
