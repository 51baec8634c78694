// Helpers shared by the fuzz target bodies (tests/fuzz/fuzz_targets.cc, file_fuzz_targets.cc).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace fmps::fuzz {

// A violated invariant: report and abort (a crash for libFuzzer, a failure for ctest).
[[noreturn]] inline void CheckFailed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", what, file, line);
  std::abort();
}
#define FUZZ_CHECK(cond) \
  if (!(cond)) ::fmps::fuzz::CheckFailed(#cond, __FILE__, __LINE__)

// The fuzz bytes as a regular file in the temp directory, removed on destruction.
class ScratchFile {
 public:
  ScratchFile(const std::uint8_t* data, std::size_t size) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fmps_fuzz_XXXXXX").string();
    const int fd = ::mkstemp(tmpl.data());
    FUZZ_CHECK(fd >= 0);
    path_ = tmpl;
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd, data + done, size - done);
      FUZZ_CHECK(n > 0);
      done += static_cast<std::size_t>(n);
    }
    ::close(fd);
  }
  ~ScratchFile() { ::unlink(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace fmps::fuzz
