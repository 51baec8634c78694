// Command-line parsing shared by the fmps subcommands, and each subcommand's usage text.
// Plain functions; no state. Errors are ConfigError (exit status 2).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/config.h"

namespace fmps::cli {

// Options of the form --name value (or --name=value); positional arguments kept in order.
struct Args {
  std::vector<std::string> positional;
  std::multimap<std::string, std::string> options;
  std::vector<std::string> flags;

  std::string Get(const std::string& name, const std::string& fallback = "") const;
  // Throws ConfigError "COMMAND: --NAME is required" when absent.
  std::string Require(const std::string& command, const std::string& name) const;
  bool Has(const std::string& flag) const;
};

// Parses argv[first..]: `value_options` take a value, `flag_options` do not; anything else
// starting with "--" is an unknown option (ConfigError). "-" alone is positional or a value.
Args ParseArgs(int argc, char** argv, int first, const std::string& command,
               const std::vector<std::string>& value_options,
               const std::vector<std::string>& flag_options);

// A non-negative decimal integer; ConfigError naming `command` and --`name` otherwise.
std::uint64_t ParseUint(const std::string& command, const std::string& name,
                        const std::string& text);

// libsvm | libffm | criteo | csv; ConfigError naming `command` otherwise.
DataFormat ParseFormat(const std::string& command, const std::string& text);

// The usage text of subcommand `command` (what `fmps COMMAND --help` prints), or nullptr
// for an unknown command.
const char* CommandUsage(std::string_view command);

// The values of every --set option, in order.
std::vector<std::string> Overrides(const Args& a);

// True when started by mpirun (or another launcher) with more than one rank.
bool UnderMpiWithPeers();

// True when argv[first..] contains --help or -h.
bool WantsHelp(int argc, char** argv, int first);

}  // namespace fmps::cli
