// The relay's response trackers (protocol/stream_tracker.h), which decide
// where a drained or stopping session may cut a relayed stream: the IMAP
// server-to-client tracker and the POP3 tracker that also reads the
// client's commands after login.
//
// Input: a first byte (bit 0: IMAP or POP3; the rest seeds the cuts), then
// records: a selector byte and (selector >> 1) + 1 bytes of data; for POP3,
// bit 0 of the selector says whose bytes they are (0 client, 1 server).
//
// Checked, after every record:
//  - fed whole, one byte at a time and in random pieces, the trackers agree
//    (at_boundary, lost, literal_remaining);
//  - fed through FeedUntilBoundary / ServerBytes(stop) until the record is
//    used up, they agree too, every stop short of the record's end is at a
//    boundary, and a stop never takes nothing of a non-empty rest;
//  - IMAP: skipping literal payload with SkipLiteral (as the splicing relay
//    does) leaves the tracker as feeding those bytes would, and so does the
//    relay's peek-then-splice step: peek at some bytes, feed them to a copy,
//    move some number of bytes up to the end of the literal they open, and
//    Spliced().

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "protocol/stream_tracker.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using postern::ImapResponseTracker;
using postern::Pop3ResponseTracker;
using postern::fuzz::ByteCuts;
using postern::fuzz::RandomCuts;
using postern::fuzz::SplitRng;

struct Record {
  bool server;
  absl::string_view data;
};

void FuzzImap(const std::vector<Record>& records, uint32_t seed) {
  ImapResponseTracker whole, bytes, cuts, stops, skips, peeks;
  SplitRng rng(seed);
  for (const Record& r : records) {
    whole.Feed(r.data);
    for (absl::string_view b : ByteCuts(r.data)) bytes.Feed(b);
    for (absl::string_view c : RandomCuts(r.data, rng, 16)) cuts.Feed(c);
    absl::string_view rest = r.data;
    while (!rest.empty()) {
      const size_t n = stops.FeedUntilBoundary(rest);
      POSTERN_FUZZ_CHECK(n > 0 && n <= rest.size());
      rest.remove_prefix(n);
      if (!rest.empty()) POSTERN_FUZZ_CHECK(stops.at_boundary());
    }
    rest = r.data;
    while (!rest.empty()) {
      const uint64_t lit = skips.literal_remaining();
      if (lit > 0) {
        // Skip part of the payload, the way a splice passes it unseen.
        const size_t n = static_cast<size_t>(std::min<uint64_t>(lit, (rest.size() + 1) / 2));
        skips.SkipLiteral(n);
        rest.remove_prefix(n);
      } else {
        skips.Feed(rest.substr(0, 1));
        rest.remove_prefix(1);
      }
    }
    rest = r.data;
    while (!rest.empty()) {
      // A peek of up to 16 bytes (the relay's 4 KiB, scaled to the input),
      // then a splice of up to what the peek saw plus the literal it opens.
      const absl::string_view peeked = rest.substr(0, rng.Chunk(16));
      ImapResponseTracker ahead = peeks;
      ahead.Feed(peeked);
      // (literal_remaining() saturates at UINT64_MAX: no sum with it.)
      const uint64_t reach = std::min<uint64_t>(ahead.literal_remaining(), rest.size());
      const size_t n = rng.Chunk(std::min(peeked.size() + static_cast<size_t>(reach), rest.size()));
      peeks.Spliced(n, peeked, ahead);
      rest.remove_prefix(n);
    }
    for (const ImapResponseTracker* t : {&bytes, &cuts, &stops, &skips, &peeks}) {
      POSTERN_FUZZ_CHECK(t->at_boundary() == whole.at_boundary());
      POSTERN_FUZZ_CHECK(t->literal_remaining() == whole.literal_remaining());
    }
  }
}

void FuzzPop3(const std::vector<Record>& records, uint32_t seed) {
  Pop3ResponseTracker whole, bytes, cuts, stops;
  SplitRng rng(seed);
  bool was_lost = false;
  for (const Record& r : records) {
    if (!r.server) {
      whole.ClientBytes(r.data);
      for (absl::string_view b : ByteCuts(r.data)) bytes.ClientBytes(b);
      for (absl::string_view c : RandomCuts(r.data, rng, 16)) cuts.ClientBytes(c);
      stops.ClientBytes(r.data);
    } else {
      whole.ServerBytes(r.data);
      for (absl::string_view b : ByteCuts(r.data)) bytes.ServerBytes(b);
      for (absl::string_view c : RandomCuts(r.data, rng, 16)) cuts.ServerBytes(c);
      absl::string_view rest = r.data;
      while (!rest.empty()) {
        const size_t n = stops.ServerBytes(rest, /*stop=*/true);
        POSTERN_FUZZ_CHECK(n > 0 && n <= rest.size());
        rest.remove_prefix(n);
        if (!rest.empty()) POSTERN_FUZZ_CHECK(stops.at_boundary());
      }
    }
    for (const Pop3ResponseTracker* t : {&bytes, &cuts, &stops}) {
      POSTERN_FUZZ_CHECK(t->at_boundary() == whole.at_boundary());
      POSTERN_FUZZ_CHECK(t->lost() == whole.lost());
    }
    // Once lost, a tracker never claims a boundary again.
    if (was_lost) POSTERN_FUZZ_CHECK(whole.lost() && !whole.at_boundary());
    was_lost = whole.lost();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  postern::fuzz::FuzzInput in(data, size);
  const uint8_t first = in.Byte();
  std::vector<Record> records;
  while (!in.empty()) {
    const uint8_t sel = in.Byte();
    records.push_back({(sel & 1) != 0, in.Bytes((sel >> 1) + 1)});
  }
  if (first & 1) {
    FuzzPop3(records, first >> 1);
  } else {
    FuzzImap(records, first >> 1);
  }
  return 0;
}
