// ShardReader and LineParser: LineSource's lines through RowParser into RowBlocks.
#include "common/data/reader.h"

#include <utility>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "common/base/log.h"
#include "common/data/csv_parser.h"
#include "common/data/line_source.h"
#include "common/data/negatives.h"
#include "common/data/parse_text.h"
#include "common/data/row_parser.h"

namespace fmps {

using data_internal::IsBlank;
using data_internal::IsSpace;
using data_internal::LineSource;
using data_internal::RowParser;

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
    if (sampler_ != nullptr) return ReadWithNegatives(max_rows, block);
    return ReadRows(max_rows, block);
  }

  // About max_rows rows: positives, each followed by its sampled negatives (negatives.h).
  std::size_t ReadWithNegatives(std::size_t max_rows, RowBlock* block) {
    const std::size_t first = block->rows();
    const std::size_t per_row = 1 + static_cast<std::size_t>(spec_.data.negatives.per_positive);
    const std::size_t want = std::max<std::size_t>(1, max_rows / per_row);
    std::size_t positives = 0;
    for (; positives < want; ++positives) {  // each positive followed by its negatives
      const std::size_t at = block->rows();
      if (ReadRows(1, block) == 0) break;
      sampler_->Append(block, at, passes_);
    }
    if (positives == 0) return 0;
    const std::size_t rows = block->rows() - first;
    rows_read_ += rows - positives;  // ReadRows counted the positives
    return rows;
  }

  std::size_t ReadRows(std::size_t max_rows, RowBlock* block) {
    std::size_t rows = 0;
    std::string_view line;
    while (rows < max_rows && source_.Next(&line)) {
      if (csv_ && source_.line_offset() == 0) continue;  // the file's header
      if (line.empty() || (IsSpace(line[0]) && IsBlank(line))) continue;
      if (!all_rows_ && !subset_.Keeps(RowHashUnit(line))) continue;
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

  void Rewind() {
    source_.Rewind();
    ++passes_;
  }
  void SetSubset(const RowSubset& subset) {
    subset_ = subset;
    all_rows_ = subset.all();
  }
  std::uint64_t rows_read() const { return rows_read_; }
  std::uint64_t bytes_in_shard() const { return source_.range_bytes(); }
  std::uint64_t bytes_consumed() const { return source_.consumed(); }
  const BadRowStats& bad_rows() const { return bad_; }
  void Remaining(std::vector<ByteRange>* out) const { source_.Remaining(out); }

 private:
  Impl(FeatureSpec spec, std::vector<std::string> files) : spec_(std::move(spec)), source_(files) {
    csv_ = spec_.data.format == DataFormat::kCsv;
    if (spec_.sample_negatives && spec_.data.negatives.per_positive > 0) {
      sampler_ = std::make_unique<NegativeSampler>(spec_);
    }
    if (csv_) {
      for (const auto& f : files) {
        parsers_.emplace_back(spec_, data_internal::ReadCsvHeader(f, spec_.data.csv.delimiter), f);
      }
    } else {
      parsers_.emplace_back(spec_, std::vector<std::string>{}, "");
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
  RowSubset subset_;
  bool all_rows_ = true;
  std::uint64_t rows_read_ = 0;
  BadRowStats bad_;
  std::unique_ptr<NegativeSampler> sampler_;  // data.negatives, when the spec asks for it
  std::uint64_t passes_ = 0;                  // Rewind() calls: the negatives' pass
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
void ShardReader::SetSubset(const RowSubset& subset) { impl_->SetSubset(subset); }

double RowHashUnit(std::string_view line) {
  line = data_internal::StripLineEnd(line);
  return static_cast<double>(HashToken(0x524f57u, line) >> 11) * 0x1.0p-53;
}
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
      : parser(spec, header, "") {}
  RowParser parser;
  std::string padded;  // the line followed by kLinePadding readable bytes
  std::string reason;
};

LineParser::LineParser(const FeatureSpec& spec, std::vector<std::string> csv_header)
    : state_(std::make_shared<State>(spec, csv_header)) {}

bool LineParser::Parse(std::string_view line, RowBlock* block, std::string* reason) {
  line = data_internal::StripLineEnd(line);
  state_->padded.assign(line);
  state_->padded.append(data_internal::kLinePadding, '\0');
  return state_->parser.Parse(std::string_view(state_->padded.data(), line.size()), block,
                              reason ? reason : &state_->reason);
}

}  // namespace fmps
