#include "proxy/event_log.h"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spdlog/sinks/base_sink.h"

namespace postern {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(JsonEscapeTest, PrintableAsciiPassesQuotesAndBackslashesEscaped) {
  EXPECT_EQ(JsonEscape("alice@example.com"), "alice@example.com");
  EXPECT_EQ(JsonEscape("a\"b\\c"), "a\\\"b\\\\c");
}

TEST(JsonEscapeTest, ControlBytesAreEscaped) {
  EXPECT_EQ(JsonEscape("a\r\nb\x1e"), "a\\u000d\\u000ab\\u001e");
  EXPECT_EQ(JsonEscape(std::string("\0x", 2)), "\\u0000x");
}

TEST(JsonEscapeTest, Utf8PassesInvalidBytesStayVisible) {
  EXPECT_EQ(JsonEscape("m\xc3\xbcller"), "m\xc3\xbcller");
  EXPECT_EQ(JsonEscape("\xf0\x9f\x93\xa7"), "\xf0\x9f\x93\xa7");
  EXPECT_EQ(JsonEscape("a\xff"
                       "b"),
            "a\\\\xffb");
  EXPECT_EQ(JsonEscape("\xc3"), "\\\\xc3");                        // cut sequence
  EXPECT_EQ(JsonEscape("\xc0\xaf"), "\\\\xc0\\\\xaf");             // overlong
  EXPECT_EQ(JsonEscape("\xed\xa0\x80"), "\\\\xed\\\\xa0\\\\x80");  // surrogate
  EXPECT_EQ(JsonEscape("\xe2\x80\xa8"), "\\\\xe2\\\\x80\\\\xa8");  // U+2028
  EXPECT_EQ(JsonEscape("\xc2\x85"), "\\\\xc2\\\\x85");             // C1 control
}

TEST(JsonEscapeTest, LongValuesAreCut) {
  EXPECT_EQ(JsonEscape(std::string(100, 'x'), 10), std::string(10, 'x') + "...");
}

// Catches what the logger writes.
class Capture : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> lines;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    lines.emplace_back(buf.data(), buf.size());
  }
  void flush_() override {}
};

class LogEventTest : public ::testing::Test {
 protected:
  std::vector<std::string> Run(bool json) {
    InstallLogger(json);
    auto logger = spdlog::default_logger();
    auto sink = std::make_shared<Capture>();
    // The installed formatter, on our sink.
    auto saved = logger->sinks();
    logger->sinks().clear();
    logger->sinks().push_back(sink);
    InstallLogger(json);
    LogEvent("session_end")
        .Str("session", "AbCd")
        .Safe("user", "eve\r\n{\"event\":\"forged\"}")
        .Quoted("end", "client: peer closed")
        .Num("in", uint64_t{42})
        .Flag("tls", true)
        .Emit();
    spdlog::warn("plain \"message\"\n");
    logger->sinks() = saved;
    return sink->lines;
  }
};

TEST_F(LogEventTest, JsonLinesAreOneObjectEach) {
  std::vector<std::string> lines = Run(true);
  ASSERT_EQ(lines.size(), 2u);
  const std::string& e = lines[0];
  EXPECT_THAT(e, HasSubstr("\"level\":\"info\",\"event\":\"session_end\",\"session\":\"AbCd\""));
  EXPECT_THAT(e, HasSubstr("\"user\":\"eve\\u000d\\u000a{\\\"event\\\":\\\"forged\\\"}\""));
  EXPECT_THAT(e, HasSubstr("\"in\":42,\"tls\":true}"));
  EXPECT_EQ(e.find('\n'), e.size() - 1);  // one line
  EXPECT_EQ(e.rfind("{\"ts\":\"", 0), 0u);
  EXPECT_THAT(lines[1], HasSubstr("\"level\":\"warn\",\"msg\":\"plain \\\"message\\\"\\u000a\"}"));
}

TEST_F(LogEventTest, TextLinesKeepTheKeyValueForm) {
  std::vector<std::string> lines = Run(false);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr("info session end: session=AbCd user=eve\\x0d\\x0a"));
  EXPECT_THAT(lines[0], HasSubstr("end=\"client: peer closed\" in=42 tls=true"));
  EXPECT_THAT(lines[0], Not(HasSubstr("{\"event\"")));
  InstallLogger(true);
}

}  // namespace
}  // namespace postern
