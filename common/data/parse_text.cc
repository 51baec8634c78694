#include "common/data/parse_text.h"

#include <charconv>
#include <cmath>

namespace fmps::data_internal {

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

void FeatureReason(std::string* r, std::string_view what, std::string_view tok, int feature) {
  r->assign(what);
  r->push_back(' ');
  AppendQuoted(r, tok);
  r->append(" in feature ");
  AppendUint(r, static_cast<std::uint64_t>(feature));
}

void NumberReason(std::string* r, NumStatus st, std::string_view tok, std::string_view where) {
  r->assign(st == NumStatus::kNonFinite ? "non-finite value " : "bad number ");
  AppendQuoted(r, tok);
  r->append(" in ");
  r->append(where);
}

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

const char* ParseFeatureValueSlow(const char* p, const char* end, float* value, NumStatus* st,
                                  const char** tok_end) {
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

}  // namespace fmps::data_internal
