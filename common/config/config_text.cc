// Text helpers of the config code: see config_text.h.

#include "common/config/config_text.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>
#include <vector>

namespace fmps {
namespace {

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

template <typename T>
std::string FormatRealImpl(T v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, ec == std::errc() ? ptr : buf);
  const std::size_t exp = s.find('e');
  if (exp != std::string::npos && s.find('.') == std::string::npos) s.insert(exp, ".0");
  return s;
}

}  // namespace

std::string JoinNames(KeyList names) {
  std::string out;
  for (std::string_view name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

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

std::string Nearest(std::string_view word, KeyList candidates) {
  std::string best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (const std::string_view c : candidates) {
    const std::size_t distance = EditDistance(word, c);
    const std::size_t longest = std::max(word.size(), c.size());
    const std::size_t limit = std::max<std::size_t>(1, longest / 3);
    if (distance <= limit && distance < longest && distance < best_distance) {
      best = c;
      best_distance = distance;
    }
  }
  return best;
}

std::string IntRangeText(std::int64_t lo, std::int64_t hi) {
  if (hi == std::numeric_limits<int>::max()) return ">= " + std::to_string(lo);
  return "in " + std::to_string(lo) + ".." + std::to_string(hi);
}

std::string FormatReal(float v) { return FormatRealImpl(v); }
std::string FormatReal(double v) { return FormatRealImpl(v); }

}  // namespace fmps
