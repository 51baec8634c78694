// fmps entry point: runs the command line and turns errors into a one-line message and a
// non-zero exit status.
#include <malloc.h>

#include <cstdio>
#include <exception>

#include "common/base/error.h"
#include "worker/cli/cli.h"

int main(int argc, char** argv) {
  // Training allocates and frees message arrays of ~0.1-1 MB per minibatch. With glibc's
  // defaults such blocks go to fresh mmap()s or trim the heap when freed, so every batch
  // paid page faults and kernel page zeroing for them (~5% of a server rank's time under
  // MPI). Blocks below 32 MiB now come from the heap, which keeps up to 256 MiB of free
  // memory instead of returning it at once. (The parameter store maps its own memory.)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
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
