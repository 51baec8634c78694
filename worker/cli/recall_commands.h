// `fmps embed` and `fmps recall` (recall models trained with model.sides): argv in, exit
// status out; errors propagate as fmps::Error for main to report on one line.
#pragma once

namespace fmps::cli {

// Each parses argv[2..] (argv[1] is the command's name).
int Embed(int argc, char** argv);
int Recall(int argc, char** argv);

}  // namespace fmps::cli
