// fmps entry point: runs the command line and turns errors into a one-line message and a
// non-zero exit status.
#include <cstdio>
#include <exception>

#include "common/error.h"
#include "worker/cli.h"

int main(int argc, char** argv) {
  try {
    return fmps::RunCli(argc, argv);
  } catch (const fmps::ConfigError& e) {
    std::fprintf(stderr, "fmps: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fmps: error: %s\n", e.what());
    return 1;
  }
}
