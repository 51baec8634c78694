// ModelShape: widths, the config factory, validation and stored kind numbers.
#include "common/model/model_shape.h"

#include <gtest/gtest.h>

#include "common/base/error.h"

namespace fmps {
namespace {

TEST(ModelShapeTest, FmWidths) {
  for (int k : {1, 4, 8, 13, 1024}) {
    const ModelShape s = FmShape(k);
    EXPECT_EQ(s.kind, ModelKind::kFm);
    EXPECT_EQ(s.fields, 0);
    EXPECT_EQ(s.v_width(), k);
    EXPECT_EQ(s.row_width(), k + 1);  // w, then v
    EXPECT_NO_THROW(s.Validate("test"));
  }
  EXPECT_EQ(FmShape(8).ToString(), "fm k=8");
}

TEST(ModelShapeTest, FromConfig) {
  ModelConfig m;
  m.k = 12;
  EXPECT_EQ(ShapeFromConfig(m), FmShape(12));
  EXPECT_EQ(ShapeFromConfig(m).row_width(), 13);
  m.k = 0;
  EXPECT_THROW(ShapeFromConfig(m), ModelError);
  m.k = kMaxK + 1;
  EXPECT_THROW(ShapeFromConfig(m), ModelError);
}

TEST(ModelShapeTest, ValidateNamesTheProblem) {
  try {
    ModelShape{ModelKind::kFm, 8, 5}.Validate("f.fmps");
    FAIL() << "fields on an fm shape accepted";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("f.fmps"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fields"), std::string::npos) << e.what();
  }
  EXPECT_THROW(FmShape(-3).Validate("x"), ModelError);
  EXPECT_THROW((ModelShape{static_cast<ModelKind>(9), 8, 0}.Validate("x")), ModelError);
}

TEST(ModelShapeTest, KindNumbersAreStable) {
  EXPECT_EQ(ModelKindFromNumber(0, "x"), ModelKind::kFm);   // files store 0 for FM
  EXPECT_EQ(ModelKindFromNumber(1, "x"), ModelKind::kFfm);  // and 1 for FFM
  EXPECT_THROW(ModelKindFromNumber(2, "x"), ModelError);
}

TEST(ModelShapeTest, Equality) {
  EXPECT_EQ(FmShape(4), FmShape(4));
  EXPECT_NE(FmShape(4), FmShape(8));
  EXPECT_NE(FmShape(4), (ModelShape{ModelKind::kFm, 4, 2}));
}

}  // namespace
}  // namespace fmps
