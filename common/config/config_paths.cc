// Expansion of the path lists of data.train and data.test: see config.h.

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/base/error.h"
#include "common/config/config.h"
#include "common/config/config_text.h"

namespace fmps {

std::vector<std::string> ExpandPaths(const std::vector<std::string>& patterns,
                                     const std::string& key) {
  std::vector<std::string> out;
  for (const std::string& pattern : patterns) {
    glob_t g{};
    const int rc = glob(pattern.c_str(), 0, nullptr, &g);
    std::vector<std::string> matches;
    if (rc == 0) matches.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    if (rc == GLOB_NOMATCH) throw ConfigError(key + ": no file matches " + Quote(pattern));
    if (rc != 0) {
      throw ConfigError(key + ": cannot expand " + Quote(pattern) +
                        (rc == GLOB_NOSPACE ? ": out of memory" : ": read error"));
    }
    std::sort(matches.begin(), matches.end());
    for (std::string& path : matches) {
      struct stat st;
      if (stat(path.c_str(), &st) != 0) {
        throw ConfigError(key + ": cannot use " + Quote(path) + ": " + std::strerror(errno));
      }
      if (S_ISDIR(st.st_mode)) {
        throw ConfigError(key + ": " + Quote(path) +
                          " is a directory, not a file (use a glob such as '" + path + "/*')");
      }
      if (!S_ISREG(st.st_mode)) {
        throw ConfigError(key + ": " + Quote(path) + " is not a regular file");
      }
      out.push_back(std::move(path));
    }
  }
  return out;
}

}  // namespace fmps
