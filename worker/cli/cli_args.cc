#include "worker/cli/cli_args.h"

#include <charconv>
#include <cstdlib>
#include <system_error>

#include "common/base/error.h"

namespace fmps::cli {
namespace {

struct CommandHelp {
  std::string_view command;
  const char* usage;
};

constexpr CommandHelp kHelp[] = {
    {"embed", R"(usage: fmps embed --model PATH --side user|item --data DATA --out FILE
                  [--format text|npy]

Writes the serving vector of every row of DATA for a model trained with model.sides:
user [sum of v*x, 1], item [sum of v*x, item-only terms], so that <user, item> ranks the
items of a user as the FM score does. text: one line per row, the id then the k + 1
numbers; npy: a float32 matrix (rows x (k + 1)) in FILE and the ids, one per line, in
FILE.ids. A row whose id appeared before is skipped. DATA is in the model's data.format:
  csv      a header with the side's id column (the first of model.sides.user / .item)
           and any of the side's feature columns
  libffm   ID field:feature:value ...   (a row with its label replaced by its id)
  criteo   ID<TAB>I1<TAB>...<TAB>C26     (the same; empty cells add no feature)
Features are read as training reads them; those of the other side are ignored.
)"},
    {"recall", R"(usage: fmps recall --model PATH --users USERS --items CATALOGUE --out FILE
                   [--k K] [--exclude INTERACTIONS] [--index exact|faiss:FACTORY]
                   [--threads N] [--truth HELDOUT]

Writes each user's top-K items (default K 100) as one line `user_id item_id:score ...`,
best first, ties broken by the smaller item id. USERS and CATALOGUE are side files as
fmps embed reads them (see fmps embed --help). --index exact (default) scores every item
by blocked matrix products; faiss:FACTORY builds a Faiss index with the inner-product
metric from a factory string (faiss:IVF1024,Flat?nprobe=16, faiss:HNSW32?efSearch=128).
--exclude leaves out each user's items in INTERACTIONS; --truth prints JSON: hit_rate,
recall, ndcg, mrr at 10, 50, 100 (those <= K) against the held-out pairs of HELDOUT, and
with faiss the overlap with the exact top-K. Both are (user id, item id) pairs: for a csv
model a csv with the user and item id columns; for libffm and criteo `user_id item_id`
lines (separated by spaces for libffm, by a tab for criteo).
)"},
    {"train", R"(usage: fmps train CONFIG.yaml [--set KEY=VALUE]... [--resume]

Trains the model CONFIG.yaml describes and writes model.fmps, metrics.jsonl and
summary.json into output.dir; prints one final line (test metrics, rows/s, model path).
  --set KEY=VALUE  override a dotted config key, e.g. --set optimizer.lr=0.05 (repeatable;
                   the value is parsed as YAML)
  --resume         continue from the newest complete checkpoint (afresh without one)
Without mpirun: single-node mode (cluster.local_servers server threads and
cluster.local_workers worker threads in one process). Under mpirun: one rank per server
or worker. Every config key: fmps check --explain.
)"},
    {"cv", R"(usage: fmps cv CONFIG.yaml --folds K [--set KEY=VALUE]...

K-fold cross-validation over the training rows: fold f (0-based) holds out the rows whose
row hash lies in [f/K, (f+1)/K) (a hash of the row's text: every row is in exactly one
fold, whatever the sharding). Each fold trains with CONFIG.yaml and early stopping
(train.early_stop as given, metric auto if none) judged on its held-out rows, into
output.dir/fold-<f>. Prints each fold's best validation metric and the mean +- sample
standard deviation; writes output.dir/cv.json. Under mpirun the folds run one after
another in the same job. CONFIG.yaml must not set data.valid or data.valid_fraction.
  --folds K        2..1000
  --set KEY=VALUE  override a dotted config key (repeatable), as for fmps train
)"},
    {"check", R"(usage: fmps check CONFIG.yaml [--set KEY=VALUE]...
       fmps check --explain

Validates CONFIG.yaml (with the --set overrides) and prints the effective config, or with
--explain lists every config key: type, default, allowed values, when it applies, meaning.
)"},
    {"synth", R"(usage: fmps synth --out DIR [--rows N] [--test-rows N] [--fields F] [--vocab V]
                  [--k K] [--seed S] [--format libsvm|libffm|criteo|csv] [--model fm|ffm]

Writes DIR/train.FORMAT and DIR/test.FORMAT drawn from a planted FM (--model ffm: a
planted field-aware FM, for a format with fields) and prints the Bayes logloss and AUC of
the test rows (the best any model can reach on them).
)"},
    {"predict",
     R"(usage: fmps predict --model PATH --data FILE [--format F] [--out FILE] [--threads N]

Prints one prediction per row of FILE, in input order: the probability for a logistic
model, the score for a squared-loss one.
  --data FILE   the rows; - reads standard input. Labels are optional: a libsvm/libffm
                row whose first token is a feature, a criteo row of 39 columns and a csv
                file without the label column are scored as unlabeled rows
  --format F    libsvm | libffm | criteo | csv (default: the model's)
  --out FILE    write there (complete or not at all) instead of standard output; - is
                standard output
  --threads N   scorer threads (default: all cores)
predict stops at the first malformed row, naming FILE:LINE (exit 1): it never skips one,
so that output line i is always row i.
)"},
    {"eval", R"(usage: fmps eval --model PATH --data FILE [--format F] [--threads N]

Scores the labeled rows of FILE and prints one JSON line: rows, logloss and auc for a
logistic model; rows, mse and rmse for a squared-loss one; bad_rows.
  --data FILE   the rows; - reads standard input
  --format F    libsvm | libffm | criteo | csv (default: the model's)
  --threads N   scorer threads (default: all cores)
Malformed rows follow the model's data.on_error (skip: counted, the first few reported;
fail: stop). A file with no row scored is an error (exit 1).
)"},
    {"export", R"(usage: fmps export --model PATH --out FILE

Writes the model as text: a # comment line, "bias W0", then one line per key,
"KEY W V1 ... Vk". --out - writes to standard output.
)"},
};

}  // namespace

std::string Args::Get(const std::string& name, const std::string& fallback) const {
  auto it = options.find(name);
  return it == options.end() ? fallback : it->second;
}

std::string Args::Require(const std::string& command, const std::string& name) const {
  auto it = options.find(name);
  if (it == options.end()) throw ConfigError(command + ": --" + name + " is required");
  return it->second;
}

bool Args::Has(const std::string& flag) const {
  for (const auto& f : flags) {
    if (f == flag) return true;
  }
  return false;
}

Args ParseArgs(int argc, char** argv, int first, const std::string& command,
               const std::vector<std::string>& value_options,
               const std::vector<std::string>& flag_options) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      a.positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    bool is_value = false, is_flag = false;
    for (const auto& o : value_options) is_value |= (o == name);
    for (const auto& f : flag_options) is_flag |= (f == name);
    if (is_flag && !has_value) {
      a.flags.push_back(name);
    } else if (is_value) {
      if (!has_value) {
        if (i + 1 >= argc) throw ConfigError(command + ": --" + name + " needs a value");
        value = argv[++i];
      }
      a.options.emplace(name, value);
    } else {
      throw ConfigError(command + ": unknown option --" + name + " (see fmps " + command +
                        " --help)");
    }
  }
  return a;
}

