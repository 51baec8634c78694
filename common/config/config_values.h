// Reading one config value of a table field's kind (internal to common/config).
#pragma once

#include <string>

#include "common/config/config_table.h"
#include "common/config/yaml_source.h"

namespace fmps {

// Reads the value of `e` into the member of `config` that `field` designates, checking its
// type and allowed values. Errors name the key and the value's location: "<where>: model.k:
// expected an integer in 1..1024, got 'eight'". Throws ConfigError.
void ReadFieldValue(const Context& ctx, const Entry& e, const ConfigField& field, Config* config);

// What a value of `field` is, for "data.format is required (one of libsvm, ...)": "a path
// or glob, or a list of them", "one of ...", or the text field's description.
std::string ExpectedText(const ConfigField& field);

}  // namespace fmps
