#include "worker/cli/cli.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/base/error.h"
#include "common/base/json.h"
#include "common/comm/mpi/mpi_transport.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "common/data/synth.h"
#include "common/model/loss.h"
#include "common/model/metrics.h"
#include "common/model/model_file.h"
#include "worker/cli/cli_args.h"
#include "worker/cli/cv_command.h"
#include "worker/cli/recall_commands.h"
#include "worker/cli/score_commands.h"
#include "worker/job/interrupt.h"
#include "worker/job/local_trainer.h"
#include "worker/job/mpi_trainer.h"

#ifndef FMPS_VERSION
#define FMPS_VERSION "0.0.0"
#endif

namespace fmps {
namespace {

constexpr const char* kUsage = R"(fmps — distributed Factorization Machines on sparse data

usage:
  fmps train   CONFIG.yaml [--set KEY=VALUE]... [--resume]
  fmps check   CONFIG.yaml [--set KEY=VALUE]...   validate; print the effective config
  fmps check   --explain                           list every config key: type, default,
                                                   allowed values, when it applies, meaning
  fmps synth   --out DIR [--rows N] [--test-rows N] [--fields F] [--vocab V]
               [--k K] [--seed S] [--format libsvm|libffm|criteo|csv] [--model fm|ffm]
  fmps predict --model PATH --data FILE [--format F] [--out FILE] [--threads N]
  fmps eval    --model PATH --data FILE [--format F] [--threads N]
                                     prints JSON: rows, logloss and auc (logistic loss)
                                     or mse and rmse (squared loss)
  fmps export  --model PATH --out FILE.txt             readable text dump
  fmps cv      CONFIG.yaml --folds K [--set KEY=VALUE]...   K-fold cross-validation
  fmps embed   --model PATH --side user|item --data DATA --out FILE [--format text|npy]
                                     serving vectors of a recall model (model.sides)
  fmps recall  --model PATH --users USERS --items CATALOGUE --out FILE [--k K]
               [--exclude FILE] [--index exact|faiss:FACTORY[?PARAMS]] [--threads N]
               [--truth FILE]         top-K items per user; --truth prints JSON metrics
  fmps COMMAND --help                                  usage of one command
  fmps --help | --version

KEY in --set is a dotted config path, e.g. --set optimizer.lr=0.05.
Without mpirun, `fmps train` runs single-node mode: cluster.local_servers server threads
and cluster.local_workers worker threads in one process.
predict and eval stream FILE and score it on N threads (default: all cores); predict
writes one prediction per input row, in input order, and --out appears only when complete.
A FILE of - is standard input (--data) or standard output (--out).
)";

using cli::Args;
using cli::ParseArgs;
using cli::ParseFormat;
using cli::ParseUint;

using cli::Overrides;

Config LoadFromArgs(const std::string& command, const Args& a) {
  if (a.positional.size() != 1) {
    throw ConfigError(command + ": expected exactly one CONFIG.yaml argument");
  }
  return LoadConfig(a.positional[0], Overrides(a));
}

using cli::UnderMpiWithPeers;

int Train(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "train", {"set"}, {"resume"});
  const bool resume = a.Has("resume");
  // SIGINT/SIGTERM stop the job cleanly (interrupt.h); under MPI every rank installs them,
  // so that none dies on the signal mpirun or SLURM delivers, and the root worker acts.
  InstallStopSignals();
  if (UnderMpiWithPeers()) {
    // MPI mode: the config is loaded inside, so that a bad one is reported once.
    if (a.positional.size() != 1) {
      throw ConfigError("train: expected exactly one CONFIG.yaml argument");
    }
    MpiSession session(&argc, &argv);
    const int code = TrainMpi(a.positional[0], Overrides(a), resume);
    session.Finalize();
    return code;
  }
  Config config = LoadFromArgs("train", a);
  TrainSummary s = TrainLocal(config, resume);
  std::printf("%s\n", FinalLine(config.model.loss, s).c_str());
  return 0;
}

int Check(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "check", {"set"}, {"explain"});
  if (a.Has("explain")) {
    if (!a.positional.empty() || a.options.count("set") != 0) {
      throw ConfigError("check: --explain takes no CONFIG.yaml or --set");
    }
    std::cout << ExplainConfig();
    return 0;
  }
  Config config = LoadFromArgs("check", a);
  std::cout << ConfigToYaml(config);
  return 0;
}

int Synth(int argc, char** argv) {
  Args a = ParseArgs(
      argc, argv, 2, "synth",
      {"out", "rows", "test-rows", "fields", "vocab", "k", "seed", "format", "model"}, {});
  if (!a.positional.empty()) throw ConfigError("synth: unexpected argument " + a.positional[0]);
  SynthOptions o;
  o.out_dir = a.Require("synth", "out");
  auto uint_opt = [&](const char* name, std::uint64_t fallback) {
    std::string v = a.Get(name);
    return v.empty() ? fallback : ParseUint("synth", name, v);
  };
  o.rows = uint_opt("rows", o.rows);
  o.test_rows = uint_opt("test-rows", o.test_rows);
  o.fields = static_cast<int>(std::min<std::uint64_t>(uint_opt("fields", o.fields), 1u << 20));
  o.vocab = uint_opt("vocab", o.vocab);
  o.k = static_cast<int>(std::min<std::uint64_t>(uint_opt("k", o.k), 1u << 20));
  o.seed = uint_opt("seed", o.seed);
  if (std::string f = a.Get("format"); !f.empty()) o.format = ParseFormat("synth", f);
  if (std::string m = a.Get("model"); !m.empty()) {
    if (m != "fm" && m != "ffm") {
      throw ConfigError("synth: --model must be fm or ffm, got '" + m + "'");
    }
    o.model = m == "ffm" ? ModelKind::kFfm : ModelKind::kFm;
  }
  SynthResult r = Synthesize(o);
  std::printf(
      "wrote %s and %s (%llu + %llu rows); positive rate %.4f; Bayes test logloss %.5f, "
      "auc %.5f\n",
      r.train_path.c_str(), r.test_path.c_str(), static_cast<unsigned long long>(o.rows),
      static_cast<unsigned long long>(o.test_rows), r.positive_rate, r.bayes_logloss_test,
      r.bayes_auc_test);
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "--version") {
    std::printf("fmps %s\n", FMPS_VERSION);
    return 0;
  }
  if (const char* usage = cli::CommandUsage(command);
      usage != nullptr && cli::WantsHelp(argc, argv, 2)) {
    std::fputs(usage, stdout);
    return 0;
  }
  if (command == "train") return Train(argc, argv);
  if (command == "check") return Check(argc, argv);
  if (command == "synth") return Synth(argc, argv);
  if (command == "predict") return cli::Predict(argc, argv);
  if (command == "eval") return cli::Eval(argc, argv);
  if (command == "export") return cli::Export(argc, argv);
  if (command == "cv") return cli::CrossValidate(argc, argv);
  if (command == "embed") return cli::Embed(argc, argv);
  if (command == "recall") return cli::Recall(argc, argv);
  throw ConfigError("unknown command '" + command + "' (see fmps --help)");
}

}  // namespace fmps
