// LineSplitter over a Buffer of tiny slabs, the bytes appended in random
// pieces. Input: [slab size][max_line: 2 bytes][split seed: 4 bytes]
// [max piece] then the stream.
//
// Checks: every line fits max_line (terminator included) and holds no LF;
// *consumed never exceeds what is buffered; the bytes left in the buffer are
// always the unconsumed tail of the stream (nothing lost, nothing invented);
// and the events (lines and overlong reports) are the same as those of a
// reference splitter that sees the whole stream at once, whatever the
// pieces and the slab size.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "protocol/line_splitter.h"
#include "tests/fuzz/fuzz_util.h"

namespace postern::fuzz {
namespace {

// "L:<line>" or "TOOLONG".
using Events = std::vector<std::string>;

// What any cutting must produce: each LF-terminated line is a line (one CR
// before the LF stripped) or, when longer than max_line, one TOOLONG; an
// unterminated tail of max_line bytes or more is a TOOLONG too.
Events Reference(absl::string_view data, size_t max_line) {
  Events out;
  while (!data.empty()) {
    const size_t lf = data.find('\n');
    if (lf == absl::string_view::npos) {
      if (data.size() >= max_line) out.push_back("TOOLONG");
      break;
    }
    absl::string_view line = data.substr(0, lf);
    if (lf + 1 > max_line) {
      out.push_back("TOOLONG");
    } else {
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      out.push_back("L:" + std::string(line));
    }
    data.remove_prefix(lf + 1);
  }
  return out;
}

void Run(const uint8_t* bytes, size_t size) {
  FuzzInput in(bytes, size);
  const uint8_t slab_choice = in.Byte();
  const size_t slab_size = slab_choice < 224 ? 1 + slab_choice % 64 : 4096;
  const size_t requested_max_line = in.U16() % 600;  // 0 and 1 are raised to 2
  const size_t max_line = std::max<size_t>(requested_max_line, 2);
  SplitRng rng(in.U32());
  const size_t max_piece = 1 + in.Byte();
  const absl::string_view data = in.Rest();

  BufferPool pool(slab_size, 4);
  Events events;
  {
    Buffer buf(pool);
    LineSplitter splitter(requested_max_line);
    POSTERN_FUZZ_CHECK(splitter.max_line() == max_line);
    size_t appended = 0;
    size_t drained = 0;  // every byte drained so far: the buffer holds data[drained, appended)
    auto take_events = [&] {
      for (;;) {
        absl::string_view line;
        size_t consumed = 0;
        const LineSplitter::Status status = splitter.Next(buf, &line, &consumed);
        POSTERN_FUZZ_CHECK(consumed <= buf.size());
        if (status == LineSplitter::Status::kLine) {
          POSTERN_FUZZ_CHECK(line.find('\n') == absl::string_view::npos);
          POSTERN_FUZZ_CHECK(line.size() + 1 <= max_line);
          POSTERN_FUZZ_CHECK(consumed >= line.size() + 1);
          // The line is the stream's bytes right before its terminator.
          const size_t lf = drained + consumed - 1;
          POSTERN_FUZZ_CHECK(data[lf] == '\n');
          const bool cr = lf > 0 && data[lf - 1] == '\r';
          const size_t start = lf - line.size() - (cr ? 1 : 0);
          POSTERN_FUZZ_CHECK(data.substr(start, line.size()) == line);
          events.push_back("L:" + std::string(line));
        } else if (status == LineSplitter::Status::kTooLong) {
          POSTERN_FUZZ_CHECK(consumed > 0);
          events.push_back("TOOLONG");
        }
        buf.Drain(consumed);
        drained += consumed;
        POSTERN_FUZZ_CHECK(drained + buf.size() == appended);
        if (status == LineSplitter::Status::kNeedMore) return;
      }
    };
    for (absl::string_view piece : RandomCuts(data, rng, max_piece)) {
      buf.Append(piece);
      appended += piece.size();
      take_events();
    }
    take_events();
    POSTERN_FUZZ_CHECK(appended == data.size());
    POSTERN_FUZZ_CHECK(buf.ToString() == data.substr(drained));
  }
  POSTERN_FUZZ_CHECK(pool.in_use() == 0);
  POSTERN_FUZZ_CHECK(events == Reference(data, max_line));
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  postern::fuzz::Run(data, size);
  return 0;
}
