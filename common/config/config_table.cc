// The config field table: see config_table.h.

#include "common/config/config_table.h"

#include <limits>
#include <string>

#include "common/base/error.h"

namespace fmps {
namespace {

// Accessor of the Config member at `path` (e.g. FMPS_AT(model.k)).
#define FMPS_AT(path) \
  [](Config & c) -> auto& { return c.path; }

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr RealRange kNonNegative{0.0, true, kInf, false, ">= 0"};
constexpr RealRange kPositive{0.0, false, kInf, false, "> 0"};
constexpr RealRange kUnitOpen{0.0, true, 1.0, false, "in [0, 1)"};
constexpr RealRange kUnitClosed{0.0, true, 1.0, true, "in [0, 1]"};
constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
constexpr std::int64_t kUint32Max = std::numeric_limits<std::uint32_t>::max();

bool IsAdam(const Config& c) { return c.optimizer.name == OptimizerName::kAdam; }
bool IsAdagrad(const Config& c) { return c.optimizer.name == OptimizerName::kAdagrad; }
bool IsAdagradOrAdam(const Config& c) {
  return c.optimizer.name == OptimizerName::kAdagrad || IsAdam(c);
}
bool IsFtrl(const Config& c) { return c.optimizer.name == OptimizerName::kFtrl; }
bool IsAsync(const Config& c) { return c.train.consistency == Consistency::kAsync; }
bool IsCsv(const Config& c) { return c.data.format == DataFormat::kCsv; }
bool HasCheckpointDir(const Config& c) { return !c.checkpoint.dir.empty(); }
bool HasNegatives(const Config& c) { return c.data.negatives.per_positive > 0; }
bool IsPopularity(const Config& c) {
  return HasNegatives(c) && c.data.negatives.distribution == NegativeDistribution::kPopularity;
}

const Condition kAdamOnly{"to optimizer.name: adam", IsAdam, "optimizer.name"};
const Condition kAdagradOnly{"to optimizer.name: adagrad", IsAdagrad, "optimizer.name"};
const Condition kAdagradOrAdamOnly{"to optimizer.name: adagrad or adam", IsAdagradOrAdam,
                                   "optimizer.name"};
const Condition kFtrlOnly{"to optimizer.name: ftrl", IsFtrl, "optimizer.name"};
const Condition kAsyncOnly{"to train.consistency: async", IsAsync, "train.consistency",
                           "bsp runs one update per step"};
const Condition kCsvOnly{"to data.format: csv", IsCsv, "data.format"};
const Condition kWithNegatives{"with data.negatives.per_positive > 0", HasNegatives,
                               "data.negatives.per_positive"};
const Condition kPopularityOnly{"to data.negatives.distribution: popularity", IsPopularity,
                                "data.negatives.distribution"};
const Condition kWithCheckpointDir{"with checkpoint.dir set", HasCheckpointDir, "checkpoint.dir",
                                   "no checkpoints are written without it"};

std::vector<ConfigField> DataFields() {
  return {
      {.key = "data.train",
       .kind = ListField{FMPS_AT(data.train), "path or glob"},
       .meaning = "training files: paths or globs, read in this order",
       .presence = Presence::kRequiredToTrain,
       .digest = true},
      {.key = "data.test",
       .kind = ListField{FMPS_AT(data.test), "path or glob"},
       .meaning = "test files, evaluated at each epoch end"},
      {.key = "data.format",
       .kind = EnumField<DataFormat>{FMPS_AT(data.format)},
       .meaning = "file format of the train and test files",
       .presence = Presence::kRequired,
       .digest = true,
       .key_setting = true},
      {.key = "data.hash_bits",
       .kind = IntField<int>{FMPS_AT(data.hash_bits), 0, 64},
       .meaning = "0 keeps numeric ids; 1..64 hashes every key into 2^hash_bits values",
       .digest = true,
       .key_setting = true},
  };
}

std::vector<ConfigField> CsvFields() {
  return {
      {.key = "data.csv.label",
       .kind = TextField{FMPS_AT(data.csv.label), "the label column's name", "empty column name"},
       .meaning = "the csv column holding the label",
       .applies = &kCsvOnly,
       .presence = Presence::kRequired,
       .digest = true,
       .key_setting = true},
      {.key = "data.csv.numeric",
       .kind = ListField{FMPS_AT(data.csv.numeric), "column name"},
       .meaning = "real-valued csv columns, transformed per data.csv.transform",
       .applies = &kCsvOnly,
       .digest = true,
       .key_setting = true},
      {.key = "data.csv.categorical",
       .kind = ListField{FMPS_AT(data.csv.categorical), "column name"},
       .meaning = "csv columns whose values are hashed together with the column name",
       .applies = &kCsvOnly,
       .digest = true,
       .key_setting = true},
      {.key = "data.csv.ignore",
       .kind = ListField{FMPS_AT(data.csv.ignore), "column name"},
       .meaning = "csv columns that are skipped (every column needs exactly one role)",
       .applies = &kCsvOnly,
       .digest = true,
       .key_setting = true},
      {.key = "data.csv.delimiter",
       .kind = CharField{FMPS_AT(data.csv.delimiter)},
       .meaning = "the csv field separator",
       .applies = &kCsvOnly,
       .digest = true,
       .key_setting = true},
      {.key = "data.csv.transform",
       .kind = EnumField<NumericTransform>{FMPS_AT(data.csv.transform)},
       .meaning = "how numeric csv columns become feature values",
       .applies = &kCsvOnly,
       .digest = true,
       .key_setting = true},
      {.key = "data.csv.multi",
       .kind = ListField{FMPS_AT(data.csv.multi), "column name"},
       .meaning = "categorical csv columns holding several values per cell (one feature each)",
       .applies = &kCsvOnly,
       .digest = true,
       .key_setting = true},
      {.key = "data.csv.multi_separator",
       .kind = CharField{FMPS_AT(data.csv.multi_separator)},
       .meaning = "the separator of the values of a data.csv.multi cell",
       .applies = &kCsvOnly,
       .digest = true,
       .key_setting = true},
  };
}

// Sampled negatives (common/data/negatives.h).
std::vector<ConfigField> NegativesFields() {
  return {
      {.key = "data.negatives.per_positive",
       .kind = IntField<int>{FMPS_AT(data.negatives.per_positive), 0, 1000},
       .meaning = "label-0 rows sampled from the catalogue per training row; 0 = off",
       .digest = true},
      {.key = "data.negatives.items",
       .kind = TextField{FMPS_AT(data.negatives.items), "the catalogue csv path", "empty path"},
       .meaning = "csv catalogue: the item id column and the item-side columns of model.sides",
       .applies = &kWithNegatives,
       .presence = Presence::kRequired,
       .digest = true},
      {.key = "data.negatives.distribution",
       .kind = EnumField<NegativeDistribution>{FMPS_AT(data.negatives.distribution)},
       .meaning = "uniform over the catalogue, or popularity: count in data.train ^ exponent",
       .applies = &kWithNegatives,
       .digest = true},
      {.key = "data.negatives.exponent",
       .kind = RealField<double>{FMPS_AT(data.negatives.exponent), kNonNegative},
       .meaning = "popularity: an item's weight is its count in data.train to this power",
       .applies = &kPopularityOnly,
       .digest = true},
      {.key = "data.negatives.seed",
       .kind = Uint64Field{FMPS_AT(data.negatives.seed)},
       .meaning = "sampling seed (a row's negatives depend on it, the row and the epoch)",
       .applies = &kWithNegatives,
       .digest = true},
  };
}

std::vector<ConfigField> DataTailFields() {
  return {
      {.key = "data.on_error",
       .kind = EnumField<OnError>{FMPS_AT(data.on_error)},
       .meaning = "skip: count malformed rows, report the first few; fail: stop at the first"},
      {.key = "data.normalize",
       .kind = EnumField<Normalize>{FMPS_AT(data.normalize)},
       .meaning = "instance (default): scale each row's values to unit L2 norm as it is read "
                  "(train, test, predict); none: use them as given. Model files without the key "
                  "read as none",
       .digest = true},
      {.key = "data.max_bad_fraction",
       .kind = RealField<double>{FMPS_AT(data.max_bad_fraction), kUnitClosed},
       .meaning = "fail the job when more than this share of the training rows is malformed "
                  "(skipped); 1 never fails"},
  };
}

std::vector<ConfigField> ModelFields() {
  return {
      {.key = "model.k",
       .kind = IntField<int>{FMPS_AT(model.k), 1, 1024},
       .meaning = "latent factors per feature (embedding width)",
       .digest = true},
      {.key = "model.loss",
       .kind = EnumField<Loss>{FMPS_AT(model.loss)},
       .meaning = "logistic for 0/1 labels (probabilities), squared for regression",
       .digest = true},
      {.key = "model.init_std",
       .kind = RealField<float>{FMPS_AT(model.init_std), kNonNegative},
       .meaning = "v ~ N(0, init_std^2), a function of (train.seed, key) only",
       .digest = true},
      {.key = "model.l2_w",
       .kind = RealField<float>{FMPS_AT(model.l2_w), kNonNegative},
       .meaning = "L2 on the linear weights w of the rows a batch touches",
       .digest = true},
      {.key = "model.l2_v",
       .kind = RealField<float>{FMPS_AT(model.l2_v), kNonNegative},
       .meaning = "L2 on the embeddings v of the rows a batch touches",
       .digest = true},
      {.key = "model.min_count",
       .kind = IntField<std::uint32_t>{FMPS_AT(model.min_count), 0, kUint32Max},
       .meaning = "a key gets an embedding v only once seen this often (w trains from the start)",
       .digest = true},
      {.key = "model.sides.user",
       .kind = ListField{FMPS_AT(model.sides.user), "field"},
       .meaning = "user-side fields of a recall model (csv columns, libffm field ids, criteo "
                  "columns I1..C26)",
       .digest = true},
      {.key = "model.sides.item",
       .kind = ListField{FMPS_AT(model.sides.item), "field"},
       .meaning = "item-side fields; the first is the item id; every field on exactly one side",
       .digest = true},
  };
}

// Field-aware FM (model.kind ffm): model.fields applies only to it. Which formats may
// train it is checked by the reader (config_read.cc, CheckFieldAwareModel).
bool IsFfm(const Config& c) { return c.model.kind == ModelKind::kFfm; }
const Condition kFfmOnly{"to model.kind: ffm", IsFfm, "model.kind"};

std::vector<ConfigField> ModelKindFields() {
  return {
      {.key = "model.kind",
       .kind = EnumField<ModelKind>{FMPS_AT(model.kind)},
       .meaning = "fm: one embedding per feature; ffm: field-aware FM, one embedding per "
                  "feature and field (needs model.fields and a format with fields)",
       .digest = true},
      {.key = "model.fields",
       .kind = IntField<int>{FMPS_AT(model.fields), 1, 4096},
       .meaning = "ffm: the number of fields F; every field id of the data must be below it",
       .applies = &kFfmOnly,
       .presence = Presence::kRequired,
       .digest = true},
  };
}

std::vector<ConfigField> OptimizerFields() {
  return {
      {.key = "optimizer.name",
       .kind = EnumField<OptimizerName>{FMPS_AT(optimizer.name)},
       .meaning = "the servers' update rule",
       .digest = true},
      {.key = "optimizer.lr",
       .kind = RealField<float>{FMPS_AT(optimizer.lr), kPositive},
       .meaning = "learning rate (FTRL's alpha)",
       .digest = true},
      {.key = "optimizer.beta1",
       .kind = RealField<float>{FMPS_AT(optimizer.beta1), kUnitOpen},
       .meaning = "Adam's decay of the first moment",
       .applies = &kAdamOnly,
       .digest = true},
      {.key = "optimizer.beta2",
       .kind = RealField<float>{FMPS_AT(optimizer.beta2), kUnitOpen},
       .meaning = "Adam's decay of the second moment",
       .applies = &kAdamOnly,
       .digest = true},
      {.key = "optimizer.eps",
       .kind = RealField<float>{FMPS_AT(optimizer.eps), kPositive},
       .meaning = "added to the denominator for numerical safety",
       .applies = &kAdagradOrAdamOnly,
       .digest = true},
      {.key = "optimizer.l1",
       .kind = RealField<float>{FMPS_AT(optimizer.l1), kNonNegative},
       .meaning = "FTRL's L1 strength (sparsity)",
       .applies = &kFtrlOnly,
       .digest = true},
      {.key = "optimizer.ftrl_beta",
       .kind = RealField<float>{FMPS_AT(optimizer.ftrl_beta), kNonNegative},
       .meaning = "FTRL's beta (smooths the per-coordinate learning rate)",
       .applies = &kFtrlOnly,
       .digest = true},
      {.key = "optimizer.clip_gradient",
       .kind = RealField<float>{FMPS_AT(optimizer.clip_gradient), kNonNegative},
       .meaning = "servers clamp each gradient element to [-clip, clip] first; 0 = off",
       .digest = true},
      {.key = "optimizer.gradient",
       .kind = EnumField<GradientScale>{FMPS_AT(optimizer.gradient)},
       .meaning = "key_mean: push each key's batch gradient divided by its count in the batch "
                  "(bias: by the rows); sum: the sum over the batch's rows; key_sqrt: the sum "
                  "divided by the square root of the count; auto (default): key_sqrt for "
                  "adagrad, key_mean for the other optimizers",
       .digest = true},
      {.key = "optimizer.initial_accumulator",
       .kind = RealField<float>{FMPS_AT(optimizer.initial_accumulator), kNonNegative},
       .meaning = "AdaGrad's starting sum of squared gradients (0: the first step is lr*sign(g); "
                  "the default 0.001 damps first steps of small gradients)",
       .applies = &kAdagradOnly,
       .digest = true},
      {.key = "optimizer.rowwise",
       .kind = BoolField{FMPS_AT(optimizer.rowwise)},
       .meaning = "row-wise AdaGrad: one accumulator per latent vector of k floats (the mean of "
                  "its squared gradients) instead of one per float; w keeps its own. Less "
                  "server memory and push traffic (FFM at k 8: 40 instead of 313 state floats "
                  "per key at 39 fields)",
       .applies = &kAdagradOnly,
       .digest = true,
       .digest_unless_default = true},
  };
}

std::vector<ConfigField> TrainFields() {
  return {
      {.key = "train.epochs",
       .kind = IntField<int>{FMPS_AT(train.epochs), 1, 1000000},
       .meaning = "passes over the training files"},
      {.key = "train.batch_size",
       .kind = IntField<int>{FMPS_AT(train.batch_size), 1, 10000000},
       .meaning = "rows per minibatch per worker",
       .digest = true},
      {.key = "train.consistency",
       .kind = EnumField<Consistency>{FMPS_AT(train.consistency)},
       .meaning =
           "async: workers push freely; bsp: one update per step, gradients summed in worker order",
       .digest = true},
      {.key = "train.max_delay",
       .kind = IntField<int>{FMPS_AT(train.max_delay), 1, 1024},
       .meaning = "batches a worker may have in flight (pulled, not yet acknowledged)",
       .applies = &kAsyncOnly,
       .digest = true},
      {.key = "train.seed",
       .kind = Uint64Field{FMPS_AT(train.seed)},
       .meaning = "initialisation seed",
       .digest = true},
      {.key = "train.progress_seconds",
       .kind = RealField<double>{FMPS_AT(train.progress_seconds), kPositive},
       .meaning = "interval of progress lines and metrics events"},
      {.key = "train.init_model",
       .kind = TextField{FMPS_AT(train.init_model),
                         "the path of a model.fmps to start from (empty for none)", nullptr},
       .meaning = "warm start from this model.fmps (same k, loss and data settings); empty: none"},
  };
}

std::vector<ConfigField> RunFields() {
  return {
      {.key = "cluster.servers",
       .kind = IntField<int>{FMPS_AT(cluster.servers), 1, kIntMax},
       .meaning = "server ranks under mpirun (the other ranks are workers)"},
      {.key = "cluster.local_servers",
       .kind = IntField<int>{FMPS_AT(cluster.local_servers), 1, 64},
       .meaning = "server threads in single-node mode"},
      {.key = "cluster.local_workers",
       .kind = IntField<int>{FMPS_AT(cluster.local_workers), 1, 256},
       .meaning = "worker threads in single-node mode"},
      {.key = "cluster.timeout_seconds",
       .kind = RealField<double>{FMPS_AT(cluster.timeout_seconds), kPositive},
       .meaning = "longest wait for a reply before the job fails (a peer is presumed dead)"},
      {.key = "checkpoint.dir",
       .kind = TextField{FMPS_AT(checkpoint.dir), "a directory path (empty for no checkpoints)",
                         nullptr},
       .meaning = "where checkpoints go (empty: none); shared by all ranks of a cluster job"},
      {.key = "checkpoint.every_seconds",
       .kind = RealField<double>{FMPS_AT(checkpoint.every_seconds), kPositive},
       .meaning = "interval of mid-epoch checkpoints (one is also written at each epoch end)",
       .applies = &kWithCheckpointDir},
      {.key = "checkpoint.keep",
       .kind = IntField<int>{FMPS_AT(checkpoint.keep), 1, 1000},
       .meaning = "newest complete checkpoints kept",
       .applies = &kWithCheckpointDir},
      {.key = "output.dir",
       .kind = TextField{FMPS_AT(output.dir), "a directory path",
                         "empty (omit the key for the default runs/<name>)"},
       .meaning = "where the model, metrics and summary of a run go",
       .default_text = "runs/<config file name without extension>"},
  };
}

// Validation and early stopping (data.valid, data.valid_fraction, train.early_stop).
bool EarlyStopOn(const Config& c) { return c.train.early_stop.metric != EarlyStopMetric::kNone; }
const Condition kEarlyStopOn{"with train.early_stop.metric other than none", EarlyStopOn,
                             "train.early_stop.metric"};

std::vector<ConfigField> ValidationFields() {
  return {
      {.key = "data.valid",
       .kind = ListField{FMPS_AT(data.valid), "path or glob"},
       .meaning = "validation files, evaluated at each epoch end (train.early_stop judges them)"},
      {.key = "data.valid_fraction",
       .kind = RealField<double>{FMPS_AT(data.valid_fraction), kUnitOpen},
       .meaning = "without data.valid: hold out the training rows whose row hash falls in this "
                  "fraction (never trained on) as the validation rows; 0: none",
       .digest = true},
  };
}

std::vector<ConfigField> EarlyStopFields() {
  return {
      {.key = "train.early_stop.metric",
       .kind = EnumField<EarlyStopMetric>{FMPS_AT(train.early_stop.metric)},
       .meaning = "validation metric that picks the best epoch (auto: auc for logistic, rmse for "
                  "squared); the model written is the best epoch's; none: off"},
      {.key = "train.early_stop.patience",
       .kind = IntField<int>{FMPS_AT(train.early_stop.patience), 1, 1000000},
       .meaning = "stop after this many epochs without an improvement of the metric",
       .applies = &kEarlyStopOn},
      {.key = "train.early_stop.min_delta",
       .kind = RealField<double>{FMPS_AT(train.early_stop.min_delta), kNonNegative},
       .meaning = "the least change of the metric that counts as an improvement",
       .applies = &kEarlyStopOn},
  };
}

#undef FMPS_AT

std::vector<ConfigField> MakeTable() {
  std::vector<ConfigField> all;
  for (auto part :
       {DataFields, CsvFields, NegativesFields, DataTailFields, ValidationFields, ModelFields,
        ModelKindFields, OptimizerFields, TrainFields, EarlyStopFields, RunFields}) {
    for (ConfigField& f : part()) all.push_back(f);
  }
  return all;
}

template <typename E>
const char* NameOf(E v) {
  const std::span<const std::string_view> names = EnumNames<E>();
  const auto i = static_cast<std::size_t>(v);
  return i < names.size() ? names[i].data() : "?";  // the names are literals
}

}  // namespace

const char* ToString(DataFormat v) { return NameOf(v); }
const char* ToString(NumericTransform v) { return NameOf(v); }
const char* ToString(OnError v) { return NameOf(v); }
const char* ToString(Loss v) { return NameOf(v); }
const char* ToString(OptimizerName v) { return NameOf(v); }
const char* ToString(Consistency v) { return NameOf(v); }
const char* ToString(Normalize v) { return NameOf(v); }
const char* ToString(GradientScale v) { return NameOf(v); }
const char* ToString(EarlyStopMetric v) { return NameOf(v); }

void CheckValidationKeys(const Config& c, ValidationSource source) {
  const bool has_files = !c.data.valid.empty();
  if (source == ValidationSource::kFolds && (has_files || c.data.valid_fraction > 0.0)) {
    throw ConfigError(std::string(has_files ? "data.valid" : "data.valid_fraction") +
                      ": fmps cv holds out each fold's rows as the validation rows; remove this "
                      "key");
  }
  if (has_files && c.data.valid_fraction > 0.0) {
    throw ConfigError(
        "data.valid_fraction: give either data.valid (validation files) or "
        "data.valid_fraction (held-out training rows), not both");
  }
  const EarlyStopMetric m = c.train.early_stop.metric;
  if (m == EarlyStopMetric::kNone) return;
  if (!has_files && c.data.valid_fraction == 0.0 && source == ValidationSource::kConfig) {
    throw ConfigError(std::string("train.early_stop.metric: ") + ToString(m) +
                      " needs validation rows: set data.valid (files) or data.valid_fraction "
                      "(0 < fraction < 1 of the training rows held out)");
  }
  const bool logistic = c.model.loss == Loss::kLogistic;
  if ((m == EarlyStopMetric::kRmse && logistic) ||
      ((m == EarlyStopMetric::kAuc || m == EarlyStopMetric::kLogloss) && !logistic)) {
    throw ConfigError(std::string("train.early_stop.metric: ") + ToString(m) +
                      " is not measured for model.loss " + ToString(c.model.loss) +
                      (logistic ? " (use auc, logloss or auto)" : " (use rmse or auto)"));
  }
}
const char* ToString(ModelKind v) { return NameOf(v); }
const char* ToString(NegativeDistribution v) { return NameOf(v); }

std::span<const ConfigField> ConfigFields() {
  static const std::vector<ConfigField> table = MakeTable();
  return table;
}

const ConfigField* FindConfigField(std::string_view key) {
  for (const ConfigField& f : ConfigFields()) {
    if (key == f.key) return &f;
  }
  return nullptr;
}

bool FieldApplies(const ConfigField& field, const Config& config) {
  return field.applies == nullptr || field.applies->holds(config);
}

}  // namespace fmps
