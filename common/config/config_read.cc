// Strict, table-driven config reading: see config.h and config_table.h.
//
// Parsing runs in three steps: load the YAML tree (syntax errors, empty document, root not a
// mapping), apply the --set overrides to the tree, then walk the field table in order,
// reading each key from its section. A section is checked against the keys the table puts
// under it when its first field is read; a sub-section whose fields all share one condition
// (data.csv) is checked against that condition as a whole.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <utility>

#include "common/base/error.h"
#include "common/config/config.h"
#include "common/config/config_table.h"
#include "common/config/config_values.h"
#include "common/config/sides.h"
#include "common/config/yaml_source.h"

namespace fmps {
namespace {

std::string_view ParentPath(std::string_view key) {
  const std::size_t dot = key.rfind('.');
  return dot == std::string_view::npos ? std::string_view() : key.substr(0, dot);
}

std::string_view LastSegment(std::string_view key) {
  const std::size_t dot = key.rfind('.');
  return dot == std::string_view::npos ? key : key.substr(dot + 1);
}

// Whether `key` lies below `section` ("" holds everything).
bool IsUnder(std::string_view key, std::string_view section) {
  return section.empty() ||
         (key.size() > section.size() && key.substr(0, section.size()) == section &&
          key[section.size()] == '.');
}

// The names directly under `section` among `fields`' keys, in table order.
std::vector<std::string_view> ChildNames(std::span<const ConfigField> fields,
                                         std::string_view section) {
  std::vector<std::string_view> names;
  for (const ConfigField& f : fields) {
    const std::string_view key = f.key;
    if (!IsUnder(key, section)) continue;
    std::string_view rest = section.empty() ? key : key.substr(section.size() + 1);
    rest = rest.substr(0, rest.find('.'));
    if (std::find(names.begin(), names.end(), rest) == names.end()) names.push_back(rest);
  }
  return names;
}

// The condition every field under `section` shares, or nullptr.
const Condition* SectionCondition(std::span<const ConfigField> fields, std::string_view section) {
  const Condition* shared = nullptr;
  for (const ConfigField& f : fields) {
    if (!IsUnder(f.key, section)) continue;
    if (f.applies == nullptr || (shared != nullptr && shared != f.applies)) return nullptr;
    shared = f.applies;
  }
  return shared;
}

bool IsEmptyList(const ConfigField& f, const Config& c) {
  const ListField* list = std::get_if<ListField>(&f.kind);
  return list != nullptr && list->member(const_cast<Config&>(c)).empty();
}

// Reads `fields` (a prefix-closed part of the table) from the tree at `root` into a Config.
class TableReader {
 public:
  TableReader(const Context& ctx, const YAML::Node& root, std::span<const ConfigField> fields,
              bool require_train)
      : ctx_(ctx),
        root_(root),
        fields_(fields),
        require_train_(require_train),
        given_(fields.size(), nullptr) {}

  void Read(Config* config) {
    for (std::size_t i = 0; i < fields_.size(); ++i) ReadField(i, config);
  }

 private:
  void ReadField(std::size_t i, Config* config) {
    const ConfigField& f = fields_[i];
    const Section* s = SectionOf(ParentPath(f.key), *config);
    if (s == nullptr) return;  // the whole section does not apply
    const Entry* e = s->Find(LastSegment(f.key));
    if (e != nullptr) {
      if (!FieldApplies(f, *config)) FailNotApplies(*e, *f.applies, *config);
      ReadFieldValue(ctx_, *e, f, config);
      given_[i] = e;
      // Lists not read yet are empty: checking after each csv key blames the first clash.
      if (s->path() == "data.csv") CheckCsvRoles(*s, config->data.csv);
      CheckFieldAwareModel(f, *e, *config);
    }
    const bool required = f.presence == Presence::kRequired ||
                          (f.presence == Presence::kRequiredToTrain && require_train_);
    if (required && FieldApplies(f, *config) && (e == nullptr || IsEmptyList(f, *config))) {
      FailMissing(f, *s, *config);
    }
  }

