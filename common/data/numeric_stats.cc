// ComputeNumericStats: the first pass over csv files for transform standardize.
#include <algorithm>
#include <cmath>

#include "common/base/parse_number.h"
#include "common/data/csv_parser.h"
#include "common/data/line_source.h"
#include "common/data/parse_text.h"
#include "common/data/reader.h"

namespace fmps {
namespace {

using data_internal::CsvColumn;
using data_internal::CsvRole;

// Per file: column index -> index in csv.numeric, or -1 for other columns.
std::vector<std::vector<int>> NumericIndexOfColumns(const CsvSpec& csv,
                                                    const std::vector<std::string>& files) {
  std::vector<std::vector<int>> stat_of(files.size());
  for (std::size_t f = 0; f < files.size(); ++f) {
    const std::vector<std::string> header = data_internal::ReadCsvHeader(files[f], csv.delimiter);
    for (const CsvColumn& c :
         data_internal::BuildCsvColumns(csv, header, files[f], LabelPolicy::kRequired)) {
      int idx = -1;
      if (c.role == CsvRole::kNumeric) {
        idx = static_cast<int>(std::find(csv.numeric.begin(), csv.numeric.end(), c.name) -
                               csv.numeric.begin());
      }
      stat_of[f].push_back(idx);
    }
  }
  return stat_of;
}

// Running mean and sum of squared deviations (Welford) of one column.
struct Moments {
  std::uint64_t n = 0;
  double mean = 0.0;
  double m2 = 0.0;
  void Add(double x) {
    ++n;
    const double d = x - mean;
    mean += d / static_cast<double>(n);
    m2 += d * (x - mean);
  }
};

}  // namespace

std::vector<NumericStat> ComputeNumericStats(const FeatureSpec& spec,
                                             const std::vector<std::string>& files) {
  if (spec.data.format != DataFormat::kCsv) return {};
  const CsvSpec& csv = spec.data.csv;
  const std::vector<std::vector<int>> stat_of = NumericIndexOfColumns(csv, files);
  std::vector<Moments> moments(csv.numeric.size());
  data_internal::LineSource source(files);
  source.SetRanges({{0, source.total_bytes()}});
  std::vector<std::string_view> cells;
  std::string scratch, reason;
  std::string_view line;
  while (source.Next(&line)) {
    if (source.line_offset() == 0 || data_internal::IsBlank(line)) continue;
    const std::vector<int>& map = stat_of[source.file_index()];
    if (!data_internal::SplitCsv(line, csv.delimiter, &cells, &scratch, &reason) ||
        cells.size() != map.size()) {
      continue;
    }
    for (std::size_t i = 0; i < cells.size(); ++i) {
      double x;
      if (map[i] < 0 || cells[i].empty()) continue;
      if (internal::ParseDouble(cells[i], &x) != internal::NumStatus::kOk) continue;
      moments[static_cast<std::size_t>(map[i])].Add(x);
    }
  }
  std::vector<NumericStat> stats(moments.size());
  for (std::size_t j = 0; j < moments.size(); ++j) {
    stats[j].column = csv.numeric[j];
    if (moments[j].n == 0) continue;
    stats[j].mean = moments[j].mean;
    const double sd = std::sqrt(moments[j].m2 / static_cast<double>(moments[j].n));
    stats[j].std = (sd > 0.0 && std::isfinite(sd)) ? sd : 1.0;
  }
  return stats;
}

}  // namespace fmps
