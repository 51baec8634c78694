// `fmps predict`, `fmps eval` and `fmps export`: argv in, exit status out; errors propagate
// as fmps::Error for main to report on one line.
#pragma once

namespace fmps::cli {

// Each parses argv[2..] (argv[1] is the command's name).
int Predict(int argc, char** argv);
int Eval(int argc, char** argv);
int Export(int argc, char** argv);

}  // namespace fmps::cli
