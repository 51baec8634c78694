// Config sources and locations: see yaml_source.h.

#include "common/config/yaml_source.h"

#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <cctype>
#include <sstream>

#include "common/base/error.h"

namespace fmps {
namespace {

// True when `path` is `prefix` or lies below it ("a.b.c" or "a.b[2]" within "a.b").
bool IsWithin(const std::string& path, const std::string& prefix) {
  if (path.size() < prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
  return path.size() == prefix.size() || path[prefix.size()] == '.' || path[prefix.size()] == '[';
}

// Records where each YAML document starts and where its root node is; ignores the rest.
class DocumentStarts : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;  // one per document
  std::vector<YAML::Mark> roots;   // one per document that has a root node
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnMapEnd() override {}

 private:
  void Node(const YAML::Mark& mark) {
    if (roots.size() < starts.size()) roots.push_back(mark);
  }
};

std::string Trim(std::string_view s) {
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

// What a node holds, for "got ..." in messages.
std::string Describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing (null)";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  if (node.Tag() == "!") return "the quoted string " + Quote(node.Scalar());
  return Quote(node.Scalar());
}

void Context::AddOrigin(const std::string& path, const std::string& origin) {
  std::erase_if(origins_, [&](const auto& o) { return IsWithin(o.first, path); });
  origins_.emplace_back(path, origin);
}

std::string Context::Where(const std::string& path, const YAML::Mark& mark) const {
  const std::string* best = nullptr;
  std::size_t best_length = 0;
  for (const auto& [prefix, origin] : origins_) {
    if (IsWithin(path, prefix) && (best == nullptr || prefix.size() > best_length)) {
      best = &origin;
      best_length = prefix.size();
    }
  }
  if (best != nullptr) return *best;
  return FileWhere(mark);
}

std::string Context::FileWhere(const YAML::Mark& mark) const {
  if (mark.is_null()) return name_;
  return name_ + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

void Context::Fail(const std::string& path, const YAML::Mark& mark,
                   const std::string& message) const {
  throw ConfigError(Where(path, mark) + ": " + message);
}

Section::Section(const Context& ctx, std::string path, const YAML::Node& node, YAML::Mark key_mark,
                 KeyList allowed)
    : path_(std::move(path)), key_mark_(key_mark) {
  if (!node.IsDefined() || node.IsNull()) return;
  if (!node.IsMap()) {
    const YAML::Mark mark = node.Mark().is_null() ? key_mark : node.Mark();
    if (path_.empty()) {
      ctx.Fail(path_, mark,
               "the config must be a mapping of sections (" + JoinNames(allowed) + "), got " +
                   Describe(node));
    }
    ctx.Fail(
        path_, mark,
        path_ + ": expected a mapping with keys " + JoinNames(allowed) + ", got " + Describe(node));
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;
    if (!key.IsScalar()) {
      ctx.Fail(path_, key.Mark(),
               "keys must be plain names" + (path_.empty() ? "" : " under " + path_) + ", got " +
                   Describe(key));
    }
    const std::string name = key.Scalar();
    const std::string dotted = Dotted(name);
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string message = "unknown key '" + dotted + "'";
      const std::string nearest = Nearest(name, allowed);
      if (!nearest.empty()) message += " (did you mean '" + Dotted(nearest) + "'?)";
      ctx.Fail(dotted, key.Mark(), message);
    }
    if (Find(name) != nullptr) ctx.Fail(dotted, key.Mark(), "duplicate key '" + dotted + "'");
    entries_.push_back(Entry{dotted, key, it->second});
  }
}

const Entry* Section::Find(std::string_view name) const {
  const std::string dotted = Dotted(name);
  for (const Entry& e : entries_) {
    if (e.path == dotted) return &e;
  }
  return nullptr;
}

std::string Section::Dotted(std::string_view name) const {
  return path_.empty() ? std::string(name) : path_ + "." + std::string(name);
}

// Loads one YAML document that must be a non-empty mapping.
//
// The documents are first counted (up to 3) by a parser of our own rather than with
// YAML::LoadAll: on a ',' outside a flow collection (e.g. the text ",a", found by fuzzing)
// yaml-cpp 0.7's parser returns an empty document without consuming the token, so LoadAll
// never ends (allocating a node per turn). A document starting where the previous one did
// is that stray token.
YAML::Node LoadDocument(const Context& ctx, const std::string& text, KeyList top_keys) {
  DocumentStarts docs;
  YAML::Node root;
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    while (docs.starts.size() < 3 && parser.HandleNextDocument(docs)) {
      const std::size_t n = docs.starts.size();
      if (n >= 2 && docs.starts[n - 1].pos == docs.starts[n - 2].pos) {
        const YAML::Mark& at = docs.starts[n - 1];
        std::string what = "invalid YAML: unexpected ";
        const auto pos = static_cast<std::size_t>(at.pos);
        if (pos < text.size() && std::isprint(static_cast<unsigned char>(text[pos]))) {
          what += '\'';
          what += text[pos];
          what += '\'';
        } else {
          what += "character";
        }
        throw ConfigError(ctx.FileWhere(at) + ": " + what);
      }
    }
    if (docs.starts.size() == 1) root = YAML::Load(text);
  } catch (const YAML::Exception& ex) {
    throw ConfigError(ctx.FileWhere(ex.mark) + ": invalid YAML: " + ex.msg);
  }
  if (docs.starts.size() > 1) {
    throw ConfigError(ctx.FileWhere(docs.roots.size() > 1 ? docs.roots[1] : docs.starts[1]) +
                      ": more than one YAML document; a config is a single document");
  }
  if (docs.starts.empty() || !root.IsDefined() || root.IsNull()) {
    throw ConfigError(ctx.FileWhere(YAML::Mark::null_mark()) +
                      ": the config is empty (it needs at least data.train and data.format)");
  }
  if (!root.IsMap()) {
    throw ConfigError(ctx.FileWhere(root.Mark()) + ": the config must be a mapping of sections (" +
                      JoinNames(top_keys) + "), got " + Describe(root));
  }
  return root;
}

// Applies one "a.b=value" override to the tree, creating missing intermediate mappings.
void ApplyOverride(Context* ctx, const YAML::Node& root, const std::string& text) {
  const std::string origin = "--set " + text;
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos) {
    throw ConfigError(origin + ": expected KEY=VALUE, e.g. --set optimizer.lr=0.05");
  }
  const std::string key = Trim(std::string_view(text).substr(0, eq));
  const std::string value_text = text.substr(eq + 1);
  std::vector<std::string> segments;
  for (std::size_t start = 0;;) {
    const std::size_t dot = key.find('.', start);
    segments.push_back(key.substr(start, dot == std::string::npos ? dot : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const std::string& segment : segments) {
    if (segment.empty()) {
      throw ConfigError(origin + ": malformed key " + Quote(key) +
                        " (expected a dotted path such as optimizer.lr)");
    }
  }
  YAML::Node value;
  if (Trim(value_text).empty()) {
    value = YAML::Node(std::string());
  } else {
    try {
      value = YAML::Load(value_text);
    } catch (const YAML::Exception& ex) {
      throw ConfigError(origin + ": cannot parse the value as YAML: " + ex.msg);
    }
  }
  YAML::Node current = root;
  std::string path;
  for (std::size_t i = 0; i + 1 < segments.size(); ++i) {
    path += (i == 0 ? "" : ".") + segments[i];
    YAML::Node child = current[segments[i]];
    if (!child.IsDefined() || child.IsNull()) {
      child = YAML::Node(YAML::NodeType::Map);
      ctx->AddOrigin(path, origin);
    } else if (!child.IsMap()) {
      throw ConfigError(origin + ": cannot set " + key + " because " + path + " is " +
                        Describe(child) + ", not a mapping");
    }
    current.reset(child);
  }
  current[segments.back()] = value;
  ctx->AddOrigin(key, origin);
}

}  // namespace fmps
