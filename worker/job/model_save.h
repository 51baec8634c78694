// The model save at a job's end, split so that the test evaluation overlaps the write.
#pragma once

#include <cstdint>
#include <exception>
#include <optional>
#include <thread>
#include <vector>

#include "common/comm/control.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "common/model/model_file.h"
#include "worker/job/job.h"
#include "worker/job/run_output.h"

namespace fmps {

// What a model save needs: where the servers are, what the model is, where it goes.
struct ModelSaveRequest {
  ControlChannel* control = nullptr;  // the root's; no data request of it may be in flight
  int num_servers = 0;
  const Config* config = nullptr;     // borrowed, outlives the save
  const FeatureSpec* spec = nullptr;  // borrowed, outlives the save
  ModelTarget target;                 // the file, or bytes in memory
  DumpOf what = DumpOf::kStore;       // the servers' stores, or the best model they kept
};

// Saves the servers' model in two steps:
//  - the constructor dumps servers 0 .. num_servers-1 (DumpServers, on the calling thread,
//    through `control`) and starts a background thread that sorts the dumped rows by key,
//    streams them into the model file's temp file (ModelWriter, pieces of kSavePieceKeys
//    keys, each row copied once into the write buffer) and seals it (fsync);
//  - Finish() waits for that thread and only then publishes the file (rename into place),
//    so the model appears only if both the write and whatever the caller did meanwhile
//    succeeded.
// Between the two the servers and the transport are free: the caller may score the test
// set (its pulls only read the stores, which the dump has already copied).
// Failures: the constructor throws what the dump throws (nothing written). An error of the
// background write is rethrown by Finish (no model file). If Finish is never called (the
// caller's own step failed), the destructor waits for the thread and removes the temp file:
// no model file, partial or complete, appears.
// Thread safety: one owner thread calls the constructor, Finish and the destructor; the
// background thread touches only the dumped rows and the writer, both owned here.
// Memory: the dumped rows (the model's size once more) until Finish or destruction.
class ModelSave {
 public:
  explicit ModelSave(const ModelSaveRequest& request);
  ~ModelSave();
  ModelSave(const ModelSave&) = delete;
  ModelSave& operator=(const ModelSave&) = delete;

  // Waits for the write, rethrows its error, renames the file into place (in-memory target:
  // the bytes are complete). Call at most once.
  SavedModel Finish();

 private:
  struct Where {  // a dumped key: its chunk and row in it
    Key key;
    std::uint32_t chunk;
    std::uint32_t row;
  };
  const float* RowOf(const Where& w) const { return chunks_[w.chunk].data() + w.row * width_; }
  void Dump(const ModelSaveRequest& request);
  void Write();  // the background thread's work

  std::size_t width_ = 0;
  std::vector<std::vector<float>> chunks_;  // the dump's chunks as they arrived (no copy)
  std::vector<Where> keys_;
  SavedModel saved_;
  std::optional<ModelWriter> writer_;
  std::exception_ptr error_;  // of Write, read after the join
  std::thread thread_;
};

// A whole save on the calling thread: ModelSave(request).Finish().
SavedModel SaveModelFromServers(const ModelSaveRequest& request);

}  // namespace fmps
