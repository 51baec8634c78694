// fmps._core: the compiled half of the Python package (python/fmps/*.py is the other).
//
// It exposes the engine itself, not a re-implementation: configs are parsed and validated
// by ParseConfig (the one field table, the same messages), training runs TrainLocal /
// TrainLocalFromSources (the in-process single-node job), scoring runs Model::Score (the
// kernel of `fmps predict`).
//
// Arrays are borrowed: a CSR matrix arrives as its three NumPy arrays (indptr, indices,
// data; int32/int64 and float32/float64 as SciPy made them) and is read in place by
// ArrayRowSource, one minibatch at a time. The GIL is released while training or scoring;
// while a job runs, the calling thread wakes every kPollMs to run Python's signal handlers,
// and a KeyboardInterrupt stops the job through RequestStop (worker/job/interrupt.h) at its
// next batch, before any model is written.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/base/error.h"
#include "common/config/config.h"
#include "common/data/array_source.h"
#include "common/model/embedding.h"
#include "common/model/model_file.h"
#include "worker/job/interrupt.h"
#include "worker/job/local_trainer.h"

namespace py = pybind11;

namespace fmps {
namespace {

constexpr int kPollMs = 100;              // how often a waiting call checks for Ctrl-C
constexpr std::size_t kScoreRows = 8192;  // rows per scoring block, as `fmps predict`

// A CSR matrix handed over from Python. Holding the py::arrays keeps them alive.
struct PyCsr {
  py::array indptr, indices, data;
  std::size_t rows = 0, cols = 0;
  CsrArrays View(const float* labels, const std::uint32_t* fields) const;
};

CsrArrays PyCsr::View(const float* labels, const std::uint32_t* fields) const {
  CsrArrays a;
  const auto is = [](const py::array& x, char kind, py::ssize_t size) {
    return x.dtype().kind() == kind && x.itemsize() == size &&
           (x.flags() & py::array::c_style) != 0 && x.ndim() == 1;
  };
  const bool i64 = is(indptr, 'i', 8) && is(indices, 'i', 8);
  if (!i64 && !(is(indptr, 'i', 4) && is(indices, 'i', 4))) {
    throw ConfigError("CSR indptr and indices must both be contiguous int32 or int64 arrays");
  }
  if (!is(data, 'f', 4) && !is(data, 'f', 8)) {
    throw ConfigError("CSR data must be a contiguous float32 or float64 array");
  }
  if (static_cast<std::size_t>(indptr.size()) != rows + 1) {
    throw ConfigError("CSR indptr must hold rows + 1 entries");
  }
  a.indptr = indptr.data();
  a.indices = indices.data();
  a.data = data.data();
  a.index = i64 ? CsrArrays::Index::kInt64 : CsrArrays::Index::kInt32;
  a.value = data.itemsize() == 8 ? CsrArrays::Value::kFloat64 : CsrArrays::Value::kFloat32;
  a.rows = rows;
  a.cols = cols;
  a.labels = labels;
  a.fields = fields;
  return a;
}

PyCsr ToCsr(const py::tuple& t) {
  if (t.size() != 5) throw ConfigError("a CSR matrix is (indptr, indices, data, rows, cols)");
  return {t[0].cast<py::array>(), t[1].cast<py::array>(), t[2].cast<py::array>(),
          t[3].cast<std::size_t>(), t[4].cast<std::size_t>()};
}

// Runs `job` on its own thread with the GIL released; meanwhile the calling (Python) thread
// runs the signal handlers every kPollMs. On KeyboardInterrupt (or any exception a handler
// raises) the job is asked to stop like on SIGINT and that exception is re-raised once the
// job has ended.
void RunInterruptible(const std::function<void()>& job) {
  ClearStop();
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    std::future<void> done = std::async(std::launch::async, job);
    while (done.wait_for(std::chrono::milliseconds(kPollMs)) != std::future_status::ready) {
      py::gil_scoped_acquire acquire;
      if (!interrupted && PyErr_CheckSignals() != 0) {
        PyErr_Clear();
        interrupted = true;
        RequestStop(SIGINT);
      }
    }
    ClearStop();
    if (!interrupted) {
      done.get();  // rethrows the job's error
      return;
    }
    try {
      done.get();
    } catch (const Interrupted&) {  // the expected end of a stopped job
    }
  }
  PyErr_SetNone(PyExc_KeyboardInterrupt);
  throw py::error_already_set();
}

Config ParseWith(const std::string& yaml, const std::string& name,
                 const std::vector<std::string>& overrides) {
  return ParseConfig(yaml, name, overrides);
}

// The effective config (every default filled in) of `yaml` with `overrides`, as YAML.
std::string CheckConfig(const std::string& yaml, const std::string& name,
                        const std::vector<std::string>& overrides) {
  return ConfigToYaml(ParseWith(yaml, name, overrides));
}

// `fmps train CONFIG.yaml --set ...` in single-node mode, from the file `path` or, when
// `yaml` is not empty, from that text (named `path` in messages); returns output.dir.
std::string TrainFromConfig(const std::string& path, const std::string& yaml,
                            const std::vector<std::string>& overrides) {
  const Config config =
      yaml.empty() ? LoadConfig(path, overrides) : ParseWith(yaml, path, overrides);
  RunInterruptible([&] { TrainLocal(config); });
  return config.output.dir;
}

// Borrowed per-sample arrays of a training or test set.
struct PySet {
  PyCsr x;
  py::array_t<float, py::array::c_style> labels;
};

PySet ToSet(const py::tuple& csr, const py::array_t<float, py::array::c_style>& labels) {
  PySet s{ToCsr(csr), labels};
  if (static_cast<std::size_t>(labels.size()) != s.x.rows) {
    throw ConfigError("y must hold one label per row of X");
  }
  return s;
}

// A run's in-memory outputs for Python: (model bytes, summary JSON text, [event JSON text]).
py::tuple ToPython(const MemoryRunOutput& run) {
  py::list events;
  for (const std::string& e : run.events) events.append(py::str(e));
  return py::make_tuple(py::bytes(run.model), py::str(run.summary_json), events);
}

// The training job over arrays: `train` (and `test`, when given: evaluated at every epoch
// end) split into cluster.local_workers row ranges. Writes no file (output.dir is unused):
// returns (model.fmps bytes, summary.json text, metrics.jsonl events as JSON texts).
py::tuple TrainArrays(const std::string& yaml, const std::vector<std::string>& overrides,
                      const py::tuple& train_x,
                      const py::array_t<float, py::array::c_style>& train_y,
                      const py::object& test_x, const py::object& test_y,
                      const py::object& fields) {
  const Config config = ParseConfigForArrays(yaml, "estimator", overrides);
  const PySet train = ToSet(train_x, train_y);
  std::optional<PySet> test;
  if (!test_x.is_none()) {
    test = ToSet(test_x.cast<py::tuple>(), test_y.cast<py::array_t<float, py::array::c_style>>());
  }
  py::array_t<std::uint32_t, py::array::c_style> field_ids;
  if (!fields.is_none()) field_ids = fields.cast<py::array_t<std::uint32_t, py::array::c_style>>();
  const std::uint32_t* f = fields.is_none() ? nullptr : field_ids.data();
  MemorySources sources;
  sources.spec.data = config.data;
  sources.spec.loss = config.model.loss;
  std::vector<std::unique_ptr<ArrayRowSource>> owned;
  const int workers = config.cluster.local_workers;
  for (int w = 0; w < workers; ++w) {
    owned.push_back(std::make_unique<ArrayRowSource>(train.x.View(train.labels.data(), f),
                                                     ArrayShard(train.x.rows, w, workers),
                                                     config.data.normalize));
    sources.train.push_back(owned.back().get());
    if (!test) continue;
    owned.push_back(std::make_unique<ArrayRowSource>(test->x.View(test->labels.data(), f),
                                                     ArrayShard(test->x.rows, w, workers),
                                                     config.data.normalize));
    sources.test.push_back(owned.back().get());
    // Early stopping judges the eval set: the same source, scored once per epoch.
    if (config.train.early_stop.metric != EarlyStopMetric::kNone) {
      sources.valid.push_back(owned.back().get());
    }
  }
  MemoryRunOutput run;
  RunInterruptible([&] { TrainLocalFromSources(config, sources, {.memory = &run}); });
  return ToPython(run);
}

// Raw scores of every row of `x` under `model` on `threads` threads (GIL released).
py::array_t<float> Scores(const Model& model, const py::tuple& x_csr, const py::object& fields,
                          int threads) {
  const PyCsr x = ToCsr(x_csr);
  py::array_t<std::uint32_t, py::array::c_style> field_ids;
  if (!fields.is_none()) field_ids = fields.cast<py::array_t<std::uint32_t, py::array::c_style>>();
  const CsrArrays arrays = x.View(nullptr, fields.is_none() ? nullptr : field_ids.data());
  py::array_t<float> out(static_cast<py::ssize_t>(x.rows));
  float* scores = out.mutable_data();
  const Normalize normalize = model.meta().features.data.normalize;
  const int n = std::max(1, threads);
  {
    py::gil_scoped_release release;
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n));
    for (int t = 0; t < n; ++t) {
      pool.emplace_back([&, t] {
        try {
          const ByteRange range = ArrayShard(x.rows, t, n);
          ArrayRowSource source(arrays, range, normalize);
          RowBlock block;
          std::vector<std::uint32_t> local;
          for (std::uint64_t row = range.begin;; row += block.rows()) {
            block.Clear();
            if (source.Read(kScoreRows, &block) == 0) break;
            model.Score(block, &local, scores + row);
          }
        } catch (...) {
          errors[static_cast<std::size_t>(t)] = std::current_exception();
        }
      });
    }
    for (auto& th : pool) th.join();
    for (const auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
  }
  return out;
}

