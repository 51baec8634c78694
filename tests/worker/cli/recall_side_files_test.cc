// Recall models trained on libffm and criteo data, through the binary: fmps embed and fmps
// recall read side files (a row of the format with its label replaced by the row's id) and
// "user_id item_id" interaction files; the vectors plus the user's own part reproduce fmps
// predict on the joined rows, recall is the exact top-k of the vectors; malformed rows name
// file:line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/util/test_util.h"
#include "tests/worker/cli/recall_fixture.h"

namespace fmps::testing {
namespace {

using Vectors = std::map<std::string, std::vector<double>>;

using Features = std::map<int, int>;  // field id -> value (libffm feature id, criteo cell)

// Users 0..19 (a user id and an age bucket field), items 0..14 (an item id and a genre
// field); label 1 when the user's group is the item's genre. libffm: fields 0, 1 | 2, 3;
// criteo: I1, C1 (and the empty I2..I13) | C2, C3 (and the empty C4..C26). Squared loss, so
// that fmps predict prints the raw FM score.
struct SideRecall {
  TempDir dir;
  bool criteo;
  std::string train, users, items, pairs, config;
  explicit SideRecall(const std::string& format) : criteo(format == "criteo") {
    config =
        dir.Write("c.yaml", "{data: {train: " + dir.File("train.txt") + ", format: " + format +
                                ", normalize: none}, model: {k: 4, loss: squared, " + SidesYaml() +
                                "}, optimizer: {name: adagrad, lr: 0.1}, train: {epochs: "
                                "10, batch_size: 16, consistency: bsp, seed: 1}, output: "
                                "{dir: " +
                                dir.File("run") + "}}\n");
    std::ostringstream tr, us, it, pr;
    for (int i = 0; i < 15; ++i) it << Row(std::to_string(i), Item(i)) << "\n";
    for (int u = 0; u < 20; ++u) {
      us << Row("user" + std::to_string(u), User(u)) << "\n";
      for (int j = 0; j < 8; ++j) {
        const int item = (u * 5 + j * 7) % 15;
        tr << Row(u % 2 == item % 2 ? "1" : "0", Join(User(u), Item(item))) << "\n";
        pr << "user" << u << Sep() << item << "\n";
      }
    }
    train = dir.Write("train.txt", tr.str());
    users = dir.Write("users.txt", us.str());
    items = dir.Write("items.txt", it.str());
    pairs = dir.Write("pairs.txt", pr.str());
  }
  std::string SidesYaml() const {
    if (!criteo) return "sides: {user: [0, 1], item: [2, 3]}";
    std::string user = "I1, C1", item = "C2";
    for (int c = 2; c <= 13; ++c) user += ", I" + std::to_string(c);
    for (int c = 3; c <= 26; ++c) item += ", C" + std::to_string(c);
    return "sides: {user: [" + user + "], item: [" + item + "]}";
  }
  char Sep() const { return criteo ? '\t' : ' '; }
  Features User(int u) const {
    return criteo ? Features{{0, u % 3}, {13, u}} : Features{{0, u}, {1, 10 + u % 3}};
  }
  Features Item(int i) const {
    return criteo ? Features{{14, 100 + i}, {15, 200 + i % 2}}
                  : Features{{2, 100 + i}, {3, 200 + i % 2}};
  }
  static Features Join(Features a, const Features& b) {
    a.insert(b.begin(), b.end());
    return a;
  }
  // The features as a row without a label (libffm: field:id:1 tokens; criteo: 39 cells).
  std::string Text(const Features& f) const {
    std::string text;
    if (criteo) {
      for (int c = 0; c < 39; ++c) {
        if (c > 0) text += '\t';
        if (f.count(c)) text += std::to_string(f.at(c));
      }
      return text;
    }
    for (const auto& [field, id] : f) {
      if (!text.empty()) text += ' ';
      text += std::to_string(field);
      text += ':';
      text += std::to_string(id);
      text += ":1";
    }
    return text;
  }
  // A row led by `head` (a label, or a side file's id).
  std::string Row(const std::string& head, const Features& f) const {
    return head + Sep() + Text(f);
  }
  std::string Model() const { return dir.File("run/model.fmps"); }
  // fmps embed of `side_file` on `side`, parsed.
  Vectors Embed(const std::string& side, const std::string& side_file) const {
    const std::string out = dir.File(side + ".txt");
    Fmps("embed --model " + Model() + " --side " + side + " --data " + side_file + " --out " + out);
    Vectors v;
    for (const std::string& line : Lines(ReadFile(out))) {
      std::istringstream in(line);
      std::string id;
      in >> id;
      double x;
      while (in >> x) v[id].push_back(x);
    }
    return v;
  }
  // fmps predict of `rows` (unlabeled rows).
  std::vector<double> Predict(const std::string& rows) const {
    const std::string path = dir.Write("rows.txt", rows);
    std::vector<double> y;
    for (const std::string& line :
         Lines(Fmps("predict --model " + Model() + " --data " + path + " --out -"))) {
      y.push_back(std::stod(line));
    }
    return y;
  }
};

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t f = 0; f < a.size(); ++f) s += a[f] * b[f];
  return s;
}

class RecallSideFilesTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RecallSideFilesTest, EmbeddedVectorsPlusUserPartReproducePredictOnJoinedRows) {
  SideRecall r(GetParam());
  Fmps("train " + r.config);
  const Vectors users = r.Embed("user", r.users);
  const Vectors items = r.Embed("item", r.items);
  ASSERT_EQ(users.size(), 20u);
  ASSERT_EQ(items.size(), 15u);
  ASSERT_EQ(users.at("user3").size(), 5u);
  EXPECT_EQ(users.at("user3")[4], 1.0);
  std::string joined, own;
  for (int u = 0; u < 20; ++u) {
    own += r.Text(r.User(u)) + "\n";
    for (int i = 0; i < 15; ++i) joined += r.Text(SideRecall::Join(r.User(u), r.Item(i))) + "\n";
  }
  const std::vector<double> y = r.Predict(joined), user_part = r.Predict(own);
  ASSERT_EQ(y.size(), 300u);
  ASSERT_EQ(user_part.size(), 20u);
  double spread = 0;
  for (int u = 0; u < 20; ++u) {
    for (int i = 0; i < 15; ++i) {
      const double split =
          Dot(users.at("user" + std::to_string(u)), items.at(std::to_string(i))) + user_part[u];
      EXPECT_NEAR(split, y[u * 15 + i], 2e-5) << "user" << u << " item " << i;
      spread = std::max(spread, std::abs(y[u * 15 + i] - y[u * 15]));
    }
  }
  EXPECT_GT(spread, 0.1);  // the model learned something: the check is not all zeros
  // A full training row with its label replaced by an id embeds on either side.
  const std::string full =
      r.dir.Write("full.txt", r.Row("user3", SideRecall::Join(r.User(3), r.Item(4))) + "\n");
  EXPECT_EQ(r.Embed("user", full).at("user3"), users.at("user3"));
}

