#include "common/data/sparse_parser.h"

#include <limits>

#include "common/base/hash.h"
#include "common/base/parse_number.h"
#include "common/data/parse_text.h"

namespace fmps::data_internal {

// The label of a libsvm / libffm line; a first token that looks like a feature means the
// label is missing.
bool SparseParser::ParseSparseLabel(std::string_view tok, float* y, std::string* reason) const {
  if (ParseLabel(tok, rules_.logistic, y, reason)) return true;
  if (tok.find(':') != std::string_view::npos) {
    reason->assign("missing label (first token ");
    AppendQuoted(reason, tok);
    reason->append(" is a feature)");
  }
  return false;
}

// Explains why the "id:value" token at tok is bad (cold path).
bool SparseParser::IdError(const char* tok, const char* end, int feature,
                           std::string* reason) const {
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

// Both formats: kFfm reads "field:id:value" tokens, else "id:value" ones with field 0.
// kNormalize: scale the row to unit norm, its squares summed as the values are read.
template <bool kFfm, bool kNormalize>
bool SparseParser::ParseSparse(std::string_view line, RowBlock* block, std::string* reason) const {
  const char* p = line.data();
  const char* const end = p + line.size();
  while (p != end && IsSep(*p)) ++p;
  const char* q = TokenEnd(p, end);
  float y = std::numeric_limits<float>::quiet_NaN();
  const std::string_view first(p, static_cast<std::size_t>(q - p));
  if (!rules_.labels_optional || first.find(':') == std::string_view::npos) {
    if (!ParseSparseLabel(first, &y, reason)) return false;
    p = q;
  }
  int feature = 0;
  RowBlock::RowSquares squares;
  for (;;) {
    while (p != end && IsSep(*p)) ++p;
    if (p == end) break;
    ++feature;
    const char* tok = p;
    std::uint64_t field = 0, id;
    NumStatus st;
    if constexpr (kFfm) {
      st = internal::ScanU64Padded(&p, end, &field);
      if (st != NumStatus::kOk || p == end || *p != ':' || field >= rules_.field_limit) {
        return FfmError(tok, end, feature, reason);
      }
      ++p;
    }
    st = internal::ScanU64Padded(&p, end, &id);
    if (st != NumStatus::kOk || p == end || *p != ':' || !IdInRange(id)) {
      return kFfm ? FfmError(tok, end, feature, reason) : IdError(tok, end, feature, reason);
    }
    ++p;
    float v;
    const char* tok_end;
    const char* r = ParseFeatureValue(p, end, &v, &st, &tok_end);
    if (r == nullptr) {
      if (kFfm && p == tok_end) return FfmError(tok, end, feature, reason);
      FeatureReason(reason, st == NumStatus::kNonFinite ? "non-finite value" : "bad number",
                    {p, static_cast<std::size_t>(tok_end - p)}, feature);
      return false;
    }
    p = r;
    if (v != 0.0f) {
      block->AddFeature(KeyFromId(id, rules_.hash_bits), v, static_cast<std::uint32_t>(field));
      if constexpr (kNormalize) squares.Add(v);
    }
  }
  block->FinishRow(y);
  if constexpr (kNormalize) block->NormalizeLastRow(squares);
  return true;
}

bool SparseParser::ParseLibsvm(std::string_view line, RowBlock* block, std::string* reason) const {
  return rules_.normalize ? ParseSparse<false, true>(line, block, reason)
                          : ParseSparse<false, false>(line, block, reason);
}

bool SparseParser::ParseLibffm(std::string_view line, RowBlock* block, std::string* reason) const {
  return rules_.normalize ? ParseSparse<true, true>(line, block, reason)
                          : ParseSparse<true, false>(line, block, reason);
}

// Explains why the "field:id:value" token at tok is bad (cold path): a missing part, then
// the field ("bad field" when not an integer, "bad field id" when an integer outside
// [0, kFieldLimit), "field id out of range" when at or above FeatureSpec::field_limit), then
// the id.
bool SparseParser::FfmError(const char* tok, const char* end, int feature,
                            std::string* reason) const {
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
  NumStatus st = internal::ParseU64(field.data(), field.data() + field.size(), &v);
  if (st == NumStatus::kOutOfRange || (st == NumStatus::kOk && v >= kFieldLimit)) {
    FeatureReason(reason, "bad field id", token, feature);
  } else if (st == NumStatus::kOk && v >= rules_.field_limit) {
    FeatureReason(reason, "field id out of range", token, feature);
    reason->append(" (model.fields is ");
    AppendUint(reason, rules_.field_limit);
    reason->push_back(')');
  } else if (st != NumStatus::kOk) {
    FeatureReason(reason, "bad field", token, feature);
  } else {
    st = internal::ParseU64(id.data(), id.data() + id.size(), &v);
    const bool out_of_range =
        st == NumStatus::kOutOfRange || (st == NumStatus::kOk && !IdInRange(v));
    FeatureReason(reason, out_of_range ? "id out of range" : "bad id", token, feature);
  }
  return false;
}

}  // namespace fmps::data_internal
