// `fmps check --explain`: the field table as text. See config.h.

#include <type_traits>

#include "common/config/config.h"
#include "common/config/config_table.h"
#include "common/config/config_text.h"

namespace fmps {
namespace {

// The type and allowed values of `field`, e.g. "integer in 1..1024".
std::string AllowedText(const ConfigField& field) {
  return std::visit(
      [](const auto& f) -> std::string {
        using F = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<F, IntField<int>> ||
                      std::is_same_v<F, IntField<std::uint32_t>>) {
          return "integer " + IntRangeText(f.lo, f.hi);
        } else if constexpr (std::is_same_v<F, Uint64Field>) {
          return "integer in 0.." + std::to_string(~std::uint64_t{0});
        } else if constexpr (std::is_same_v<F, RealField<float>> ||
                             std::is_same_v<F, RealField<double>>) {
          return std::string("finite number ") + f.range.text;
        } else if constexpr (std::is_same_v<F, TextField>) {
          return f.empty_error == nullptr ? "string" : "non-empty string";
        } else if constexpr (std::is_same_v<F, ListField>) {
          return std::string(f.what) + " or list of them";
        } else if constexpr (std::is_same_v<F, CharField>) {
          return "one character (not a line break)";
        } else if constexpr (std::is_same_v<F, BoolField>) {
          return "true or false";
        } else {
          using E = std::decay_t<decltype(f.member(std::declval<Config&>()))>;
          return "one of " + JoinNames(EnumNames<E>());
        }
      },
      field.kind);
}

}  // namespace

std::string ExplainConfig() {
  std::string out =
      "Config keys: type and allowed values; default; when the key applies (given otherwise,\n"
      "it is an error); \"digest\": resuming from a checkpoint needs the same value; \"key\n"
      "setting\": an init_model must have been trained with the same value.\n\n";
  const Config defaults;
  for (const ConfigField& f : ConfigFields()) {
    out += f.key;
    out += ": " + AllowedText(f) + "; ";
    if (f.presence != Presence::kOptional) {
      out += "required";
    } else {
      out += "default " + (f.default_text != nullptr ? std::string(f.default_text)
                                                     : FieldValueText(f, defaults));
    }
    if (f.applies != nullptr) out += std::string("; applies only ") + f.applies->text;
    if (f.digest) out += "; digest";
    if (f.key_setting) out += "; key setting";
    out += "\n    ";
    out += f.meaning;
    out += "\n";
  }
  return out;
}

}  // namespace fmps
