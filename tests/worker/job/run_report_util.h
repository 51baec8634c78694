// Shared by run_report_test and run_report_mpi_test.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "tests/util/test_util.h"

namespace fmps::testing {

// summary.json of the run in dir/run states test_logloss equal (to its printed precision)
// to what `fmps eval` computes on dir/run/model.fmps over dir/data/test.libsvm; returns it
// as printed ("%.6f").
inline std::string ExpectSummaryMetricIsTheModels(const TempDir& dir) {
  const std::string summary = ReadFile(dir.File("run/summary.json"));
  std::string eval;
  EXPECT_EQ(RunCommand(FmpsBinary() + " eval --model " + dir.File("run/model.fmps") + " --data " +
                           dir.File("data/test.libsvm") + " 2>/dev/null",
                       &eval),
            0)
      << eval;
  char job[32], file[32];
  std::snprintf(job, sizeof(job), "%.6f", JsonNumber(summary, "test_logloss"));
  std::snprintf(file, sizeof(file), "%.6f", JsonNumber(eval, "logloss"));
  EXPECT_STREQ(job, file) << summary << eval;
  return job;
}

}  // namespace fmps::testing
