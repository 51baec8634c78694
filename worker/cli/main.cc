// fmps entry point: runs the command line and turns errors into a one-line message and a
// non-zero exit status.
#include <malloc.h>

#include <cstdio>
#include <exception>

#include "common/base/error.h"
#include "worker/cli/cli.h"
#include "worker/job/interrupt.h"

int main(int argc, char** argv) {
  // Per-minibatch message arrays (~0.1-1 MB) stay on the heap instead of fresh mmap()s.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  try {
    return fmps::RunCli(argc, argv);
  } catch (const fmps::Interrupted& e) {
    std::fprintf(stderr, "fmps: %s\n", e.what());
    return e.exit_status();
  } catch (const fmps::ConfigError& e) {
    std::fprintf(stderr, "fmps: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fmps: error: %s\n", e.what());
    return 1;
  }
}
