// Microbenchmarks of protocol/: the byte paths every pre-login session runs.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>

#include "protocol/buffer.h"
#include "protocol/imap_command_parser.h"
#include "protocol/line_splitter.h"
#include "protocol/pop3_command_parser.h"

namespace postern {
namespace {

// `total` bytes of typical 32-byte command lines.
std::string ManyLines(size_t total) {
  const std::string line = "a0042 UID FETCH 1:* (FLAGS)\r\n";
  std::string out;
  while (out.size() + line.size() <= total) out += line;
  if (out.empty()) out = line;
  return out;
}

// Session read path: Buffer::Append of what arrived, then LineSplitter::Next
// and Buffer::Drain for every line in it.
void BM_LineSplitter(benchmark::State& state) {
  const std::string data = ManyLines(static_cast<size_t>(state.range(0)));
  BufferPool pool;
  Buffer buf(pool);
  LineSplitter splitter(8192);
  for (auto _ : state) {
    buf.Append(data);
    absl::string_view line;
    size_t consumed = 0;
    while (splitter.Next(buf, &line, &consumed) == LineSplitter::Status::kLine) {
      benchmark::DoNotOptimize(line);
      buf.Drain(consumed);
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_LineSplitter)->Arg(64)->Arg(4096)->Arg(65536);

// ImapCommandParser::Feed on one whole command, as it arrives before login.
void FeedCommand(benchmark::State& state, const std::string& cmd) {
  ImapCommandParser parser(ImapParserLimits{});
  for (auto _ : state) {
    absl::string_view in = cmd;
    for (;;) {
      size_t used = 0;
      ImapCommandParser::Event e = parser.Feed(in, &used);
      in.remove_prefix(used);
      if (e != ImapCommandParser::Event::kContinue) {
        benchmark::DoNotOptimize(e);
        break;
      }
    }
    benchmark::DoNotOptimize(parser.command().args.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(cmd.size()));
}

// ImapCommandParser: LOGIN with quoted credentials.
void BM_ImapLogin(benchmark::State& state) {
  FeedCommand(state, "a001 LOGIN \"joe@example.com\" \"s3cr\\\"et pass\"\r\n");
}
BENCHMARK(BM_ImapLogin);

// ImapCommandParser: AUTHENTICATE PLAIN with a SASL-IR initial response.
void BM_ImapAuthenticate(benchmark::State& state) {
  FeedCommand(state, "a002 AUTHENTICATE PLAIN AGpvZUBleGFtcGxlLmNvbQBzM2NyM3QgcGFzcw==\r\n");
}
BENCHMARK(BM_ImapAuthenticate);

// ImapCommandParser: ID with a parameter list (RFC 2971).
void BM_ImapId(benchmark::State& state) {
  FeedCommand(state,
              "a003 ID (\"name\" \"Thunderbird\" \"version\" \"115.3.1\" \"os\" \"Linux\" "
              "\"vendor\" NIL)\r\n");
}
BENCHMARK(BM_ImapId);

// ImapCommandParser: literal payload path (bulk copy), a non-synchronizing
// literal of Arg bytes.
void BM_ImapLiteral(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  FeedCommand(state,
              "a004 LOGIN joe {" + std::to_string(n) + "+}\r\n" + std::string(n, 'x') + "\r\n");
}
BENCHMARK(BM_ImapLiteral)->Arg(64)->Arg(4096)->Arg(65536);

// ImapCommandParser: the same LOGIN arriving one byte per Feed (worst-case
// segmentation: per-call overhead).
void BM_ImapLoginByteAtATime(benchmark::State& state) {
  const std::string cmd = "a001 LOGIN \"joe@example.com\" \"s3cr\\\"et pass\"\r\n";
  ImapCommandParser parser(ImapParserLimits{});
  for (auto _ : state) {
    for (size_t i = 0; i < cmd.size(); ++i) {
      size_t used = 0;
      benchmark::DoNotOptimize(parser.Feed(absl::string_view(cmd).substr(i, 1), &used));
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(cmd.size()));
}
BENCHMARK(BM_ImapLoginByteAtATime);

// Pop3CommandReader::Next (LineSplitter + ParsePop3Command) over a pipelined
// USER/PASS/CAPA burst.
void BM_Pop3Reader(benchmark::State& state) {
  const std::string data = "CAPA\r\nUSER joe@example.com\r\nPASS s3cret pass\r\nSTAT\r\n";
  BufferPool pool;
  Buffer buf(pool);
  Pop3CommandReader reader;
  for (auto _ : state) {
    buf.Append(data);
    while (reader.Next(buf) == Pop3CommandReader::Event::kCommand) {
      benchmark::DoNotOptimize(reader.command().name.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_Pop3Reader);

// Buffer::Append then Buffer::Drain of Arg bytes (slabs from the pool and back).
void BM_BufferAppendDrain(benchmark::State& state) {
  const std::string data(static_cast<size_t>(state.range(0)), 'x');
  BufferPool pool;
  Buffer buf(pool);
  for (auto _ : state) {
    buf.Append(data);
    benchmark::DoNotOptimize(buf.Front().data());
    buf.Drain(buf.size());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_BufferAppendDrain)->Arg(64)->Arg(4096)->Arg(65536);

// Relay path: Buffer::Reserve/Commit of a read, Buffer::MoveFrom to the
// writer's buffer, Buffer::Drain after the write (no copy of the payload).
void BM_BufferReadMoveDrain(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  BufferPool pool;
  Buffer in(pool);
  Buffer out(pool);
  for (auto _ : state) {
    size_t left = n;
    while (left > 0) {
      absl::Span<char> span = in.Reserve();
      const size_t take = std::min(left, span.size());
      benchmark::DoNotOptimize(span.data());
      in.Commit(take);
      left -= take;
    }
    out.MoveFrom(in);
    out.Drain(out.size());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n));
}
BENCHMARK(BM_BufferReadMoveDrain)->Arg(64)->Arg(4096)->Arg(65536);

}  // namespace
}  // namespace postern
