// Experiment configuration: typed structs with defaults, loaded strictly from YAML.
//
// The member initialisers below are the one source of every default. Each member is described
// once in the field table (config_table.h: key, allowed values, when it applies, digest), which
// drives reading, the dump, the digests and `fmps check --explain`. LoadConfig rejects unknown
// keys (suggesting the nearest valid name), wrong types and out-of-range values with a
// ConfigError naming the dotted key and its line:column in the file (or the --set override
// that supplied it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fmps {

enum class DataFormat { kLibsvm, kLibffm, kCriteo, kCsv };
enum class NumericTransform { kStandardize, kLogBucket, kNone };
enum class OnError { kSkip, kFail };
enum class Loss { kLogistic, kSquared };
enum class OptimizerName { kSgd, kAdagrad, kAdam, kFtrl };
enum class Consistency { kAsync, kBsp };
enum class Normalize { kNone, kInstance };
enum class GradientScale { kSum, kKeyMean, kKeySqrt, kAuto };
enum class EarlyStopMetric { kNone, kAuto, kAuc, kLogloss, kRmse };
// The model trained (model.kind). Stored in model files and checkpoint shards as its number:
// never renumber. The shape rules of each kind are in common/model/model_shape.h.
enum class ModelKind : int {
  kFm = 0,   // factorization machine: one v of k floats per key
  kFfm = 1,  // field-aware FM: one v of k floats per key and field (F * k floats)
};
enum class NegativeDistribution { kUniform, kPopularity };

// Role of each csv column. Every header column must have exactly one role.
struct CsvSpec {
  std::string label;                     // required for format csv
  std::vector<std::string> numeric;      // real-valued columns, transformed per `transform`
  std::vector<std::string> categorical;  // hashed together with the column name
  std::vector<std::string> ignore;       // skipped
  char delimiter = ',';
  NumericTransform transform = NumericTransform::kStandardize;
  // Multi-valued categorical columns (each also listed in `categorical`): a cell holds
  // several values separated by multi_separator, one feature each, all in the column's field.
  std::vector<std::string> multi;
  char multi_separator = '|';
};

// Sampled negatives for training on positive-only interactions (recall models): each
// training row is joined with per_positive items of the catalogue `items` as label-0 rows.
// Off while per_positive is 0. See common/data/negatives.h.
struct NegativesConfig {
  std::string items;  // csv catalogue: the item id column and the item-side columns
  int per_positive = 0;
  NegativeDistribution distribution = NegativeDistribution::kUniform;
  double exponent = 0.75;  // popularity: P(item) ~ count^exponent
  std::uint64_t seed = 0;
};

struct DataConfig {
  std::vector<std::string> train;           // paths or globs; required, non-empty
  std::vector<std::string> test;            // paths or globs; may be empty
  DataFormat format = DataFormat::kLibsvm;  // required key
  int hash_bits = 0;                        // 0..64; 0 keeps numeric ids as given
  CsvSpec csv;
  OnError on_error = OnError::kSkip;
  // kInstance (the default): every row's values are scaled to unit L2 norm when read (train,
  // test, predict). A model file's data section without the key reads as kNone (models
  // written before the key existed were trained on raw values; see ParseDataSection).
  Normalize normalize = Normalize::kInstance;
  // [0, 1]: the job fails when malformed (skipped) training rows exceed this share of the
  // rows read in the first epoch (checked at its end).
  double max_bad_fraction = 0.1;
  // Validation (early stopping): files evaluated at each epoch end, or, when none are given,
  // the training rows whose row hash falls in [0, valid_fraction) (held out: never trained
  // on; see HoldOut in worker/job/job.h). valid_fraction 0: no held-out rows.
  std::vector<std::string> valid;  // paths or globs; may be empty
  double valid_fraction = 0.0;     // in [0, 1)
  NegativesConfig negatives;
};

// The fields of each side of a recall model (model.sides): csv column names, libffm field
// ids, criteo column names I1..I13, C1..C26. Empty: no sides. See common/model/sides.h.
struct SidesConfig {
  std::vector<std::string> user;
  std::vector<std::string> item;  // the first one is the item id (negatives, embed, recall)
};

