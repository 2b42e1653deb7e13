#include "proxy/log_text.h"

#include "gtest/gtest.h"

namespace postern {
namespace {

TEST(LogTextTest, ClientTextCannotEndOrForgeALine) {
  EXPECT_EQ(LogSafe("alice"), "alice");
  EXPECT_EQ(LogSafe("a b"), "a\\x20b");  // no forged key=value field
  EXPECT_EQ(LogSafe(std::string("x\r\ny\0z\"\\", 8)), "x\\x0d\\x0ay\\x00z\\x22\\x5c");
  EXPECT_EQ(LogSafe("caf\xc3\xa9"), "caf\\xc3\\xa9");
  EXPECT_EQ(LogQuoted("peer closed \"x\""), "peer closed \\x22x\\x22");
  EXPECT_EQ(LogSafe(std::string(300, 'a'), 10), "aaaaaaaaaa...");
}

}  // namespace
}  // namespace postern
