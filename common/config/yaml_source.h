// Where config values come from (internal to common/config): the YAML tree of one document,
// the --set overrides applied to it, and the location of every value for error messages.
//
// Every error names where its text came from: the file's line:column, or the override that
// supplied it (overrides are remembered per dotted path, so a value inside an override's
// subtree is blamed on that override). Not thread-safe; one Context per parse.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/config/config_text.h"

namespace fmps {

// What a node holds, for "got ..." in messages: "a list", "the quoted string '8'", "'x'".
std::string Describe(const YAML::Node& node);

class Context {
 public:
  explicit Context(std::string name) : name_(std::move(name)) {}

  // Records that the subtree at `path` now comes from `origin` ("--set a.b=v").
  void AddOrigin(const std::string& path, const std::string& origin);

  // "--set a.b=v" if `path` lies in an override's subtree, else "name:line:col" (1-based),
  // else "name".
  std::string Where(const std::string& path, const YAML::Mark& mark) const;

  // "name:line:col", or "name" for a null mark; ignores overrides.
  std::string FileWhere(const YAML::Mark& mark) const;

  // Throws ConfigError("<Where(path, mark)>: <message>").
  [[noreturn]] void Fail(const std::string& path, const YAML::Mark& mark,
                         const std::string& message) const;

 private:
  std::string name_;
  std::vector<std::pair<std::string, std::string>> origins_;  // path, origin
};

// One key: value pair of a mapping.
struct Entry {
  std::string path;  // dotted key, e.g. "model.k"
  YAML::Node key;
  YAML::Node value;

  // Position of the value, or of the key when the value has none (null values).
  YAML::Mark mark() const {
    if (value.IsDefined() && !value.IsNull() && !value.Mark().is_null()) return value.Mark();
    return key.Mark();
  }
};

// The entries of one mapping, checked against the allowed keys (unknown keys fail with the
// nearest allowed name, duplicates fail).
class Section {
 public:
  // `node` may be undefined (section absent) or null (section with nothing under it); both
  // give an empty section. `key_mark` locates the section's key for errors about it. `path`
  // is the section's dotted path, "" for the root.
  Section(const Context& ctx, std::string path, const YAML::Node& node, YAML::Mark key_mark,
          KeyList allowed);

  // The entry named `name` (not dotted), or nullptr.
  const Entry* Find(std::string_view name) const;

  const std::string& path() const { return path_; }
  const YAML::Mark& key_mark() const { return key_mark_; }

 private:
  std::string Dotted(std::string_view name) const;

  std::string path_;
  YAML::Mark key_mark_;
  std::vector<Entry> entries_;
};

// Loads one YAML document that must be a non-empty mapping; `top_keys` are named in the
// error when it is not one.
YAML::Node LoadDocument(const Context& ctx, const std::string& text, KeyList top_keys);

// Applies one "a.b=value" override to the tree, creating missing intermediate mappings; the
// value is parsed as YAML (an empty value is the empty string).
void ApplyOverride(Context* ctx, const YAML::Node& root, const std::string& text);

}  // namespace fmps
