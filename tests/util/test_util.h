// Helpers shared by the tests.
#pragma once

#include <string>
#include <vector>

namespace fmps {
class Model;
}

namespace fmps::testing {

// Absolute path of a file under ../shared/data, or "" when that folder does not exist
// (then the caller should GTEST_SKIP() saying so).
std::string SharedData(const std::string& relative);

// Skips the current test with a message when the shared data folder is missing.
#define FMPS_REQUIRE_SHARED_DATA(path_var, relative)                  \
  const std::string path_var = ::fmps::testing::SharedData(relative); \
  if (path_var.empty()) GTEST_SKIP() << "../shared/data not present; skipping " << relative

// A fresh empty directory under the system temp dir, removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // path()/name
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // Writes `content` to path()/name and returns the full path.
  std::string Write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

// Path of the built fmps binary.
inline std::string FmpsBinary() { return FMPS_BINARY; }

// Runs a shell command, capturing stdout+stderr into *output; returns the exit status
// (-1 if it did not exit normally).
int RunCommand(const std::string& command, std::string* output);

// Reads a whole file; throws std::runtime_error if it cannot.
std::string ReadFile(const std::string& path);

// The lines of `text`, without their newlines.
std::vector<std::string> Lines(const std::string& text);

// Value of a numeric field of a one-line JSON object as fmps writes them; NaN if absent.
double JsonNumber(const std::string& json, const std::string& key);

// Largest |a - b| over bias and every parameter; records a test failure (and returns
// infinity) when the two models hold different keys.
double MaxAbsDiff(const Model& a, const Model& b);

}  // namespace fmps::testing
