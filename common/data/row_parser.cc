#include "common/data/row_parser.h"

namespace fmps::data_internal {

namespace {
RowRules RulesOf(const FeatureSpec& spec) {
  return {.hash_bits = spec.data.hash_bits,
          .logistic = spec.loss == Loss::kLogistic,
          .labels_optional = spec.labels == LabelPolicy::kOptional,
          .field_limit = spec.field_limit,
          .normalize = spec.data.normalize == Normalize::kInstance};
}
// The sparse parsers normalise their rows themselves (while they read the values).
bool ParserNormalizes(DataFormat f) { return f == DataFormat::kLibsvm || f == DataFormat::kLibffm; }
}  // namespace

RowParser::RowParser(const FeatureSpec& spec, const std::vector<std::string>& header,
                     std::string_view file)
    : format_(spec.data.format),
      normalize_(spec.data.normalize == Normalize::kInstance && !ParserNormalizes(format_)),
      sparse_(RulesOf(spec)),
      criteo_(RulesOf(spec)) {
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
