#include "common/data/row_parser.h"

namespace fmps::data_internal {

RowParser::RowParser(const FeatureSpec& spec, const std::vector<std::string>& header,
                     std::string_view file)
    : format_(spec.data.format),
      normalize_(spec.data.normalize == Normalize::kInstance),
      sparse_(spec.data.hash_bits, spec.loss == Loss::kLogistic, spec.labels),
      criteo_(spec.data.hash_bits, spec.loss == Loss::kLogistic, spec.labels) {
  if (format_ == DataFormat::kCsv) csv_.emplace(spec, header, file);
}

bool RowParser::Parse(std::string_view line, RowBlock* block, std::string* reason) {
  bool ok;
  switch (format_) {
    case DataFormat::kLibsvm:
      ok = sparse_.ParseLibsvm(line, block, reason);
      break;
    case DataFormat::kLibffm:
      ok = sparse_.ParseLibffm(line, block, reason);
      break;
    case DataFormat::kCriteo:
      ok = criteo_.Parse(line, block, reason);
      break;
    default:
      ok = csv_->Parse(line, block, reason);
      break;
  }
  if (!ok) {
    block->AbandonRow();
  } else if (normalize_) {
    block->NormalizeLastRow();
  }
  return ok;
}

}  // namespace fmps::data_internal
