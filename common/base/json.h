// A tiny builder for one-line JSON objects (metrics.jsonl, summary.json, meta.json).
// Non-finite numbers are written as null. Not thread-safe.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace fmps {

class JsonObject {
 public:
  JsonObject& Add(std::string_view key, double v);
  JsonObject& Add(std::string_view key, std::int64_t v);
  JsonObject& Add(std::string_view key, std::uint64_t v);
  JsonObject& Add(std::string_view key, int v) { return Add(key, static_cast<std::int64_t>(v)); }
  JsonObject& Add(std::string_view key, std::string_view v);
  JsonObject& Add(std::string_view key, const char* v) { return Add(key, std::string_view(v)); }
  JsonObject& Add(std::string_view key, const std::string& v) {
    return Add(key, std::string_view(v));
  }
  // An array of numbers (non-finite ones as null).
  JsonObject& AddArray(std::string_view key, std::span<const double> values);
  // The object, e.g. {"a":1,"b":"x"}.
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void Key(std::string_view key);
  std::string body_;
};

// JSON string literal (with quotes) for `s`.
std::string JsonQuote(std::string_view s);

}  // namespace fmps