std::uint64_t ParseUint(const std::string& command, const std::string& name,
                        const std::string& text) {
  std::uint64_t v = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size()) {
    throw ConfigError(command + ": --" + name + " must be a non-negative integer, got '" + text +
                      "'");
  }
  return v;
}

DataFormat ParseFormat(const std::string& command, const std::string& text) {
  for (DataFormat f :
       {DataFormat::kLibsvm, DataFormat::kLibffm, DataFormat::kCriteo, DataFormat::kCsv}) {
    if (text == ToString(f)) return f;
  }
  throw ConfigError(command + ": --format must be libsvm, libffm, criteo or csv, got '" + text +
                    "'");
}

std::vector<std::string> Overrides(const Args& a) {
  std::vector<std::string> sets;
  for (auto [it, end] = a.options.equal_range("set"); it != end; ++it) sets.push_back(it->second);
  return sets;
}

bool UnderMpiWithPeers() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"}) {
    const char* v = std::getenv(var);
    if (v != nullptr && std::atoi(v) > 1) return true;
  }
  return false;
}

const char* CommandUsage(std::string_view command) {
  for (const CommandHelp& h : kHelp) {
    if (h.command == command) return h.usage;
  }
  return nullptr;
}

bool WantsHelp(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") return true;
  }
  return false;
}

}  // namespace fmps::cli
