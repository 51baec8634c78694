// Minimal thread-safe logging to stderr. Each call writes one whole line.
#pragma once

#include <string_view>

namespace fmps {

// Writes "fmps: <line>\n" to stderr atomically with respect to other Log calls.
void Log(std::string_view line);
// Writes "fmps: warning: <line>\n".
void Warn(std::string_view line);

}  // namespace fmps
