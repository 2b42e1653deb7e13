// POP3 commands: ParsePop3Command on the stream as one line, then
// Pop3CommandReader taking commands (Next) and raw SASL lines (NextLine) off
// a Buffer of tiny slabs, the two interleaved as the input chooses.
// Input: [slab size][max_line: 2][max_sasl_line: 2][error budget]
// [call choices: 8][charge period][split seed: 4][max piece] then the stream.
//
// Checks: parsed commands have the documented shape; lines hold no LF and
// fit their limit; after kFatal only kFatal; the bytes left in the buffer
// are always a tail of the stream; and the events are the same whether the
// stream arrives in one piece, one byte at a time or in random pieces.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "protocol/pop3_command_parser.h"
#include "tests/fuzz/fuzz_util.h"

namespace postern::fuzz {
namespace {

using Event = Pop3CommandReader::Event;

void CheckCommand(const Pop3Command& cmd) {
  POSTERN_FUZZ_CHECK(cmd.name.size() >= 3 && cmd.name.size() <= 4);
  for (char c : cmd.name) {
    POSTERN_FUZZ_CHECK(c >= 0x21 && c <= 0x7e);
    POSTERN_FUZZ_CHECK(!(c >= 'a' && c <= 'z'));
  }
  if (cmd.name == "PASS") {
    POSTERN_FUZZ_CHECK(cmd.args.size() <= 1);
    for (const std::string& a : cmd.args) {
      POSTERN_FUZZ_CHECK(!a.empty());
      POSTERN_FUZZ_CHECK(a.find_first_of(std::string("\r\n\0", 3)) == std::string::npos);
    }
    return;
  }
  POSTERN_FUZZ_CHECK(cmd.args.size() <= kPop3MaxArgs);
  for (size_t i = 0; i < cmd.args.size(); ++i) {
    const std::string& a = cmd.args[i];
    POSTERN_FUZZ_CHECK(!a.empty());
    POSTERN_FUZZ_CHECK(a.find(' ') == std::string::npos);
    for (char c : a) {
      const auto u = static_cast<unsigned char>(c);
      POSTERN_FUZZ_CHECK(u >= 0x20 && u != 0x7f);
    }
    const bool initial_response = cmd.name == "AUTH" && i == 1;
    if (!initial_response) POSTERN_FUZZ_CHECK(a.size() <= kPop3MaxArgLength);
  }
}

void CheckParse(absl::string_view line) {
  const absl::StatusOr<Pop3Command> cmd = ParsePop3Command(line);
  if (!cmd.ok()) {
    POSTERN_FUZZ_CHECK(absl::IsInvalidArgument(cmd.status()));
    POSTERN_FUZZ_CHECK(!cmd.status().message().empty());
    return;
  }
  CheckCommand(*cmd);
  // Parsing is stable: the command written back out parses to itself
  // (PASS keeps its one argument verbatim).
  const std::string again =
      cmd->args.empty() ? cmd->name : absl::StrCat(cmd->name, " ", absl::StrJoin(cmd->args, " "));
  const absl::StatusOr<Pop3Command> reparsed = ParsePop3Command(again);
  POSTERN_FUZZ_CHECK(reparsed.ok());
  POSTERN_FUZZ_CHECK(reparsed->name == cmd->name);
  POSTERN_FUZZ_CHECK(reparsed->args == cmd->args);
}

struct Setup {
  size_t slab_size = 1;
  Pop3ReaderLimits limits;
  uint64_t choices = 0;      // bit i % 64: the i-th event comes from NextLine, not Next
  size_t charge_period = 0;  // after every n-th event the session charges an error; 0: never
};

std::vector<std::string> FeedAll(const Setup& setup, absl::string_view data,
                                 const std::vector<absl::string_view>& pieces) {
  BufferPool pool(setup.slab_size, 4);
  std::vector<std::string> events;
  {
    Buffer buf(pool);
    Pop3CommandReader reader(setup.limits);
    size_t appended = 0;
    size_t calls = 0;  // events so far: which call makes the next one
    bool dead = false;
    auto drain_events = [&] {
      while (!dead) {
        const size_t bit = calls % 64;
        const bool raw = (setup.choices >> bit & 1) != 0;
        std::string line;
        const size_t before = buf.size();
        const Event e = raw ? reader.NextLine(buf, &line) : reader.Next(buf);
        POSTERN_FUZZ_CHECK(buf.size() <= before);
        switch (e) {
          case Event::kNeedMore:
            return;
          case Event::kCommand:
            POSTERN_FUZZ_CHECK(!raw);
            CheckCommand(reader.command());
            events.push_back(absl::StrCat("CMD ", reader.command().name, " ",
                                          absl::StrJoin(reader.command().args, "|")));
            break;
          case Event::kLine:
            POSTERN_FUZZ_CHECK(raw);
            POSTERN_FUZZ_CHECK(line.find('\n') == std::string::npos);
            POSTERN_FUZZ_CHECK(line.size() + 1 <= setup.limits.max_sasl_line);
            events.push_back("LINE " + line);
            break;
          case Event::kError:
            POSTERN_FUZZ_CHECK(!reader.error_text().empty());
            events.push_back("ERR " + reader.error_text());
            break;
          case Event::kFatal:
            POSTERN_FUZZ_CHECK(!reader.error_text().empty());
            events.push_back("FATAL " + reader.error_text());
            dead = true;
            break;
        }
        POSTERN_FUZZ_CHECK(buf.size() < before || e == Event::kFatal);
        ++calls;
        // Every so often the session charges an error of its own (an
        // unknown command, say), as the input chooses.
        if (!dead && setup.charge_period != 0 && calls % setup.charge_period == 0 &&
            !reader.ChargeError()) {
          events.push_back("SPENT");
          dead = true;
        }
      }
    };
    for (absl::string_view piece : pieces) {
      buf.Append(piece);
      appended += piece.size();
      drain_events();
    }
    drain_events();
    // Only whole lines were taken: what is left is the stream's tail.
    POSTERN_FUZZ_CHECK(appended == data.size());
    POSTERN_FUZZ_CHECK(buf.ToString() == data.substr(data.size() - buf.size()));
    if (dead) {
      std::string line;
      POSTERN_FUZZ_CHECK(reader.Next(buf) == Event::kFatal);
      POSTERN_FUZZ_CHECK(reader.NextLine(buf, &line) == Event::kFatal);
      POSTERN_FUZZ_CHECK(!reader.ChargeError());
    }
  }
  POSTERN_FUZZ_CHECK(pool.in_use() == 0);
  return events;
}

void Run(const uint8_t* bytes, size_t size) {
  FuzzInput in(bytes, size);
  Setup setup;
  const uint8_t slab_choice = in.Byte();
  setup.slab_size = slab_choice < 224 ? 1 + slab_choice % 64 : 4096;
  setup.limits.max_line = std::max<size_t>(2, in.U16() % 1100);
  setup.limits.max_sasl_line = std::max<size_t>(2, in.U16() % 2000);
  setup.limits.error_budget = in.Byte() % 16;
  setup.choices = static_cast<uint64_t>(in.U32()) << 32;
  setup.choices |= in.U32();
  setup.charge_period = in.Byte() % 8;
  SplitRng rng(in.U32());
  const size_t max_piece = 1 + in.Byte();
  const absl::string_view data = in.Rest();
  // Slabs of at least a 64th of the stream: Buffer::Find walks the slabs
  // from the head, so one-byte slabs under a 4 KiB stream fed bytewise cost
  // O(n^2) walking and reach no more code (a run did 1,150 inputs a second).
  setup.slab_size = std::max(setup.slab_size, data.size() / 64);

  CheckParse(data);
  const std::vector<std::string> whole = FeedAll(setup, data, {data});
  POSTERN_FUZZ_CHECK(FeedAll(setup, data, ByteCuts(data)) == whole);
  POSTERN_FUZZ_CHECK(FeedAll(setup, data, RandomCuts(data, rng, max_piece)) == whole);
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  postern::fuzz::Run(data, size);
  return 0;
}
