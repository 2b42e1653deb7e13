#pragma once

// LineSplitter: finds LF-terminated lines at the front of a Buffer.
//
// Zero-copy: a line that lies inside one slab is handed out as a view into
// that slab; only a line that straddles two slabs is copied (into a scratch
// string owned by the splitter). A CR right before the LF is stripped; a bare
// LF is accepted too (RFC 3501 section 2.2 and RFC 1939 section 3 require
// CRLF from clients, but every server in the field accepts LF alone).
//
// The splitter never drains the buffer itself: it says how many bytes the
// caller must Drain() before the next call. It keeps the offset up to which it
// has already looked for a LF, so a line that arrives one byte at a time is
// scanned once in total (O(n), not O(n^2)). Because of that offset the caller
// must not drain anything but `*consumed` between calls (appending is fine).
// Reset() forgets everything, e.g. after the buffer was cleared for STARTTLS.

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "protocol/buffer.h"

namespace postern {

class LineSplitter {
 public:
  enum class Status {
    kLine,      // *line holds a complete line (without CR LF)
    kNeedMore,  // no complete line yet: append more bytes and call again
    kTooLong,   // a line longer than max_line: drain *consumed and answer an error
  };

  // `max_line`: the most bytes a line may have, its CR LF included. Values
  // below 2 are raised to 2 (room for an empty line).
  explicit LineSplitter(size_t max_line);

  // Looks for the next line at the front of `buf`.
  //  kLine: *line is the line without its terminator, valid until `buf`
  //    changes or the next call; *consumed = bytes to Drain from `buf`
  //    (the line and its terminator, plus any discarded tail of an earlier
  //    overlong line).
  //  kTooLong: the line exceeds max_line; *consumed = bytes the caller must
  //    drain now. If the LF has not arrived yet the splitter remembers that it
  //    is inside an overlong line and on later calls silently discards up to
  //    and including the next LF, then continues normally. kTooLong is
  //    reported once per overlong line.
  //  kNeedMore: *consumed is > 0 only when discarding the tail of an
  //    overlong line.
  Status Next(const Buffer& buf, absl::string_view* line, size_t* consumed);

  // Changes the limit for the line being read and those after it (POP3 and
  // IMAP read SASL responses with a larger limit than commands).
  void set_max_line(size_t max_line);
  size_t max_line() const { return max_line_; }

  // True while the tail of an overlong line is being discarded.
  bool discarding() const { return discarding_; }

  // Forgets the scan position and any overlong line in progress.
  void Reset();

 private:
  static constexpr size_t kKeepScratch = 1024;

  size_t max_line_;
  // Bytes at the front of the buffer already known to hold no LF.
  size_t scanned_ = 0;
  bool discarding_ = false;
  std::string scratch_;
};

}  // namespace postern
