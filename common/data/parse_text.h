// Text helpers shared by the format parsers (private to common/data): separators, labels,
// feature values and the wording of bad-row reasons.
//
// Reasons are built by appending into a caller's reused string, so a bad row costs no
// allocation once that string has grown. Quoted tokens are cut at kMaxQuoted bytes and their
// control bytes written as \xNN, so that a reason stays one short printable line.
// All functions are pure apart from their out-parameters; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "common/base/parse_number.h"

namespace fmps::data_internal {

// How a row parser reads labels and keys, from the FeatureSpec: hashing of ids and
// columns, the label set (0/1 or -1/+1 for logistic loss, any real for squared), and
// whether a row may come without a label (LabelPolicy::kOptional: predict only).
struct RowRules {
  int hash_bits = 0;
  bool logistic = true;
  bool labels_optional = false;
  std::uint32_t field_limit = 0xffffffffu;  // FeatureSpec::field_limit
  bool normalize = false;  // data.normalize: instance (honoured by the sparse parsers only)
};

using internal::NumStatus;

// Readable bytes a parser may load after a line's end (8-byte loads, see ScanU64Padded).
inline constexpr std::size_t kLinePadding = 64;
inline constexpr std::size_t kMaxQuoted = 40;  // longest token quoted verbatim in a reason
inline constexpr float kFloatMax = std::numeric_limits<float>::max();

// Feature separators of libsvm / libffm lines.
inline bool IsSep(char c) { return c == ' ' || c == '\t'; }

inline bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

// True when the line holds only IsSpace bytes (or nothing).
bool IsBlank(std::string_view line);

// The line without one trailing '\r'.
std::string_view StripLineEnd(std::string_view line);

// The line without a leading UTF-8 byte order mark.
std::string_view StripBom(std::string_view line);

// The end of the token starting at p: the first separator at or after p, else end.
inline const char* TokenEnd(const char* p, const char* end) {
  while (p != end && !IsSep(*p)) ++p;
  return p;
}

// Appends 'tok' (cut and escaped as above) to *r.
void AppendQuoted(std::string* r, std::string_view tok);

// Appends the decimal digits of v to *r.
void AppendUint(std::string* r, std::uint64_t v);

// *r = "<what> '<tok>' in feature <n>".
void FeatureReason(std::string* r, std::string_view what, std::string_view tok, int feature);

// *r = "bad number '<tok>' in <where>" or "non-finite value ..." for a value that failed to
// parse with `st`.
void NumberReason(std::string* r, NumStatus st, std::string_view tok, std::string_view where);

// Parses a label token: under logistic loss 1 -> 1 and 0 / -1 -> 0, anything else is bad;
// otherwise any finite number. Returns false with *reason set.
bool ParseLabel(std::string_view tok, bool logistic, float* y, std::string* reason);

// Slow path of ParseFeatureValue (anything but a single digit).
[[gnu::noinline]] const char* ParseFeatureValueSlow(const char* p, const char* end, float* value,
                                                    NumStatus* st, const char** tok_end);

// Parses the value of a feature token starting at p (after "id:"). On success stores it and
// returns the end of the token; on failure returns nullptr with *st set and *tok_end at the
// token's end. Single digits ("1", by far the most common) are handled inline.
[[gnu::always_inline]] inline const char* ParseFeatureValue(const char* p, const char* end,
                                                            float* value, NumStatus* st,
                                                            const char** tok_end) {
  if (p != end && internal::IsDigit(*p) && (p + 1 == end || IsSep(p[1]))) [[likely]] {
    *value = static_cast<float>(*p - '0');
    return p + 1;
  }
  return ParseFeatureValueSlow(p, end, value, st, tok_end);
}

}  // namespace fmps::data_internal
