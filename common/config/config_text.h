// Text helpers shared by the config reader, the dump and --explain (internal to
// common/config). All are pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace fmps {

// Names of keys or enum values (views of string literals or of the table's keys).
using KeyList = std::span<const std::string_view>;

// "a, b, c".
std::string JoinNames(KeyList names);

// `s` in single quotes with tab, newline and carriage return made visible.
std::string Quote(std::string_view s);

// The candidate nearest to `word` (edit distance ignoring case, adjacent transpositions
// counted once) when reasonably close (about a third of the letters changed at most, and
// not everything), else "".
std::string Nearest(std::string_view word, KeyList candidates);

// ">= lo" when hi is INT_MAX, else "in lo..hi".
std::string IntRangeText(std::int64_t lo, std::int64_t hi);

// Shortest text that reads back to the same value, with a '.' before any exponent so that
// YAML 1.1 readers see a number too; ".nan", ".inf", "-.inf" for the non-finite values.
std::string FormatReal(float v);
std::string FormatReal(double v);

}  // namespace fmps
