// The `fmps` command line. RunCli parses argv, runs the command and returns the
// process exit status; errors propagate as fmps::Error for main to report.
#pragma once

namespace fmps {

int RunCli(int argc, char** argv);

}  // namespace fmps