// A key-major copy of the model's parameter rows: (num_keys, row_width) float32.
py::array_t<float> Table(const Model& m) {
  const auto width = static_cast<std::size_t>(m.shape().row_width());
  py::array_t<float> out({static_cast<py::ssize_t>(m.num_keys()), static_cast<py::ssize_t>(width)});
  float* dst = out.mutable_data();
  for (std::size_t i = 0; i < m.num_keys(); ++i) std::copy_n(m.row(i), width, dst + i * width);
  return out;
}

void RegisterErrors(py::module_& m) {
  static py::exception<Error> error(m, "FmpsError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ConfigError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const ModelError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const IoError& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const Error& e) {
      error(e.what());
    }
  });
}

// Recall models (model.sides): the augmented vectors of every row of `x` on `side` ("user"
// or "item"), rows x (k + 1) floats, and each row's own part (common/model/embedding.h).
py::tuple Embed(const Model& model, const py::tuple& x_csr, const std::string& side,
                const py::object& fields) {
  if (side != "user" && side != "item") {
    throw ConfigError("side: '" + side + "' is not a side (user or item)");
  }
  const SideMap sides = ModelSides(model, "model");
  const PyCsr x = ToCsr(x_csr);
  py::array_t<std::uint32_t, py::array::c_style> field_ids;
  if (!fields.is_none()) field_ids = fields.cast<py::array_t<std::uint32_t, py::array::c_style>>();
  const CsrArrays arrays = x.View(nullptr, fields.is_none() ? nullptr : field_ids.data());
  const auto rows = static_cast<py::ssize_t>(x.rows);
  py::array_t<float> vectors({rows, static_cast<py::ssize_t>(model.shape().k + 1)});
  py::array_t<float> own(rows);
  float* v = vectors.mutable_data();
  float* o = own.mutable_data();
  {
    py::gil_scoped_release release;
    ArrayRowSource source(arrays, ArrayShard(x.rows, 0, 1), model.meta().features.data.normalize);
    RowBlock block;
    EmbedScratch scratch;
    const std::size_t width = static_cast<std::size_t>(model.shape().k + 1);
    for (std::size_t row = 0;; row += block.rows()) {
      block.Clear();
      if (source.Read(kScoreRows, &block) == 0) break;
      EmbedSide(model, sides, block, side == "user" ? Side::kUser : Side::kItem, &scratch,
                v + row * width, o + row);
    }
  }
  return py::make_tuple(vectors, own);
}

