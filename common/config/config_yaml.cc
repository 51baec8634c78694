// The effective config as YAML, and the fingerprints built from the same text: see config.h.
//
// Everything is written from the field table: each key that applies, in table order, nested
// by its dotted path; lists in flow style, reals in their shortest exact form.

#include <xxhash.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <type_traits>

#include "common/base/error.h"
#include "common/config/config.h"
#include "common/config/config_table.h"
#include "common/config/config_text.h"

namespace fmps {
namespace {

void EmitValue(YAML::Emitter& out, const ConfigField& field, const Config& config) {
  Config& c = const_cast<Config&>(config);  // accessors are shared with the reader; read only
  std::visit(
      [&](const auto& f) {
        using F = std::decay_t<decltype(f)>;
        const auto& v = f.member(c);
        if constexpr (std::is_same_v<F, Uint64Field>) {
          out << std::to_string(v);
        } else if constexpr (std::is_same_v<F, RealField<float>> ||
                             std::is_same_v<F, RealField<double>>) {
          out << FormatReal(v);
        } else if constexpr (std::is_same_v<F, ListField>) {
          out << YAML::Flow << YAML::BeginSeq;
          for (const std::string& s : v) out << s;
          out << YAML::EndSeq;
        } else if constexpr (std::is_same_v<F, CharField>) {
          out << YAML::DoubleQuoted << std::string(1, v);
        } else if constexpr (std::is_same_v<F, BoolField>) {
          out << (v ? "true" : "false");
        } else if constexpr (std::is_enum_v<std::decay_t<decltype(v)>>) {
          out << ToString(v);
        } else {
          out << v;  // integers and strings
        }
      },
      field.kind);
}

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    const std::size_t dot = path.find('.');
    out.push_back(path.substr(0, dot));
    if (dot == std::string_view::npos) break;
    path.remove_prefix(dot + 1);
  }
  return out;
}

// Which fields EmitFields writes (of those that apply to the config).
enum class Emit {
  kAll,
  kDigest,      // digest fields, without those at their default that ask for it
  kKeySetting,  // key settings
};

bool Emitted(const ConfigField& f, const Config& config, Emit which) {
  switch (which) {
    case Emit::kAll:
      return true;
    case Emit::kDigest:
      return f.digest &&
             !(f.digest_unless_default && FieldValueText(f, config) == FieldValueText(f, Config{}));
    case Emit::kKeySetting:
      return f.key_setting;
  }
  return false;
}

// Writes, as one mapping nested by the dotted keys, every field that applies to `config` and
// is emitted for `which`. Fields outside `scope` (a section, "" for all) are left out.
std::string EmitFields(const Config& config, Emit which, std::string_view scope) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::vector<std::string_view> open;  // the sections now open, outermost first
  for (const ConfigField& f : ConfigFields()) {
    const std::string_view key = f.key;
    if (!FieldApplies(f, config) || !Emitted(f, config, which)) continue;
    if (!scope.empty() && key.substr(0, scope.size() + 1) != std::string(scope) + ".") continue;
    std::vector<std::string_view> path = Segments(key);
    const std::string_view name = path.back();
    path.pop_back();
    std::size_t common = 0;
    while (common < open.size() && common < path.size() && open[common] == path[common]) ++common;
    for (; open.size() > common; open.pop_back()) out << YAML::EndMap;
    for (; open.size() < path.size(); open.push_back(path[open.size()])) {
      out << YAML::Key << std::string(path[open.size()]) << YAML::Value << YAML::BeginMap;
    }
    out << YAML::Key << std::string(name) << YAML::Value;
    EmitValue(out, f, config);
  }
  for (; !open.empty(); open.pop_back()) out << YAML::EndMap;
  out << YAML::EndMap;
  if (!out.good()) throw ConfigError("cannot write the config as YAML: " + out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

}  // namespace

std::string FieldValueText(const ConfigField& field, const Config& config) {
  YAML::Emitter out;
  EmitValue(out, field, config);
  return out.c_str();
}

std::string ConfigToYaml(const Config& config) { return EmitFields(config, Emit::kAll, ""); }

std::string DataSectionToYaml(const DataConfig& data) {
  Config c;
  c.data = data;
  return EmitFields(c, Emit::kAll, "data");
}

std::string ConfigDigest(const Config& config) {
  const std::string yaml = EmitFields(config, Emit::kDigest, "");
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(XXH3_64bits(yaml.data(), yaml.size())));
  return hex;
}

std::string KeySettings(const DataConfig& data) {
  Config c;
  c.data = data;
  return EmitFields(c, Emit::kKeySetting, "data");
}

}  // namespace fmps
