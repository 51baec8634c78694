// Parallel, streaming scoring of a data file with a loaded model (`fmps predict`, `fmps eval`).
//
// Pipeline: one reader thread parses the file in order into blocks of `block_rows` rows, each
// tagged with its sequence number; `threads` scorer threads score the blocks with
// Model::Score (each with its own scratch) and, if options.format is set, turn the scores
// into text; the calling thread passes the blocks to the sink strictly in input order.
// Blocks circulate through a fixed pool of 2 * threads + 2 slots, which bounds both the
// queue and the reorder buffer: memory is O(threads * block_rows), never O(file).
// With threads == 1 everything runs on the calling thread, in the same order.
//
// Errors: the first exception of any thread (IoError, DataError from a bad row under
// on_error: fail, one thrown by format or by the sink) stops the pipeline; every thread is
// joined and ScoreFile rethrows it. The sink is not called again after a failure, but blocks
// before the failing one may already have been passed to it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "common/data/reader.h"
#include "common/model/model_file.h"

namespace fmps {

// std::thread::hardware_concurrency(), at least 1.
int DefaultScoringThreads();

struct ScoringOptions {
  int threads = 1;                // scorer threads (>= 1); 1 = all on the calling thread
  std::size_t block_rows = 8192;  // rows per block (>= 1)
  // Optional. Called on scorer threads, concurrently and in any order, once per block:
  // appends the block's text (e.g. one prediction per line) to *text, which starts empty.
  // Must be thread-safe.
  std::function<void(std::span<const float> scores, std::string* text)> format;
};

// One block of consecutive rows, as passed to the sink. Valid only during the call.
struct ScoredRows {
  std::span<const float> scores;  // raw FM scores, one per row
  std::span<const float> labels;  // the rows' labels
  std::string_view text;          // options.format's output ("" without format)
};

struct ScoringStats {
  std::uint64_t rows = 0;  // good rows scored
  BadRowStats bad_rows;    // rows skipped under on_error: skip
};

// Scores every row of `data` (read with `spec`) with `model`, calling sink(block) on the
// calling thread for consecutive blocks, in input order. Throws ConfigError for bad options,
// and as described above.
ScoringStats ScoreFile(const Model& model, const FeatureSpec& spec, const std::string& data,
                       const ScoringOptions& options,
                       const std::function<void(const ScoredRows& rows)>& sink);

// Convenience form: raw scores and labels only.
ScoringStats ScoreFile(const Model& model, const FeatureSpec& spec, const std::string& data,
                       int threads,
                       const std::function<void(std::span<const float> scores,
                                                std::span<const float> labels)>& sink_in_order);

}  // namespace fmps
