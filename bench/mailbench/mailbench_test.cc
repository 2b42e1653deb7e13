// Unit tests for mailbench's pure parts: the response reader (on every split
// of its input and one byte at a time), option parsing (loopback only), the
// /proc parsers, percentiles and JSON quoting.

#include <openssl/sha.h>
#include <time.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "bench/mailbench/digests.h"
#include "bench/mailbench/options.h"
#include "bench/mailbench/proc_stats.h"
#include "bench/mailbench/report.h"
#include "bench/mailbench/response_reader.h"
#include "gtest/gtest.h"

namespace postern::mailbench {
namespace {

struct Wait {
  Expect expect;
  std::string tag;
};

struct Outcome {
  std::vector<bool> oks;
  std::vector<std::string> texts;
  uint64_t payload = 0;
  uint64_t messages = 0;
  uint32_t exists = 0;
  std::string error;
};

// Feeds `input` cut into the given chunks, waiting for each of `waits` in turn.
Outcome FeedChunks(const std::vector<Wait>& waits, const std::vector<absl::string_view>& chunks) {
  Outcome out;
  ResponseReader r;
  size_t next = 0;
  r.Start(waits[next].expect, waits[next].tag);
  for (absl::string_view data : chunks) {
    while (!data.empty()) {
      size_t used = 0;
      ResponseReader::Result res = r.Feed(data, &used);
      EXPECT_LE(used, data.size());
      data.remove_prefix(used);
      if (res == ResponseReader::Result::kError) {
        out.error = r.error();
        return out;
      }
      if (res == ResponseReader::Result::kNeedMore) {
        EXPECT_TRUE(data.empty());
        break;
      }
      out.oks.push_back(r.reply().ok);
      out.texts.push_back(r.reply().text);
      ++next;
      if (next < waits.size()) {
        r.Start(waits[next].expect, waits[next].tag);
      } else {
        r.Start(Expect::kNothing);
      }
    }
  }
  out.payload = r.payload_bytes();
  out.messages = r.messages();
  out.exists = r.exists();
  return out;
}

// Runs the input whole, at every split point, and one byte at a time; all must agree.
Outcome RunAllSplits(const std::vector<Wait>& waits, absl::string_view input) {
  Outcome whole = FeedChunks(waits, {input});
  for (size_t cut = 1; cut < input.size(); ++cut) {
    Outcome o = FeedChunks(waits, {input.substr(0, cut), input.substr(cut)});
    EXPECT_EQ(o.oks, whole.oks) << "cut at " << cut;
    EXPECT_EQ(o.texts, whole.texts) << "cut at " << cut;
    EXPECT_EQ(o.payload, whole.payload) << "cut at " << cut;
    EXPECT_EQ(o.messages, whole.messages) << "cut at " << cut;
    EXPECT_EQ(o.error, whole.error) << "cut at " << cut;
  }
  std::vector<absl::string_view> bytes;
  for (size_t i = 0; i < input.size(); ++i) bytes.push_back(input.substr(i, 1));
  Outcome o = FeedChunks(waits, bytes);
  EXPECT_EQ(o.oks, whole.oks) << "byte at a time";
  EXPECT_EQ(o.payload, whole.payload) << "byte at a time";
  EXPECT_EQ(o.messages, whole.messages) << "byte at a time";
  EXPECT_EQ(o.error, whole.error) << "byte at a time";
  return whole;
}

TEST(ResponseReaderTest, ImapLoginSelectLogout) {
  const std::string input =
      "* OK [CAPABILITY IMAP4rev1 IDLE] Dovecot ready.\r\n"
      "a1 OK [CAPABILITY IMAP4rev1] Logged in\r\n"
      "* FLAGS (\\Answered \\Seen)\r\n"
      "* 125 EXISTS\r\n"
      "* 0 RECENT\r\n"
      "a2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n"
      "* BYE Logging out\r\n"
      "a3 OK Logout completed.\r\n";
  Outcome o = RunAllSplits({{Expect::kImapGreeting, ""},
                            {Expect::kImapTagged, "a1"},
                            {Expect::kImapTagged, "a2"},
                            {Expect::kImapTagged, "a3"}},
                           input);
  EXPECT_EQ(o.error, "");
  EXPECT_EQ(o.oks, (std::vector<bool>{true, true, true, true}));
  EXPECT_EQ(o.texts[0], "* OK [CAPABILITY IMAP4rev1 IDLE] Dovecot ready.");
  EXPECT_EQ(o.texts[3], "a3 OK Logout completed.");
  EXPECT_EQ(o.exists, 125u);
}

TEST(ResponseReaderTest, ImapFetchLiteralsAreCountedNotParsed) {
  // The literal holds text that looks like our tagged reply and a literal announcement.
  const std::string body1 = "Subject: x\r\n\r\na2 OK fake\r\n{99}\r\n";
  const std::string body2 = "hello";
  const std::string input = "* 1 FETCH (BODY[] {" + std::to_string(body1.size()) + "}\r\n" + body1 +
                            " FLAGS (\\Seen))\r\n* 2 FETCH (BODY[] {" +
                            std::to_string(body2.size()) + "+}\r\n" + body2 +
                            ")\r\n* 3 EXISTS\r\na2 OK Fetch completed.\r\n";
  Outcome o = RunAllSplits({{Expect::kImapTagged, "a2"}}, input);
  EXPECT_EQ(o.error, "");
  EXPECT_EQ(o.oks, (std::vector<bool>{true}));
  EXPECT_EQ(o.payload, body1.size() + body2.size());
  EXPECT_EQ(o.messages, 2u);
  EXPECT_EQ(o.exists, 3u);
}

TEST(ResponseReaderTest, ImapEmptyLiteralAndTaggedNo) {
  const std::string input = "* 1 FETCH (BODY[] {0}\r\n)\r\na7 NO [SERVERBUG] failed\r\n";
  Outcome o = RunAllSplits({{Expect::kImapTagged, "a7"}}, input);
  EXPECT_EQ(o.oks, (std::vector<bool>{false}));
  EXPECT_EQ(o.texts[0], "a7 NO [SERVERBUG] failed");
  EXPECT_EQ(o.payload, 0u);
}

TEST(ResponseReaderTest, ImapIdleContinuationThenDone) {
  const std::string input =
      "+ idling\r\n* 4 EXISTS\r\n* 1 RECENT\r\na5 OK Idle completed (0.001 + 1.000 secs).\r\n";
  Outcome o = RunAllSplits({{Expect::kImapContinuation, "a5"}, {Expect::kImapTagged, "a5"}}, input);
  EXPECT_EQ(o.error, "");
  EXPECT_EQ(o.oks, (std::vector<bool>{true, true}));
  EXPECT_EQ(o.exists, 4u);
}

TEST(ResponseReaderTest, ImapContinuationRefused) {
  Outcome o = RunAllSplits({{Expect::kImapContinuation, "a5"}}, "a5 BAD no idle\r\n");
  EXPECT_EQ(o.oks, (std::vector<bool>{false}));
}

TEST(ResponseReaderTest, ImapByeGreetingFails) {
  Outcome o = RunAllSplits({{Expect::kImapGreeting, ""}}, "* BYE Too many connections\r\n");
  EXPECT_EQ(o.oks, (std::vector<bool>{false}));
  Outcome pre = RunAllSplits({{Expect::kImapGreeting, ""}}, "* PREAUTH hi\r\n");
  EXPECT_EQ(pre.oks, (std::vector<bool>{true}));
}

TEST(ResponseReaderTest, ImapGreetingMustBeUntagged) {
  Outcome o = FeedChunks({{Expect::kImapGreeting, ""}}, {"HTTP/1.0 200 OK\r\n"});
  EXPECT_NE(o.error, "");
}

TEST(ResponseReaderTest, ImapOtherTagsAreSkipped) {
  Outcome o = RunAllSplits({{Expect::kImapTagged, "a10"}}, "a1 OK old\r\na10 OK new\r\n");
  EXPECT_EQ(o.texts, (std::vector<std::string>{"a10 OK new"}));
}

TEST(ResponseReaderTest, ImapHugeLiteralLengthIsAnError) {
  Outcome o =
      FeedChunks({{Expect::kImapTagged, "a1"}}, {"* 1 FETCH (BODY[] {99999999999999999999}\r\n"});
  EXPECT_NE(o.error, "");
}

TEST(ResponseReaderTest, OverlongLineIsAnError) {
  std::string line(ResponseReader::kMaxLine + 10, 'x');
  Outcome o = FeedChunks({{Expect::kImapTagged, "a1"}}, {line});
  EXPECT_NE(o.error, "");
}

TEST(ResponseReaderTest, Pop3Conversation) {
  const std::string msg1 = "Subject: a\r\n\r\n..stuffed line\r\n.\r\n";  // "..stuffed" then end
  const std::string input =
      "+OK Dovecot ready.\r\n+OK\r\n+OK Logged in.\r\n+OK 2 1234\r\n"
      "+OK 40 octets\r\n" +
      msg1 +
      "+OK 3 octets\r\nabc\r\n.\r\n"
      "-ERR no such message\r\n"
      "+OK Logging out.\r\n";
  Outcome o = RunAllSplits({{Expect::kPop3Line, ""},
                            {Expect::kPop3Line, ""},
                            {Expect::kPop3Line, ""},
                            {Expect::kPop3Line, ""},
                            {Expect::kPop3Multi, ""},
                            {Expect::kPop3Multi, ""},
                            {Expect::kPop3Multi, ""},
                            {Expect::kPop3Line, ""}},
                           input);
  EXPECT_EQ(o.error, "");
  EXPECT_EQ(o.oks, (std::vector<bool>{true, true, true, true, true, true, false, true}));
  EXPECT_EQ(o.texts[3], "+OK 2 1234");
  EXPECT_EQ(o.texts[4], "+OK 40 octets");
  EXPECT_EQ(o.messages, 2u);
  EXPECT_EQ(o.payload, msg1.size() + std::string("abc\r\n.\r\n").size());
}

TEST(ResponseReaderTest, Pop3EmptyBodyAndDotLines) {
  // An empty body is just ".\r\n"; ".x" and "." inside a line do not end it.
  const std::string input = "+OK\r\n.\r\n+OK\r\n.x\r\na.\r\n\r\n.\r\n";
  Outcome o = RunAllSplits({{Expect::kPop3Multi, ""}, {Expect::kPop3Multi, ""}}, input);
  EXPECT_EQ(o.oks, (std::vector<bool>{true, true}));
  EXPECT_EQ(o.payload, 3u + 13u);
}

TEST(ResponseReaderTest, NothingExpectedDiscards) {
  ResponseReader r;
  r.Start(Expect::kNothing);
  size_t used = 0;
  EXPECT_EQ(r.Feed("* BYE\r\n", &used), ResponseReader::Result::kNeedMore);
  EXPECT_EQ(used, 7u);
}

Sha256 Digest(absl::string_view s) {
  Sha256 d{};
  SHA256(reinterpret_cast<const uint8_t*>(s.data()), s.size(), d.data());
  return d;
}

// Feeds `input` with hashing on, cut at `cut` (0: whole), and returns
// "number:hex" for every digest in order.
std::vector<std::string> DigestsOf(const std::vector<Wait>& waits, absl::string_view input,
                                   size_t cut, bool byte_at_a_time = false) {
  std::vector<absl::string_view> chunks;
  if (byte_at_a_time) {
    for (size_t i = 0; i < input.size(); ++i) chunks.push_back(input.substr(i, 1));
  } else if (cut == 0) {
    chunks.push_back(input);
  } else {
    chunks = {input.substr(0, cut), input.substr(cut)};
  }
  ResponseReader r;
  r.set_hashing(true);
  size_t next = 0;
  r.Start(waits[next].expect, waits[next].tag);
  std::vector<std::string> out;
  for (absl::string_view data : chunks) {
    while (!data.empty()) {
      size_t used = 0;
      ResponseReader::Result res = r.Feed(data, &used);
      data.remove_prefix(used);
      if (res != ResponseReader::Result::kDone) break;
      ++next;
      r.Start(next < waits.size() ? waits[next].expect : Expect::kNothing,
              next < waits.size() ? waits[next].tag : "");
    }
  }
  for (const MessageDigest& d : r.TakeDigests()) {
    out.push_back(std::to_string(d.number) + ":" + HexOf(d.sha256));
  }
  EXPECT_TRUE(r.TakeDigests().empty());
  return out;
}

void ExpectDigestsAtEverySplit(const std::vector<Wait>& waits, absl::string_view input,
                               const std::vector<std::string>& want) {
  EXPECT_EQ(DigestsOf(waits, input, 0), want);
  for (size_t cut = 1; cut < input.size(); ++cut) {
    EXPECT_EQ(DigestsOf(waits, input, cut), want) << "cut at " << cut;
  }
  EXPECT_EQ(DigestsOf(waits, input, 0, true), want) << "byte at a time";
}

TEST(ResponseReaderTest, ImapHashesBodyLiteralsWithTheirNumbers) {
  const std::string body1 = "Subject: x\r\n\r\na2 OK fake\r\n{99}\r\n";
  const std::string body2 = "hello";
  // Flags before the body, a literal that is not BODY[] (not hashed), an empty body.
  const std::string input = "* 4 FETCH (BODY[] {" + std::to_string(body1.size()) + "}\r\n" + body1 +
                            " FLAGS (\\Seen))\r\n* 7 FETCH (FLAGS (\\Seen) BODY[] {" +
                            std::to_string(body2.size()) + "}\r\n" + body2 +
                            ")\r\n* 8 FETCH (BODY[HEADER] {3}\r\nabc)\r\n"
                            "* 9 FETCH (BODY[] {0}\r\n)\r\n"
                            "a2 OK Fetch completed.\r\n";
  ExpectDigestsAtEverySplit(
      {{Expect::kImapTagged, "a2"}}, input,
      {"4:" + HexOf(Digest(body1)), "7:" + HexOf(Digest(body2)), "9:" + HexOf(Digest(""))});
}

TEST(ResponseReaderTest, Pop3HashesTheUnstuffedBody) {
  // As delivered: stuffed dots removed, the final "." line left out; the
  // last line's CRLF belongs to the message.
  const std::string wire1 = "Subject: a\r\n\r\n..stuffed line\r\n..\r\nx.\r\n.\r\n";
  const std::string msg1 = "Subject: a\r\n\r\n.stuffed line\r\n.\r\nx.\r\n";
  const std::string wire2 = ".\r\n";  // empty
  const std::string wire3 = "abc\r\n..\rz\r\n.\rq\r\n.\r\n";
  const std::string msg3 = "abc\r\n.\rz\r\n\rq\r\n";
  const std::string input =
      "+OK 40 octets\r\n" + wire1 + "+OK 0 octets\r\n" + wire2 + "-ERR no\r\n+OK\r\n" + wire3;
  ExpectDigestsAtEverySplit(
      {{Expect::kPop3Multi, ""},
       {Expect::kPop3Multi, ""},
       {Expect::kPop3Multi, ""},
       {Expect::kPop3Multi, ""}},
      input, {"0:" + HexOf(Digest(msg1)), "0:" + HexOf(Digest("")), "0:" + HexOf(Digest(msg3))});
}

TEST(DigestTableTest, ParsesAndFinds) {
  const std::string a(64, 'a');
  absl::StatusOr<DigestTable> t =
      DigestTable::Parse("# comment\n\nalice 1 " + a + "\nbob 2 " + std::string(64, 'F') + "\n");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->size(), 2u);
  ASSERT_NE(t->Find("alice", 1), nullptr);
  EXPECT_EQ(HexOf(*t->Find("alice", 1)), a);
  EXPECT_EQ(HexOf(*t->Find("bob", 2)), std::string(64, 'f'));
  EXPECT_EQ(t->Find("alice", 2), nullptr);
  EXPECT_EQ(t->Find("carol", 1), nullptr);
  EXPECT_FALSE(DigestTable::Parse("").ok());
  EXPECT_FALSE(DigestTable::Parse("alice 1 abc\n").ok());                    // short
  EXPECT_FALSE(DigestTable::Parse("alice x " + a).ok());                     // number
  EXPECT_FALSE(DigestTable::Parse("alice 0 " + a).ok());                     // 1-based
  EXPECT_FALSE(DigestTable::Parse("alice 1 " + std::string(64, 'g')).ok());  // hex
  EXPECT_FALSE(DigestTable::Parse("alice 1 " + a + "\nalice 1 " + a).ok());  // twice
}

absl::StatusOr<Options> Parse(std::vector<std::string> args) {
  std::vector<char*> argv;
  static char name[] = "mailbench";
  argv.push_back(name);
  for (std::string& a : args) argv.push_back(a.data());
  return ParseOptions(static_cast<int>(argv.size()), argv.data());
}

TEST(OptionsTest, AcceptsLoopbackOnly) {
  EXPECT_TRUE(Parse({"--port", "993"}).ok());
  EXPECT_TRUE(Parse({"--host", "127.0.0.1", "--port=993"}).ok());
  EXPECT_TRUE(Parse({"--host", "127.5.6.7", "--port", "993"}).ok());
  EXPECT_TRUE(Parse({"--host", "::1", "--port", "993"}).ok());
  for (const char* host : {"10.0.0.1", "0.0.0.0", "192.168.1.1", "8.8.8.8", "localhost",
                           "example.com", "::", "::ffff:127.0.0.1", "2001:db8::1", "128.0.0.1"}) {
    absl::StatusOr<Options> o = Parse({"--host", host, "--port", "993"});
    EXPECT_FALSE(o.ok()) << host;
  }
}

TEST(OptionsTest, DefaultsAndBounds) {
  absl::StatusOr<Options> o = Parse({"--port", "143", "--clients", "5"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->sessions, 100u);  // login: 20 x clients
  o = Parse({"--port", "143", "--scenario", "idle", "--clients", "300"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->sessions, 300u);
  EXPECT_FALSE(
      Parse({"--port", "143", "--scenario", "idle", "--clients", "3", "--sessions", "4"}).ok());
  EXPECT_FALSE(Parse({}).ok());                                      // no port
  EXPECT_FALSE(Parse({"--port", "0"}).ok());                         // bad port
  EXPECT_FALSE(Parse({"--port", "1", "--duration", "0"}).ok());      // unbounded
  EXPECT_FALSE(Parse({"--port", "1", "--clients", "100000"}).ok());  // too many
  EXPECT_FALSE(Parse({"--port", "1", "--resume"}).ok());             // resume without TLS
  EXPECT_FALSE(Parse({"--port", "1", "--user", "a b"}).ok());        // needs quoting
  EXPECT_FALSE(Parse({"--port", "1", "--bogus"}).ok());
  EXPECT_FALSE(Parse({"--port", "1", "--scenario", "flood"}).ok());
  EXPECT_TRUE(absl::IsCancelled(Parse({"--help"}).status()));
}

TEST(OptionsTest, SoakFlags) {
  absl::StatusOr<Options> o = Parse({"--port", "993", "--think", "5", "--ramp", "2", "--run-for",
                                     "30", "--source", "127.0.1.1", "--sources", "40"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->sessions, 10000000u);  // --run-for: no count limit
  EXPECT_EQ(o->sources, 40u);
  EXPECT_EQ(o->think_s, 5);
  o = Parse({"--port", "993", "--source", "127.0.0.9"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->sources, 1u);
  EXPECT_FALSE(Parse({"--port", "1", "--source", "10.0.0.1"}).ok());  // not loopback
  EXPECT_FALSE(Parse({"--port", "1", "--sources", "3"}).ok());        // no --source
  EXPECT_FALSE(Parse({"--port", "1", "--source", "127.255.255.250", "--sources", "10"}).ok());
  EXPECT_FALSE(Parse({"--port", "1", "--host", "::1", "--source", "127.0.0.2"}).ok());
  EXPECT_FALSE(Parse({"--port", "1", "--scenario", "idle", "--think", "1"}).ok());
  EXPECT_FALSE(Parse({"--port", "1", "--scenario", "idle", "--run-for", "1"}).ok());
  EXPECT_FALSE(Parse({"--port", "1", "--sha256", "/nonexistent/file"}).ok());
  char path[] = "/tmp/mailbench_test_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string line = "alice 1 " + std::string(64, '0') + "\n";
  ASSERT_EQ(write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  close(fd);
  EXPECT_FALSE(Parse({"--port", "1", "--sha256", path}).ok());  // login: nothing to verify
  o = Parse({"--port", "1", "--scenario", "bulk", "--sha256", path});
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_NE(o->digests, nullptr);
  EXPECT_EQ(o->digests->size(), 1u);
  std::remove(path);
}

TEST(ProcStatsTest, ParsesStatAfterTheLastParenthesis) {
  // Fields 14 and 15 (utime, stime) are 250 and 50 ticks.
  const std::string stat =
      "1234 (a) (b c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 50";
  absl::StatusOr<double> cpu = ParseStatCpuSeconds(stat, 100);
  ASSERT_TRUE(cpu.ok());
  EXPECT_DOUBLE_EQ(*cpu, 3.0);
  EXPECT_FALSE(ParseStatCpuSeconds("garbage", 100).ok());
  EXPECT_FALSE(ParseStatCpuSeconds("1 (x) S 1 2", 100).ok());
}

TEST(ProcStatsTest, ParsesSmapsRollup) {
  const std::string text =
      "5581e000-7ffd [rollup]\nRss:               10240 kB\nPss:                8000 kB\n"
      "Pss_Anon:           100 kB\n";
  ProcSample s;
  ASSERT_TRUE(ParseSmapsRollup(text, &s).ok());
  EXPECT_EQ(s.rss_kb, 10240u);
  EXPECT_EQ(s.pss_kb, 8000u);
  EXPECT_FALSE(ParseSmapsRollup("Rss: 1 kB\n", &s).ok());
}

TEST(ProcStatsTest, SamplesOurselves) {
  absl::StatusOr<ProcSample> s = SampleProc(getpid());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->rss_kb, 0u);
  EXPECT_EQ(s->task_ns.count({getpid(), getpid()}), 1u);  // the main thread
}

TEST(ProcStatsTest, ParsesSchedstat) {
  absl::StatusOr<uint64_t> ns = ParseSchedstatNs("237628521 86023492 1465\n");
  ASSERT_TRUE(ns.ok());
  EXPECT_EQ(*ns, 237628521u);
  EXPECT_FALSE(ParseSchedstatNs("").ok());
  EXPECT_FALSE(ParseSchedstatNs("x 1 2").ok());
}

TEST(ProcStatsTest, CpuBetweenSamplesIsPreciseOnlyForTheSameThreads) {
  ProcSample a;
  ProcSample b;
  a.cpu_s = 1.00;  // ticks: 100 ms apart
  b.cpu_s = 1.10;
  a.task_ns = {{{7, 7}, 1'000'000'000}, {{7, 8}, 500'000'000}};
  b.task_ns = {{{7, 7}, 1'060'000'000}, {{7, 8}, 523'000'000}};
  bool precise = false;
  EXPECT_DOUBLE_EQ(CpuSecondsBetween(a, b, &precise), 0.083);
  EXPECT_TRUE(precise);
  // A thread ended and another began: its time is only in the ticks.
  b.task_ns = {{{7, 7}, 1'060'000'000}, {{7, 9}, 23'000'000}};
  EXPECT_DOUBLE_EQ(CpuSecondsBetween(a, b, &precise), 1.10 - 1.00);
  EXPECT_FALSE(precise);
  // Nothing readable before.
  a.task_ns.clear();
  EXPECT_DOUBLE_EQ(CpuSecondsBetween(a, b, &precise), 1.10 - 1.00);
  EXPECT_FALSE(precise);
}

TEST(ProcStatsTest, BusyThreadIsMeasuredBelowOneTick) {
  // 3 ms of work, less than a tick of /proc/PID/stat, by a thread that is
  // blocked at both samples (a running thread's schedstat lags until it is
  // next descheduled).
  std::mutex m;
  std::condition_variable cv;
  int phase = 0;
  std::thread worker([&] {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return phase == 1; });
    timespec start;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
    volatile uint64_t x = 0;
    for (;;) {
      for (int i = 0; i < 10000; ++i) x = x + i;
      timespec now;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
      if ((now.tv_sec - start.tv_sec) * 1e9 + (now.tv_nsec - start.tv_nsec) > 3e6) break;
    }
    phase = 2;
    cv.notify_all();
    cv.wait(lock, [&] { return phase == 3; });
  });
  absl::StatusOr<ProcSample> a = SampleProc(getpid());
  {
    std::lock_guard<std::mutex> lock(m);
    phase = 1;
  }
  cv.notify_all();
  {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return phase == 2; });
  }
  absl::StatusOr<ProcSample> b = SampleProc(getpid());
  {
    std::lock_guard<std::mutex> lock(m);
    phase = 3;
  }
  cv.notify_all();
  worker.join();
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  bool precise = false;
  double s = CpuSecondsBetween(*a, *b, &precise);
  ASSERT_TRUE(precise);
  EXPECT_GE(s, 0.0029);
  EXPECT_LT(s, 1.0);
}

TEST(ReportTest, NearestRankPercentiles) {
  std::vector<uint64_t> v;
  for (uint64_t i = 100; i >= 1; --i) v.push_back(i * 1000);
  Distribution d = Summarize(v, 1000);
  EXPECT_EQ(d.count, 100u);
  EXPECT_DOUBLE_EQ(d.p50, 50);
  EXPECT_DOUBLE_EQ(d.p90, 90);
  EXPECT_DOUBLE_EQ(d.p99, 99);
  EXPECT_DOUBLE_EQ(d.max, 100);
  EXPECT_DOUBLE_EQ(d.mean, 50.5);
  std::vector<uint64_t> empty;
  EXPECT_EQ(Summarize(empty, 1).count, 0u);
}

TEST(ReportTest, JsonQuoting) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
  JsonObject o;
  o.Add("x", uint64_t{3}).Add("y", "z").Add("b", true);
  EXPECT_EQ(o.Build(), "{\"x\":3,\"y\":\"z\",\"b\":true}");
}

}  // namespace
}  // namespace postern::mailbench
