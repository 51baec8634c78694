// Planted two-group interactions for the recall tests that run the binary
// (recall_cli_test.cc, recall_mpi_test.cc).
#pragma once

#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "tests/util/test_util.h"

namespace fmps::testing {

// Users 0..39 in two groups; items 0..29 (genre x|z) belong to group 0, 30..59 (genre y|z) to
// group 1. Each user has 8 training items and one held-out item of its group.
struct Planted {
  TempDir dir;
  std::string train, test, items, users, config;
  Planted() {
    std::ostringstream tr, te, it, us;
    tr << "u,i,g,y\n";
    te << "u,i\n";
    it << "i,g\n";
    us << "u\n";
    for (int i = 0; i < 60; ++i) it << i << "," << (i < 30 ? "x|z" : "y|z") << "\n";
    for (int u = 0; u < 40; ++u) {
      const int group = u % 2;
      us << "user" << u << "\n";
      for (int j = 0; j < 9; ++j) {
        const int item = group * 30 + (u * 7 + j * 11) % 30;
        (j < 8 ? tr : te) << "user" << u << "," << item << (j < 8 ? std::string(",") : "")
                          << (j < 8 ? (group == 0 ? "x|z,1" : "y|z,1") : "") << "\n";
      }
    }
    train = dir.Write("train.csv", tr.str());
    test = dir.Write("test.csv", te.str());
    items = dir.Write("items.csv", it.str());
    users = dir.Write("users.csv", us.str());
    config = dir.Write(
        "recall.yaml",
        "data:\n  train: " + train +
            "\n  format: csv\n  normalize: none\n  csv:\n    label: y\n    categorical: [u, i, g]\n"
            "    multi: [g]\n  negatives:\n    per_positive: 4\n    items: " +
            items +
            "\n    distribution: popularity\n    seed: 3\nmodel:\n  k: 4\n  sides:\n"
            "    user: [u]\n    item: [i, g]\noptimizer: {name: adagrad, lr: 0.1}\n"
            "train: {epochs: 30, batch_size: 32, consistency: bsp, seed: 1}\n"
            "cluster: {local_workers: 2}\noutput:\n  dir: " +
            dir.File("run") + "\n");
  }
  std::string Model() const { return dir.File("run/model.fmps"); }
};

// Runs `fmps ARGS`, expecting exit status `expect`; returns stdout and stderr.
inline std::string Fmps(const std::string& args, int expect = 0) {
  std::string out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " " + args, &out), expect) << args << "\n" << out;
  return out;
}

}  // namespace fmps::testing