  // The section at `path`, created (and its keys checked) on first use; nullptr when it is
  // a sub-section that does not apply and is absent.
  const Section* SectionOf(std::string_view path, const Config& config) {
    if (auto it = sections_.find(path); it != sections_.end()) return it->second.get();
    std::unique_ptr<Section> made;
    if (path.empty()) {
      made = std::make_unique<Section>(ctx_, "", root_, root_.Mark(), ChildNames(fields_, ""));
    } else if (const Section* parent = SectionOf(ParentPath(path), config); parent != nullptr) {
      const Entry* e = parent->Find(LastSegment(path));
      const Condition* condition = SectionCondition(fields_, path);
      if (condition != nullptr && !condition->holds(config)) {
        if (e != nullptr) FailNotApplies(*e, *condition, config);
      } else {
        made = std::make_unique<Section>(ctx_, std::string(path), e ? e->value : YAML::Node(),
                                         e ? e->key.Mark() : YAML::Mark::null_mark(),
                                         ChildNames(fields_, path));
      }
    }
    return sections_.emplace(std::string(path), std::move(made)).first->second.get();
  }

  // "<controlling key> is <value>[, the default]", or the condition's fixed reason.
  std::string Reason(const Condition& condition, const Config& config) const {
    if (condition.reason != nullptr) return condition.reason;
    const ConfigField* controlling = FindConfigField(condition.controlling_key);
    const bool given = Given(condition.controlling_key) != nullptr;
    return std::string(condition.controlling_key) + " is " + FieldValueText(*controlling, config) +
           (given ? "" : ", the default");
  }

  [[noreturn]] void FailNotApplies(const Entry& e, const Condition& condition,
                                   const Config& config) const {
    ctx_.Fail(e.path, e.key.Mark(),
              e.path + " applies only " + condition.text + " (" + Reason(condition, config) + ")");
  }

  // A required key is missing: blamed on the key that made it required, if any, else on the
  // section it belongs in.
  [[noreturn]] void FailMissing(const ConfigField& f, const Section& s,
                                const Config& config) const {
    const Entry* because = f.applies ? Given(f.applies->controlling_key) : nullptr;
    if (because != nullptr) {
      ctx_.Fail(because->path, because->mark(),
                because->path + ": " +
                    FieldValueText(*FindConfigField(f.applies->controlling_key), config) +
                    " requires " + f.key + " (" + ExpectedText(f) + ")");
    }
    throw ConfigError(ctx_.FileWhere(s.key_mark()) + ": " + f.key + " is required (" +
                      ExpectedText(f) + ")");
  }

  const Entry* Given(std::string_view key) const {
    for (std::size_t i = 0; i < fields_.size(); ++i) {
      if (key == fields_[i].key) return given_[i];
    }
    return nullptr;
  }

  // Each csv column has exactly one role: the label, or one of the column lists.
  void CheckCsvRoles(const Section& csv, const CsvSpec& spec) const {
    std::vector<std::pair<std::string, std::string>> roles = {{spec.label, "data.csv.label"}};
    const std::pair<const char*, const std::vector<std::string>*> lists[] = {
        {"numeric", &spec.numeric}, {"categorical", &spec.categorical}, {"ignore", &spec.ignore}};
    for (const auto& [name, columns] : lists) {
      const Entry* entry = csv.Find(name);
      if (entry == nullptr) continue;
      for (std::size_t i = 0; i < columns->size(); ++i) {
        const std::string& column = (*columns)[i];
        for (const auto& [other, role] : roles) {
          if (other != column) continue;
          const YAML::Node element = entry->value.IsSequence() ? entry->value[i] : entry->value;
          ctx_.Fail(entry->path, element.Mark(),
                    entry->path + ": column " + Quote(column) + " already has a role in " + role +
                        " (each column has exactly one role)");
        }
        roles.emplace_back(column, entry->path);
      }
    }
  }

