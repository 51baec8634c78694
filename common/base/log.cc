#include "common/base/log.h"

#include <cstdio>
#include <mutex>
#include <string>

namespace fmps {
namespace {
std::mutex& LogMutex() {
  static std::mutex mu;
  return mu;
}
void Write(std::string_view prefix, std::string_view line) {
  std::string out;
  out.reserve(prefix.size() + line.size() + 8);
  out.append("fmps: ").append(prefix).append(line).push_back('\n');
  std::lock_guard<std::mutex> lock(LogMutex());
  std::fwrite(out.data(), 1, out.size(), stderr);
  std::fflush(stderr);
}
}  // namespace

void Log(std::string_view line) { Write("", line); }
void Warn(std::string_view line) { Write("warning: ", line); }

}  // namespace fmps