TEST_P(RecallSideFilesTest, RecallIsTheExactTopKOfTheVectorsWithExclusions) {
  SideRecall r(GetParam());
  Fmps("train " + r.config);
  const Vectors users = r.Embed("user", r.users);
  const Vectors items = r.Embed("item", r.items);
  const std::string out = r.dir.File("recs.txt");
  const std::string json =
      Fmps("recall --model " + r.Model() + " --users " + r.users + " --items " + r.items +
           " --k 10 --exclude " + r.pairs + " --truth " + r.pairs + " --out " + out);
  // Every held-out pair is excluded: no hits.
  EXPECT_EQ(JsonNumber(json, "users"), 20.0) << json;
  EXPECT_EQ(JsonNumber(json, "hit_rate@10"), 0.0) << json;
  std::set<std::string> excluded;
  for (const std::string& pair : Lines(ReadFile(r.pairs))) excluded.insert(pair);
  const std::vector<std::string> lines = Lines(ReadFile(out));
  ASSERT_EQ(lines.size(), 20u);
  for (const std::string& line : lines) {
    std::istringstream in(line);
    std::string user, entry;
    in >> user;
    std::vector<std::pair<double, std::string>> brute;
    for (const auto& [item, v] : items) {
      if (!excluded.count(user + r.Sep() + item)) brute.emplace_back(-Dot(users.at(user), v), item);
    }
    std::sort(brute.begin(), brute.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : std::stoi(a.second) < std::stoi(b.second);
    });
    std::size_t j = 0;
    for (; in >> entry; ++j) {
      const std::string item = entry.substr(0, entry.find(':'));
      ASSERT_LT(j, brute.size()) << line;
      EXPECT_NEAR(Dot(users.at(user), items.at(item)), -brute[j].first, 1e-5) << line;
      EXPECT_FALSE(excluded.count(user + r.Sep() + item)) << line;
    }
    EXPECT_EQ(j, 7u) << line;  // 15 items less the user's 8
  }
}

TEST_P(RecallSideFilesTest, MalformedSideAndInteractionRowsNameFileAndLine) {
  SideRecall r(GetParam());
  Fmps("train " + r.config);
  const std::string cmd =
      FmpsBinary() + " embed --model " + r.Model() + " --side item --out - --data ";
  const std::vector<std::pair<std::string, std::string>> cases =
      r.criteo ? std::vector<std::pair<std::string, std::string>>{
                     {"1\t\t\n\t5\t\n", "bad.txt:2: empty id (the first cell)"},
                     {"1" + std::string(40, '\t') + "x\n", "bad.txt:1: "},
                 }
               : std::vector<std::pair<std::string, std::string>>{
                     {"1 2:101:1\n2 2:x:1\n", "bad.txt:2: bad id '2:x:1' in feature 1"},
                     {"\n1 2:101:1 7:1:1\n", "bad.txt:2: field 7 is on no side of the model"},
                     {"2:101:1 3:200:1\n", "bad.txt:1: missing id (first token '2:101:1'"},
                 };
  for (const auto& [text, message] : cases) {
    std::string output;
    EXPECT_NE(RunCommand(cmd + r.dir.Write("bad.txt", text), &output), 0) << text;
    EXPECT_NE(output.find(message), std::string::npos) << output;
  }
  // A pair without its item (for criteo a space separates nothing).
  std::string output;
  EXPECT_NE(RunCommand(FmpsBinary() + " recall --model " + r.Model() + " --users " + r.users +
                           " --items " + r.items + " --exclude " +
                           r.dir.Write("pairs_bad.txt", "user1" + std::string(1, r.Sep()) + "3\n" +
                                                            (r.criteo ? "user2 3\n" : "user2\n")) +
                           " --out -",
                       &output),
            0);
  EXPECT_NE(output.find("pairs_bad.txt:2: expected 'user_id item_id'"), std::string::npos)
      << output;
}

// Sampled negatives stay csv-only: the catalogue is a csv file.
TEST_P(RecallSideFilesTest, NegativesAreRefusedAtValidationSayingWhy) {
  SideRecall r(GetParam());
  std::string out;
  EXPECT_EQ(
      RunCommand(FmpsBinary() + " check " + r.config +
                     " --set data.negatives.per_positive=2 --set data.negatives.items=" + r.items,
                 &out),
      2);
  EXPECT_NE(out.find("data.negatives: needs data.format csv (the catalogue is a csv file)"),
            std::string::npos)
      << out;
}

INSTANTIATE_TEST_SUITE_P(Formats, RecallSideFilesTest, ::testing::Values("libffm", "criteo"));

}  // namespace
}  // namespace fmps::testing