  // model.kind ffm needs fields in the data (not libsvm); model.fields must cover the fields
  // a criteo or csv row has (libffm's ids are checked per row: a bad row). Called for every
  // key given; acts on model.kind and model.fields (read after data.format and data.csv).
  void CheckFieldAwareModel(const ConfigField& f, const Entry& e, const Config& c) const {
    const std::string_view key = f.key;
    if (c.model.kind != ModelKind::kFfm) return;
    if (key == "model.kind" && c.data.format == DataFormat::kLibsvm) {
      ctx_.Fail(e.path, e.mark(),
                "model.kind: ffm needs a field for every feature, and data.format libsvm has "
                "none (use libffm, criteo or csv)");
    }
    if (key != "model.fields") return;
    int needed = 0;
    if (c.data.format == DataFormat::kCriteo) needed = 39;
    if (c.data.format == DataFormat::kCsv) {
      needed = static_cast<int>(c.data.csv.numeric.size() + c.data.csv.categorical.size());
    }
    if (c.model.fields < needed) {
      ctx_.Fail(e.path, e.mark(),
                "model.fields: " + std::to_string(c.model.fields) + " is too few: data.format " +
                    ToString(c.data.format) + " gives " + std::to_string(needed) +
                    " fields (field ids 0.." + std::to_string(needed - 1) + ")");
    }
  }

  const Context& ctx_;
  const YAML::Node& root_;
  std::span<const ConfigField> fields_;
  bool require_train_;
  std::vector<const Entry*> given_;  // per field: its entry when the key was given
  std::map<std::string, std::unique_ptr<Section>, std::less<>> sections_;
};

std::string DefaultOutputDir(const std::string& name) {
  std::string stem = std::filesystem::path(name).stem().string();
  if (stem.empty()) stem = "config";
  return "runs/" + stem;
}

std::string ReadFileText(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw IoError("cannot open config file " + Quote(path) + ": " + std::strerror(errno));
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      throw IoError("cannot read config file " + Quote(path) + ": " + std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return text;
}

// ParseConfig, with the validation keys checked for `source`.
Config ParseConfigFor(const std::string& yaml_text, const std::string& name,
                      const std::vector<std::string>& overrides, ValidationSource source) {
  Context ctx(name.empty() ? "config" : name);
  const std::vector<std::string_view> top = ChildNames(ConfigFields(), "");
  const YAML::Node root = LoadDocument(ctx, yaml_text, top);
  for (const std::string& o : overrides) ApplyOverride(&ctx, root, o);
  Config c;
  c.output.dir = DefaultOutputDir(name);
  TableReader(ctx, root, ConfigFields(), /*require_train=*/true).Read(&c);
  CheckValidationKeys(c, source);
  ValidateRecallConfig(c);
  return c;
}

}  // namespace

Config ParseConfig(const std::string& yaml_text, const std::string& name,
                   const std::vector<std::string>& overrides) {
  return ParseConfigFor(yaml_text, name, overrides, ValidationSource::kConfig);
}

Config ParseConfigForArrays(const std::string& yaml_text, const std::string& name,
                            const std::vector<std::string>& overrides) {
  return ParseConfigFor(yaml_text, name, overrides, ValidationSource::kCaller);
}

Config LoadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  return ParseConfig(ReadFileText(path), path, overrides);
}

Config LoadConfigForFolds(const std::string& path, const std::vector<std::string>& overrides) {
  return ParseConfigFor(ReadFileText(path), path, overrides, ValidationSource::kFolds);
}

DataConfig ParseDataSection(const std::string& yaml_text) {
  const Context ctx("data section");
  const std::vector<std::string_view> top = ChildNames(ConfigFields(), "");
  const YAML::Node root = LoadDocument(ctx, yaml_text, top);
  std::vector<ConfigField> data_fields;
  for (const ConfigField& f : ConfigFields()) {
    if (IsUnder(f.key, "data")) data_fields.push_back(f);
  }
  Config c;
  // A data section written before data.normalize existed describes raw values: absent, the
  // key means none there, whatever a new config's default is.
  c.data.normalize = Normalize::kNone;
  TableReader(ctx, root, data_fields, /*require_train=*/false).Read(&c);
  return c.data;
}

}  // namespace fmps
