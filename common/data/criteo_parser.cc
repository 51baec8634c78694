#include "common/data/criteo_parser.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/base/hash.h"
#include "common/base/parse_number.h"
#include "common/data/parse_text.h"
#include "common/data/reader.h"

namespace fmps {

std::int64_t LogBucket(double v) {
  if (std::isnan(v)) return 0;
  if (v > 2.0) {
    const double l = std::log(v);
    return static_cast<std::int64_t>(std::floor(l * l));
  }
  if (v < -9.0e18) return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(std::floor(v));
}

namespace data_internal {
namespace {

constexpr std::uint32_t kCriteoInts = 13;
constexpr std::uint32_t kCriteoColumns = 40;  // label + 13 integer + 26 categorical

// *reason for a line with more than kCriteoColumns cells; q is the end of the 41st cell.
bool TooManyColumns(const char* q, const char* end, std::string* reason) {
  reason->assign("too many columns (");
  AppendUint(reason, kCriteoColumns + 1 + std::count(q, end, '\t'));
  reason->append(", at most ");
  AppendUint(reason, kCriteoColumns);
  reason->append(")");
  return false;
}

}  // namespace

void AddLogBucketFeature(std::uint32_t column, double v, std::uint32_t field, int hash_bits,
                         RowBlock* block) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), LogBucket(v));
  block->AddFeature(KeyFromToken(column, {buf, static_cast<std::size_t>(res.ptr - buf)}, hash_bits),
                    1.0f, field);
}

bool CriteoParser::Parse(std::string_view line, RowBlock* block, std::string* reason) const {
  const char* p = line.data();
  const char* const end = p + line.size();
  float y = 0.0f;
  std::uint32_t col = 0;
  if (rules_.labels_optional && std::count(p, end, '\t') == kCriteoColumns - 2) {
    y = std::numeric_limits<float>::quiet_NaN();
    col = 1;  // the first cell is I1
  }
  for (;; ++col) {
    const char* q = static_cast<const char*>(std::memchr(p, '\t', end - p));
    if (q == nullptr) q = end;
    std::string_view cell(p, q - p);
    if (col >= kCriteoColumns) return TooManyColumns(q, end, reason);
    if (col == 0) {
      if (!ParseLabel(cell, rules_.logistic, &y, reason)) return false;
    } else if (!cell.empty()) {
      if (col <= kCriteoInts) {
        double v;
        NumStatus st = internal::ParseDouble(cell, &v);
        if (st != NumStatus::kOk) {
          NumberReason(reason, st, cell, "column I");
          AppendUint(reason, col);
          return false;
        }
        AddLogBucketFeature(col, v, col - 1, rules_.hash_bits, block);
      } else {
        block->AddFeature(KeyFromToken(col, cell, rules_.hash_bits), 1.0f, col - 1);
      }
    }
    if (q == end) break;
    p = q + 1;
  }
  block->FinishRow(y);
  return true;
}

}  // namespace data_internal
}  // namespace fmps