void RegisterModel(py::module_& m) {
  py::class_<Model>(m, "Model")
      .def_static("load", &Model::Load, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def_static("from_bytes",
                  [](const py::bytes& b) {
                    const std::string bytes = b;
                    return Model::FromBytes(bytes, "model bytes");
                  })
      .def("scores", &Scores, py::arg("csr"), py::arg("fields") = py::none(),
           py::arg("threads") = 1)
      .def_property_readonly("bias", [](const Model& x) { return x.meta().bias; })
      .def_property_readonly("k", [](const Model& x) { return x.shape().k; })
      .def_property_readonly("kind",
                             [](const Model& x) { return static_cast<int>(x.shape().kind); })
      .def_property_readonly("loss",
                             [](const Model& x) { return std::string(ToString(x.meta().loss)); })
      .def_property_readonly("config_yaml", [](const Model& x) { return x.meta().config_yaml; })
      .def_property_readonly(
          "data_yaml", [](const Model& x) { return DataSectionToYaml(x.meta().features.data); })
      .def_property_readonly("keys",
                             [](const Model& x) {
                               return py::array_t<std::uint64_t>(
                                   static_cast<py::ssize_t>(x.num_keys()), x.keys().data());
                             })
      .def_property_readonly("table", &Table)
      .def("embed", &Embed, py::arg("csr"), py::arg("side"), py::arg("fields") = py::none());
}

}  // namespace
}  // namespace fmps

PYBIND11_MODULE(_core, m) {
  m.doc() = "fmps engine: config validation, single-node training, model scoring";
  fmps::RegisterErrors(m);
  fmps::RegisterModel(m);
  m.def("check_config", &fmps::CheckConfig, py::arg("yaml"), py::arg("name"), py::arg("overrides"));
  m.def("train_config", &fmps::TrainFromConfig, py::arg("path"), py::arg("yaml"),
        py::arg("overrides"));
  m.def("train_arrays", &fmps::TrainArrays, py::arg("yaml"), py::arg("overrides"),
        py::arg("train_x"), py::arg("train_y"), py::arg("test_x") = py::none(),
        py::arg("test_y") = py::none(), py::arg("fields") = py::none());
}
