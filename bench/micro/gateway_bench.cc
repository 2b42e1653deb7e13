// Microbenchmarks of the POP3 gateway's body path: a message as the backend
// sends it (FETCH with a literal) through ImapResponseStream, and its text
// through DotStuffer.

#include <benchmark/benchmark.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "protocol/dot_stuffer.h"
#include "protocol/imap_response_stream.h"

namespace postern {
namespace {

// Mail-shaped text: ~70-character CRLF lines, one in 20 starting with ".".
std::string MailText(size_t total) {
  std::string out;
  out.reserve(total + 80);
  size_t i = 0;
  while (out.size() < total) {
    if (i % 20 == 7) out += '.';
    absl::StrAppend(&out, "Line ", i, " of the message, with some ordinary words to fill it out");
    out.resize(out.size() - out.size() % 70 + 68, 'x');
    out += "\r\n";
    ++i;
  }
  out.resize(total);
  return out;
}

// DotStuffer::Encode + Finish over a message arriving in 16 KiB slabs, the
// output going to a sink that only counts (the host's ToClient).
void BM_DotStuffer(benchmark::State& state) {
  const std::string text = MailText(static_cast<size_t>(state.range(0)));
  DotStuffer stuffer;
  size_t out = 0;
  auto sink = [&out](absl::string_view s) {
    benchmark::DoNotOptimize(s.data());
    out += s.size();
  };
  for (auto _ : state) {
    for (size_t i = 0; i < text.size(); i += 16384) {
      stuffer.Encode(absl::string_view(text).substr(i, 16384), sink);
    }
    stuffer.Finish(sink);
  }
  benchmark::DoNotOptimize(out);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_DotStuffer)->Arg(4096)->Arg(65536)->Arg(1 << 20);

// ImapResponseStream::Feed on "* 1 FETCH (UID n BODY[] {size}" + message +
// ")" + the tagged OK, in 16 KiB slabs; body data handed on as views.
void BM_ImapResponseStreamFetch(benchmark::State& state) {
  const std::string text = MailText(static_cast<size_t>(state.range(0)));
  const std::string wire = absl::StrCat("* 17 FETCH (UID 4711 BODY[] {", text.size(), "}\r\n", text,
                                        ")\r\nG3 OK Fetch completed (0.001 secs).\r\n");
  struct Count : ImapResponseHandler {
    size_t bytes = 0;
    void OnBodyData(absl::string_view d) override { bytes += d.size(); }
  } handler;
  ImapResponseStream stream(handler);
  for (auto _ : state) {
    for (size_t i = 0; i < wire.size(); i += 16384) {
      if (!stream.Feed(absl::string_view(wire).substr(i, 16384)).ok()) state.SkipWithError("parse");
    }
  }
  benchmark::DoNotOptimize(handler.bytes);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(wire.size()));
}
BENCHMARK(BM_ImapResponseStreamFetch)->Arg(4096)->Arg(65536)->Arg(1 << 20);

// Both together, as RETR runs them: the literal's views go through the
// stuffer.
void BM_RetrPath(benchmark::State& state) {
  const std::string text = MailText(static_cast<size_t>(state.range(0)));
  const std::string wire = absl::StrCat("* 17 FETCH (UID 4711 BODY[] {", text.size(), "}\r\n", text,
                                        ")\r\nG3 OK Fetch completed.\r\n");
  struct Retr : ImapResponseHandler {
    DotStuffer stuffer;
    size_t out = 0;
    void OnBodyData(absl::string_view d) override {
      stuffer.Encode(d, [this](absl::string_view s) { out += s.size(); });
    }
    void OnBodyEnd() override {
      stuffer.Finish([this](absl::string_view s) { out += s.size(); });
    }
  } handler;
  ImapResponseStream stream(handler);
  for (auto _ : state) {
    for (size_t i = 0; i < wire.size(); i += 16384) {
      if (!stream.Feed(absl::string_view(wire).substr(i, 16384)).ok()) state.SkipWithError("parse");
    }
  }
  benchmark::DoNotOptimize(handler.out);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(wire.size()));
}
BENCHMARK(BM_RetrPath)->Arg(4096)->Arg(65536)->Arg(1 << 20);

}  // namespace
}  // namespace postern
