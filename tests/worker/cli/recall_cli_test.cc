// Recall models through the binary: config checks of model.sides / data.csv.multi /
// data.negatives, then train with sampled negatives -> fmps embed -> fmps recall (exact and
// Faiss, exclusion, metrics, determinism) on planted two-group interactions.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/util/test_util.h"
#include "tests/worker/cli/recall_fixture.h"

namespace fmps {
namespace {

using testing::Fmps;
using testing::FmpsBinary;
using testing::JsonNumber;
using testing::Lines;
using testing::Planted;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;

constexpr const char* kCsvSides =
    "data:\n  train: t.csv\n  format: csv\n  normalize: none\n  csv:\n    label: y\n"
    "    categorical: [u, i, g]\n";

std::string CheckError(const TempDir& dir, const std::string& yaml) {
  const std::string cfg = dir.Write("c.yaml", yaml);
  std::string out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " check " + cfg, &out), 2) << yaml << out;
  return out;
}

TEST(RecallCliTest, ConfigChecksSidesMultiAndNegatives) {
  TempDir dir;
  const std::string base = kCsvSides;
  EXPECT_NE(CheckError(dir, base + "model:\n  sides: {user: [u], item: [i]}\n")
                .find("model.sides: field 'g' is on no side"),
            std::string::npos);
  EXPECT_NE(CheckError(dir, base + "model:\n  sides: {user: [u, g], item: [i, g]}\n")
                .find("model.sides.item: field 'g' is on a side already"),
            std::string::npos);
  EXPECT_NE(CheckError(dir, base + "model:\n  sides: {user: [u, x], item: [i, g]}\n")
                .find("model.sides.user: 'x' is not a field"),
            std::string::npos);
  EXPECT_NE(CheckError(dir,
                       "data: {train: t, format: libsvm}\nmodel:\n  sides: {user: [1], "
                       "item: [2]}\n")
                .find("model.sides: data.format libsvm has no fields"),
            std::string::npos);
  EXPECT_NE(CheckError(dir, base + "    ignore: [h]\n    multi: [h]\n")
                .find("data.csv.multi: column 'h' is not in data.csv.categorical"),
            std::string::npos);
  EXPECT_NE(CheckError(dir, base + "  negatives: {per_positive: 2, items: c.csv}\n")
                .find("data.negatives: needs model.sides"),
            std::string::npos);
  EXPECT_NE(CheckError(dir, base + "  negatives: {per_positive: 2}\nmodel:\n  sides: {user: [u], "
                                   "item: [i, g]}\n")
                .find("data.negatives.per_positive: 2 requires data.negatives.items"),
            std::string::npos);
  const std::string good = dir.Write(
      "ok.yaml", base +
                     "    multi: [g]\n  negatives: {per_positive: 2, items: c.csv, "
                     "distribution: popularity, exponent: 0.5}\nmodel:\n  sides: {user: [u], "
                     "item: [i, g]}\n");
  std::string out;
  EXPECT_EQ(RunCommand(FmpsBinary() + " check " + good, &out), 0) << out;
  EXPECT_NE(out.find("exponent: 0.5"), std::string::npos) << out;
}

TEST(RecallCliTest, TrainEmbedRecallOnPlantedGroups) {
  Planted p;
  Fmps("train " + p.config);
  // embed: one line per item, id and k + 1 numbers; npy of the same shape plus the ids.
  Fmps("embed --model " + p.Model() + " --side item --data " + p.items + " --out " +
       p.dir.File("items.txt"));
  const std::vector<std::string> lines = Lines(ReadFile(p.dir.File("items.txt")));
  ASSERT_EQ(lines.size(), 60u);
  std::istringstream first(lines[0]);
  std::string id;
  double x;
  int numbers = 0;
  first >> id;
  while (first >> x) ++numbers;
  EXPECT_EQ(id, "0");
  EXPECT_EQ(numbers, 5);
  Fmps("embed --model " + p.Model() + " --side user --data " + p.users + " --format npy --out " +
       p.dir.File("users.npy"));
  const std::string npy = ReadFile(p.dir.File("users.npy"));
  EXPECT_EQ(npy.substr(1, 5), "NUMPY");
  EXPECT_NE(npy.find("'shape': (40, 5)"), std::string::npos);
  EXPECT_EQ(npy.size() % 64, (40u * 5 * 4) % 64);
  EXPECT_EQ(Lines(ReadFile(p.dir.File("users.npy.ids"))).size(), 40u);
  // recall, excluding the training items, with metrics against the held-out items.
  const std::string common = "recall --model " + p.Model() + " --users " + p.users + " --items " +
                             p.items + " --exclude " + p.train + " --k 10 --truth " + p.test;
  const std::string json = Fmps(common + " --threads 2 --out " + p.dir.File("recs.txt"));
  EXPECT_GT(JsonNumber(json, "hit_rate@10"), 0.3) << json;  // random: about 0.19
  EXPECT_FALSE(std::isnan(JsonNumber(json, "ndcg@10"))) << json;
  const std::string recs = ReadFile(p.dir.File("recs.txt"));
  const std::string train_text = ReadFile(p.train);
  std::size_t in_group = 0, total = 0;
  for (const std::string& line : Lines(recs)) {
    std::istringstream in(line);
    std::string user, entry;
    in >> user;
    const int group = std::stoi(user.substr(4)) % 2;
    double last = 1e30;
    while (in >> entry) {
      const std::string item = entry.substr(0, entry.find(':'));
      const double score = std::stod(entry.substr(entry.find(':') + 1));
      EXPECT_LE(score, last);
      last = score;
      EXPECT_EQ(train_text.find(user + "," + item + ","), std::string::npos) << "excluded " << line;
      in_group += (std::stoi(item) / 30 == group) ? 1 : 0;
      ++total;
    }
  }
  EXPECT_EQ(total, 400u);
  EXPECT_GT(in_group, total * 8 / 10) << recs;
  // Deterministic whatever the threads; Faiss's flat index gives the same lists.
  Fmps(common + " --threads 1 --out " + p.dir.File("recs1.txt"));
  EXPECT_EQ(ReadFile(p.dir.File("recs1.txt")), recs);
  const std::string fjson =
      Fmps(common + " --index faiss:Flat --threads 1 --out " + p.dir.File("flat.txt"));
  EXPECT_EQ(JsonNumber(fjson, "overlap@10"), 1.0) << fjson;
  Fmps(common + " --index faiss:IVF4,Flat?nprobe=4 --out " + p.dir.File("ivf.txt"));
  EXPECT_NE(Fmps(common + " --index faiss:Nope --out " + p.dir.File("x.txt"), 2).find("--index"),
            std::string::npos);
}

}  // namespace
}  // namespace fmps
