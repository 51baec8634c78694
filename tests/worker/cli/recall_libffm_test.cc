// Recall models trained on libffm data, through the binary: fmps embed and fmps recall read
// libffm side files ("ID field:feature:value ...") and "user_id item_id" interaction files;
// the vectors reproduce fmps predict on the joined rows, recall is the exact top-k of them;
// malformed rows name file:line. Also the formats model.sides and data.negatives refuse.
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

// Users 0..19 (field 0 the user id, field 1 an age bucket), items 0..14 (field 2 the item
// id, field 3 its genre); label 1 when the user's group is the item's genre. Squared loss,
// so that fmps predict prints the raw FM score.
struct LibffmRecall {
  TempDir dir;
  std::string train, users, items, pairs, config;
  static std::string User(int u) {
    return "0:" + std::to_string(u) + ":1 1:" + std::to_string(10 + u % 3) + ":1";
  }
  static std::string Item(int i) {
    return "2:" + std::to_string(100 + i) + ":1 3:" + std::to_string(200 + i % 2) + ":1";
  }
  LibffmRecall() {
    // One flow map: data, model, optimizer, train (bsp, one worker), output.
    config = dir.Write("c.yaml", "{data: {train: " + dir.File("train.ffm") +
                                     ", format: libffm, normalize: none}, model: {k: 4, loss: "
                                     "squared, sides: {user: [0, 1], item: [2, 3]}}, optimizer: "
                                     "{name: adagrad, lr: 0.1}, train: {epochs: 10, batch_size: "
                                     "16, consistency: bsp, seed: 1}, output: {dir: " +
                                     dir.File("run") + "}}\n");
    std::ostringstream tr, us, it, pr;
    for (int i = 0; i < 15; ++i) it << i << " " << Item(i) << "\n";
    for (int u = 0; u < 20; ++u) {
      us << "user" << u << " " << User(u) << "\n";
      for (int j = 0; j < 8; ++j) {
        const int item = (u * 5 + j * 7) % 15;
        tr << (u % 2 == item % 2 ? 1 : 0) << " " << User(u) << " " << Item(item) << "\n";
        pr << "user" << u << " " << item << "\n";
      }
    }
    train = dir.Write("train.ffm", tr.str());
    users = dir.Write("users.ffm", us.str());
    items = dir.Write("items.ffm", it.str());
    pairs = dir.Write("pairs.txt", pr.str());
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
  // fmps predict of `rows` (unlabeled libffm rows).
  std::vector<double> Predict(const std::string& rows) const {
    const std::string path = dir.Write("rows.ffm", rows);
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

TEST(RecallLibffmTest, EmbeddedVectorsPlusUserPartReproducePredictOnJoinedRows) {
  LibffmRecall r;
  Fmps("train " + r.config);
  const Vectors users = r.Embed("user", r.users);
  const Vectors items = r.Embed("item", r.items);
  ASSERT_EQ(users.size(), 20u);
  ASSERT_EQ(items.size(), 15u);
  ASSERT_EQ(users.at("user3").size(), 5u);
  EXPECT_EQ(users.at("user3")[4], 1.0);
  std::string joined, own;
  for (int u = 0; u < 20; ++u) {
    own += LibffmRecall::User(u) + "\n";
    for (int i = 0; i < 15; ++i)
      joined += LibffmRecall::User(u) + " " + LibffmRecall::Item(i) + "\n";
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
  const std::string full = r.dir.Write(
      "full.ffm", "user3 " + LibffmRecall::User(3) + " " + LibffmRecall::Item(4) + "\n");
  EXPECT_EQ(r.Embed("user", full).at("user3"), users.at("user3"));
}

TEST(RecallLibffmTest, RecallIsTheExactTopKOfTheVectorsWithExclusions) {
  LibffmRecall r;
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
      if (!excluded.count(user + " " + item)) brute.emplace_back(-Dot(users.at(user), v), item);
    }
    std::sort(brute.begin(), brute.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : std::stoi(a.second) < std::stoi(b.second);
    });
    std::size_t j = 0;
    for (; in >> entry; ++j) {
      const std::string item = entry.substr(0, entry.find(':'));
      ASSERT_LT(j, brute.size()) << line;
      EXPECT_NEAR(Dot(users.at(user), items.at(item)), -brute[j].first, 1e-5) << line;
      EXPECT_FALSE(excluded.count(user + " " + item)) << line;
    }
    EXPECT_EQ(j, 7u) << line;  // 15 items less the user's 8
  }
}

TEST(RecallLibffmTest, MalformedSideAndInteractionRowsNameFileAndLine) {
  LibffmRecall r;
  Fmps("train " + r.config);
  const std::string cmd =
      FmpsBinary() + " embed --model " + r.Model() + " --side item --out - --data ";
  const std::pair<const char*, const char*> cases[] = {
      {"1 2:101:1\n2 2:x:1\n", "bad.ffm:2: bad id '2:x:1' in feature 1"},
      {"\n1 2:101:1 7:1:1\n", "bad.ffm:2: field 7 is on no side of the model (model.sides)"},
      {"2:101:1 3:200:1\n", "bad.ffm:1: missing id (first token '2:101:1' is a feature"},
  };
  for (const auto& [text, message] : cases) {
    std::string output;
    EXPECT_NE(RunCommand(cmd + r.dir.Write("bad.ffm", text), &output), 0) << text;
    EXPECT_NE(output.find(message), std::string::npos) << output;
  }
  std::string output;
  EXPECT_NE(RunCommand(FmpsBinary() + " recall --model " + r.Model() + " --users " + r.users +
                           " --items " + r.items + " --exclude " +
                           r.dir.Write("bad.txt", "user1 3\nuser2\n") + " --out -",
                       &output),
            0);
  EXPECT_NE(output.find("bad.txt:2: expected 'user_id item_id'"), std::string::npos) << output;
}

}  // namespace
}  // namespace fmps::testing