struct ModelConfig {
  int k = 8;  // 1..1024
  Loss loss = Loss::kLogistic;
  float init_std = 0.01f;       // >= 0
  float l2_w = 0.0f;            // >= 0
  float l2_v = 0.0f;            // >= 0
  std::uint32_t min_count = 0;  // embeddings only for keys seen >= min_count times
  // Field-aware FM: kind ffm needs `fields` (the number of fields F, 1..kMaxFields; every
  // field id of the data must be below it) and a format with fields (not libsvm).
  ModelKind kind = ModelKind::kFm;
  int fields = 0;  // ffm only
  SidesConfig sides;
};

struct OptimizerConfig {
  OptimizerName name = OptimizerName::kAdagrad;
  float lr = 0.1f;         // > 0; FTRL's alpha (default measured in the quality suite)
  float beta1 = 0.9f;      // adam, [0,1)
  float beta2 = 0.999f;    // adam, [0,1)
  float eps = 1e-8f;       // adagrad/adam, > 0
  float l1 = 0.0f;         // ftrl only, >= 0
  float ftrl_beta = 1.0f;  // ftrl only, >= 0
  // >= 0; when > 0 the servers clamp every gradient element to [-clip, clip] before the
  // optimizer update (any optimizer); 0 = off
  float clip_gradient = 0.0f;
  // kKeyMean: a worker pushes, per key, the mean of the gradients of the batch's occurrences
  // of the key (the sum divided by its count; the bias: by the rows); kSum: the sum over the
  // batch's rows; kKeySqrt: the sum divided by the square root of the count (between the
  // two); kAuto: kKeySqrt for adagrad, kKeyMean for the others (EffectiveGradient)
  GradientScale gradient = GradientScale::kAuto;
  float initial_accumulator = 0.001f;  // adagrad only, >= 0: the sum of squares starts here
  // adagrad only: one accumulator per latent vector of k floats (the mean of its squared
  // gradients) instead of one per float; w keeps its own (server/store/optimizer.h)
  bool rowwise = false;
};

// The scaling workers apply: `gradient`, with kAuto resolved to kKeySqrt for adagrad (its
// step divides by the key's own gradient history, so the scale only weighs a batch holding
// the key c times against one holding it once: sqrt(c), between key_mean's 1 and the c of
// per-row updates) and to kKeyMean for sgd, ftrl and adam (sgd diverges with key_sqrt on
// keys in every row at batch >= 32: the bias would take sqrt(batch) row steps).
inline GradientScale EffectiveGradient(const OptimizerConfig& o) {
  if (o.gradient != GradientScale::kAuto) return o.gradient;
  return o.name == OptimizerName::kAdagrad ? GradientScale::kKeySqrt : GradientScale::kKeyMean;
}

// train.early_stop: judged on the validation rows (data.valid / data.valid_fraction) at each
// epoch end; the model written is the best epoch's. metric none: off.
struct EarlyStopConfig {
  EarlyStopMetric metric = EarlyStopMetric::kNone;  // auto: auc (logistic) or rmse (squared)
  int patience = 3;        // >= 1: epochs without an improvement before training stops
  double min_delta = 0.0;  // >= 0: the least change that counts as an improvement
};

struct TrainConfig {
  int epochs = 1;       // >= 1
  int batch_size = 32;  // >= 1 (default: see README "Model quality")
  Consistency consistency = Consistency::kAsync;
  int max_delay = 4;  // >= 1; async only
  std::uint64_t seed = 0;
  double progress_seconds = 5.0;  // > 0; interval of progress lines and metrics events
  std::string init_model;         // warm start from this model.fmps ("" = none)
  EarlyStopConfig early_stop;
};

struct ClusterConfig {
  int servers = 1;        // >= 1; server ranks under mpirun
  int local_servers = 1;  // >= 1; single-node mode server threads
  int local_workers = 2;  // >= 1; single-node mode worker threads
  // > 0; longest a rank waits for a reply before failing the job (a peer is presumed dead)
  double timeout_seconds = 600;
};

struct CheckpointConfig {
  std::string dir;             // empty = no checkpoints
  double every_seconds = 300;  // > 0
  int keep = 2;                // 1..1000: newest complete checkpoints kept
};

struct OutputConfig {
  std::string dir;  // default: runs/<config file name without extension>
};

