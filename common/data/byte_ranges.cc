// Byte ranges of a file list: totals, shards, normalisation and re-division (reader.h).
#include <algorithm>
#include <string>

#include "common/base/error.h"
#include "common/data/line_source.h"
#include "common/data/parse_text.h"
#include "common/data/reader.h"

namespace fmps {

namespace data_internal {

std::string RangeText(const ByteRange& r) {
  std::string out("[");
  AppendUint(&out, r.begin);
  out.append(", ");
  AppendUint(&out, r.end);
  out.push_back(')');
  return out;
}

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

}  // namespace data_internal

std::uint64_t TotalBytes(const std::vector<std::string>& files) {
  std::uint64_t total = 0;
  for (const auto& f : files) total += data_internal::FileSize(f);
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
  const std::vector<ByteRange> in = data_internal::NormalizeRanges(ranges, "SplitRanges");
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

}  // namespace fmps
