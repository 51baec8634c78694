// The config field table: one entry per key of a Config, the single description that parsing,
// validation, the effective-config dump (ConfigToYaml), the checkpoint digest (ConfigDigest),
// the key settings (KeySettings) and `fmps check --explain` are driven by.
//
// Defaults are not repeated here: they are the member initialisers of the structs in
// config.h, read through each entry's accessor from a default-constructed Config.
//
// Sections are implied by the dotted keys ("data.csv.label" lies in data, then data.csv); the
// order of the table is the order of the dump and of reading, so a key that decides whether
// others apply (optimizer.name, data.format, ...) comes before them.
//
// Thread safety: the table is immutable after its first use (a function-local static);
// every function here may be called concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "common/config/config.h"

namespace fmps {

// An accessor to one member of a Config (a captureless lambda). Readers of a const Config call
// it through a const_cast and only read.
template <typename T>
using Member = T& (*)(Config&);

// When a key has an effect. Giving a key while its condition is false is an error; such a key
// is left out of the dump, the digest and the key settings. A sub-section whose keys all share
// one condition (data.csv) is checked as a whole.
struct Condition {
  const char* text;              // e.g. "to optimizer.name: adam"
  bool (*holds)(const Config&);  // whether the key applies to this config
  const char* controlling_key;   // key whose value decides, e.g. "optimizer.name"
  const char* reason = nullptr;  // fixed reason for errors; else "<controlling_key> is <v>"
};

// Allowed interval of a real-valued key; values must also be finite.
struct RealRange {
  double lo;
  bool lo_inclusive;
  double hi;  // +inf: unbounded
  bool hi_inclusive;
  const char* text;  // e.g. ">= 0", "in [0, 1)"
};

// The kinds of values, each with its accessor and allowed values.
template <typename T>
struct IntField {  // int or uint32: an integer in lo..hi
  Member<T> member;
  std::int64_t lo;
  std::int64_t hi;
};
struct Uint64Field {  // any 64-bit unsigned integer
  Member<std::uint64_t> member;
};
template <typename T>
struct RealField {  // float or double, finite and in `range`
  Member<T> member;
  RealRange range;
};
struct TextField {
  Member<std::string> member;
  const char* what;         // what the value is, for messages ("a directory path")
  const char* empty_error;  // message when "" is given, or nullptr when "" is allowed
};
struct ListField {  // one string or a list of them, each non-empty
  Member<std::vector<std::string>> member;
  const char* what;  // what one element is ("path or glob")
};
struct CharField {  // exactly one character other than a line break
  Member<char> member;
};
struct BoolField {  // true or false
  Member<bool> member;
};
template <typename E>
struct EnumField {  // one of EnumNames<E>()
  Member<E> member;
};

using FieldKind =
    std::variant<IntField<int>, IntField<std::uint32_t>, Uint64Field, RealField<float>,
                 RealField<double>, TextField, ListField, CharField, BoolField,
                 EnumField<DataFormat>, EnumField<NumericTransform>, EnumField<OnError>,
                 EnumField<Loss>, EnumField<OptimizerName>, EnumField<Consistency>,
                 EnumField<Normalize>, EnumField<GradientScale>, EnumField<EarlyStopMetric>,
                 EnumField<ModelKind>, EnumField<NegativeDistribution>>;

enum class Presence {
  kOptional,
  kRequired,         // always (when it applies)
  kRequiredToTrain,  // in a config, but not in a model file's data section
};

struct ConfigField {
  const char* key;  // dotted, e.g. "optimizer.beta1"
  FieldKind kind;
  const char* meaning;                 // one line, for --explain
  const Condition* applies = nullptr;  // nullptr: always applies
  Presence presence = Presence::kOptional;
  bool digest = false;  // a checkpoint depends on it: resuming with another value fails
  // With digest: the key enters the digest only when its value is not the default, so that
  // checkpoints written before the key existed (with its default behaviour) still resume.
  bool digest_unless_default = false;
  bool key_setting = false;            // decides what a feature key means (see KeySettings)
  const char* default_text = nullptr;  // shown by --explain instead of the struct default
};

// The table, in dump order. Every member of Config is reached by exactly one entry.
std::span<const ConfigField> ConfigFields();

// The entry of a dotted key, or nullptr.
const ConfigField* FindConfigField(std::string_view key);

// Whether `field` applies to `config` (its condition holds, or it has none).
bool FieldApplies(const ConfigField& field, const Config& config);

// The field's value as YAML text as the dump writes it ("8", "0.05", "[a, b]", "\",\"").
std::string FieldValueText(const ConfigField& field, const Config& config);

// The checks across keys that the table's conditions cannot express: the validation keys
// (data.valid, data.valid_fraction) and train.early_stop. Throws ConfigError naming the key.
// kFolds: cross-validation folds provide the validation rows (LoadConfigForFolds); kCaller:
// the caller gives the job its validation rows (an in-memory eval set, ParseConfigForArrays).
enum class ValidationSource { kConfig, kFolds, kCaller };
void CheckValidationKeys(const Config& config, ValidationSource source = ValidationSource::kConfig);

// The YAML names of an enum's values, indexed by the value ("libsvm", "libffm", ...).
namespace enum_names {
inline constexpr std::string_view kDataFormat[] = {"libsvm", "libffm", "criteo", "csv"};
inline constexpr std::string_view kTransform[] = {"standardize", "log_bucket", "none"};
inline constexpr std::string_view kOnError[] = {"skip", "fail"};
inline constexpr std::string_view kLoss[] = {"logistic", "squared"};
inline constexpr std::string_view kOptimizer[] = {"sgd", "adagrad", "adam", "ftrl"};
inline constexpr std::string_view kConsistency[] = {"async", "bsp"};
inline constexpr std::string_view kNormalize[] = {"none", "instance"};
inline constexpr std::string_view kGradientScale[] = {"sum", "key_mean", "key_sqrt", "auto"};
inline constexpr std::string_view kEarlyStopMetric[] = {"none", "auto", "auc", "logloss", "rmse"};
inline constexpr std::string_view kModelKind[] = {"fm", "ffm"};
inline constexpr std::string_view kNegativeDistribution[] = {"uniform", "popularity"};
}  // namespace enum_names

template <typename E>
std::span<const std::string_view> EnumNames() {
  using namespace enum_names;  // NOLINT(google-build-using-namespace): the table above
  if constexpr (std::is_same_v<E, DataFormat>) return kDataFormat;
  if constexpr (std::is_same_v<E, NumericTransform>) return kTransform;
  if constexpr (std::is_same_v<E, OnError>) return kOnError;
  if constexpr (std::is_same_v<E, Loss>) return kLoss;
  if constexpr (std::is_same_v<E, OptimizerName>) return kOptimizer;
  if constexpr (std::is_same_v<E, Consistency>) return kConsistency;
  if constexpr (std::is_same_v<E, Normalize>) return kNormalize;
  if constexpr (std::is_same_v<E, GradientScale>) return kGradientScale;
  if constexpr (std::is_same_v<E, EarlyStopMetric>) return kEarlyStopMetric;
  if constexpr (std::is_same_v<E, ModelKind>) return kModelKind;
  if constexpr (std::is_same_v<E, NegativeDistribution>) return kNegativeDistribution;
}

}  // namespace fmps
