#include "worker/cli/cv_command.h"

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/comm/mpi/mpi_transport.h"
#include "common/config/config.h"
#include "worker/cli/cli_args.h"
#include "worker/job/cross_validation.h"
#include "worker/job/interrupt.h"
#include "worker/job/local_trainer.h"
#include "worker/job/mpi_trainer.h"
#include "worker/job/run_output.h"

namespace fmps::cli {
namespace {

// The user's overrides followed by fold `fold`'s.
std::vector<std::string> FoldSets(const std::vector<std::string>& user, const Config& base,
                                  int fold) {
  std::vector<std::string> sets = user;
  for (std::string& s : FoldOverrides(base, fold)) sets.push_back(std::move(s));
  return sets;
}

// Every fold under mpirun, one job after another; the root worker rank collects the summaries.
int RunFoldsMpi(int* argc, char*** argv, const std::string& path,
                const std::vector<std::string>& user, const Config& base, int folds,
                std::vector<TrainSummary>* summaries) {
  MpiSession session(argc, argv);
  for (int f = 0; f < folds; ++f) {
    std::optional<TrainSummary> summary;
    const JobRequest request{.fold = f, .folds = folds};
    if (const int code = TrainMpi(path, FoldSets(user, base, f), request, &summary)) {
      session.Finalize();
      return code;
    }
    if (summary) {
      std::printf("%s\n", FoldLine(*summary, f, folds).c_str());
      std::fflush(stdout);
      summaries->push_back(std::move(*summary));
    }
  }
  session.Finalize();
  return 0;
}

}  // namespace

int CrossValidate(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "cv", {"set", "folds"}, {});
  if (a.positional.size() != 1) throw ConfigError("cv: expected exactly one CONFIG.yaml argument");
  const std::string path = a.positional[0];
  const int folds = static_cast<int>(
      std::min<std::uint64_t>(ParseUint("cv", "folds", a.Require("cv", "folds")), 1u << 20));
  const std::vector<std::string> user = Overrides(a);
  CheckFolds(folds);
  const Config base = LoadConfigForFolds(path, user);
  InstallStopSignals();
  std::vector<TrainSummary> summaries;
  if (UnderMpiWithPeers()) {
    if (const int code = RunFoldsMpi(&argc, &argv, path, user, base, folds, &summaries)) {
      return code;
    }
    if (summaries.empty()) return 0;  // not the root worker rank
  } else {
    for (int f = 0; f < folds; ++f) {
      const Config config = LoadConfigForFolds(path, FoldSets(user, base, f));
      summaries.push_back(TrainLocal(config, JobRequest{.fold = f, .folds = folds}));
      std::printf("%s\n", FoldLine(summaries.back(), f, folds).c_str());
      std::fflush(stdout);
    }
  }
  const CvResult result = SummarizeFolds(summaries);
  WriteFileAtomic(base.output.dir + "/cv.json", CvJson(result));
  std::printf("%s\n", CvLine(result).c_str());
  return 0;
}

}  // namespace fmps::cli