struct Config {
  DataConfig data;
  ModelConfig model;
  OptimizerConfig optimizer;
  TrainConfig train;
  ClusterConfig cluster;
  CheckpointConfig checkpoint;
  OutputConfig output;
};

// Loads `path`, applies `overrides` ("a.b=value", value parsed as a YAML scalar or flow
// sequence such as "[x, y]") in order, validates, and returns the typed config.
// Throws ConfigError (bad key/value) or IoError (unreadable file).
//
// A key that the rest of the config would make ineffective is an error rather than silently
// ignored: data.csv unless data.format is csv; optimizer.beta1/beta2 unless adam, eps unless
// adagrad or adam, initial_accumulator unless adagrad, l1/ftrl_beta unless ftrl;
// train.max_delay unless async. Within csv
// roles, a column may be named only once. An override whose value is empty sets the empty
// string.
Config LoadConfig(const std::string& path, const std::vector<std::string>& overrides);

// LoadConfig for `fmps cv`, whose folds provide the validation rows: data.valid and
// data.valid_fraction must be absent (ConfigError naming them), and train.early_stop needs
// no other validation source.
Config LoadConfigForFolds(const std::string& path, const std::vector<std::string>& overrides);

// Same, from YAML text; `name` is used in messages and for the default output.dir.
Config ParseConfig(const std::string& yaml_text, const std::string& name,
                   const std::vector<std::string>& overrides);

// ParseConfig for a job whose caller supplies the validation rows (training from arrays with
// an eval set, TrainLocalFromSources): train.early_stop needs no data.valid or
// data.valid_fraction here; the job refuses it without validation rows.
Config ParseConfigForArrays(const std::string& yaml_text, const std::string& name,
                            const std::vector<std::string>& overrides);

// The complete effective config as YAML (every key that applies, defaults included, block
// style with lists in flow style). Keys that do not apply are left out so that the text
// re-parses under the rules above: optimizer hyper-parameters the chosen optimizer does not
// use, max_delay under bsp, the csv block unless the format is csv, and checkpoint.every_seconds
// and keep without a checkpoint.dir. Hence for every config produced by ParseConfig (where such
// fields always hold their defaults), ParseConfig of the result gives back an equal config.
// Reals are written in their shortest exact form.
std::string ConfigToYaml(const Config& config);

// A 16-hex-digit hash of the settings a checkpoint depends on (the table's digest fields
// that apply: data files, format and csv roles, model, optimizer, batch size, consistency,
// max_delay, seed). Resuming is refused when it differs; cluster sizes, epochs, test files,
// outputs and checkpoint settings may change between runs.
std::string ConfigDigest(const Config& config);

// The data settings that decide what a feature key means (format, hash_bits, csv roles), as
// YAML; two configs' keys mean the same iff these texts are equal.
std::string KeySettings(const DataConfig& data);

// Every config key with its type, allowed values, default, when it applies and its meaning,
// one key per two lines (`fmps check --explain`).
std::string ExplainConfig();

// Parses just the `data:` section (as written by ConfigToYaml) into a DataConfig; used to
// restore the feature pipeline stored in a model file. Same rules as in a config, except
// that data.train may be empty (the pipeline does not need the training files). Throws
// ConfigError.
DataConfig ParseDataSection(const std::string& yaml_text);
// The `data:` section alone as YAML ("data:" and the keys under it, as in ConfigToYaml).
std::string DataSectionToYaml(const DataConfig& data);

// Names used in YAML for the enums (e.g. "libsvm", "adagrad").
const char* ToString(DataFormat v);
const char* ToString(NumericTransform v);
const char* ToString(OnError v);
const char* ToString(Loss v);
const char* ToString(OptimizerName v);
const char* ToString(Consistency v);
const char* ToString(Normalize v);
const char* ToString(GradientScale v);
const char* ToString(EarlyStopMetric v);
const char* ToString(ModelKind v);
const char* ToString(NegativeDistribution v);

// Expands paths and globs (glob(3)); each pattern must match at least one regular file.
// Result keeps pattern order, matches of one glob sorted. `key` names the config key in
// errors ("data.train: no file matches 'x*.txt'"). Throws ConfigError.
std::vector<std::string> ExpandPaths(const std::vector<std::string>& patterns,
                                     const std::string& key);

}  // namespace fmps
