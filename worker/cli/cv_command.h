// `fmps cv CONFIG --folds K [--set KEY=VALUE]...` (worker/job/cross_validation.h).
#pragma once

namespace fmps::cli {

// Runs the command (single-node, or under mpirun every rank); returns the exit status.
// Throws ConfigError on bad arguments or config.
int CrossValidate(int argc, char** argv);

}  // namespace fmps::cli
