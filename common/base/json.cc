#include "common/base/json.h"

#include <cstdio>

namespace fmps {

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

void JsonObject::Key(std::string_view key) {
  if (!body_.empty()) body_ += ",";
  body_ += JsonQuote(key);
  body_ += ":";
}

JsonObject& JsonObject::Add(std::string_view key, double v) {
  Key(key);
  if (!std::isfinite(v)) {
    body_ += "null";
  } else {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.10g", v);
    body_ += buf;
  }
  return *this;
}

JsonObject& JsonObject::AddArray(std::string_view key, std::span<const double> values) {
  Key(key);
  body_ += "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i != 0) body_ += ",";
    if (!std::isfinite(values[i])) {
      body_ += "null";
      continue;
    }
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.10g", values[i]);
    body_ += buf;
  }
  body_ += "]";
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, std::int64_t v) {
  Key(key);
  body_ += std::to_string(v);
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, std::uint64_t v) {
  Key(key);
  body_ += std::to_string(v);
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, std::string_view v) {
  Key(key);
  body_ += JsonQuote(v);
  return *this;
}

}  // namespace fmps
