#include "protocol/line_splitter.h"

#include <algorithm>

namespace postern {

LineSplitter::LineSplitter(size_t max_line) : max_line_(std::max<size_t>(max_line, 2)) {}

void LineSplitter::set_max_line(size_t max_line) { max_line_ = std::max<size_t>(max_line, 2); }

void LineSplitter::Reset() {
  scanned_ = 0;
  discarding_ = false;
  scratch_.clear();
}

LineSplitter::Status LineSplitter::Next(const Buffer& buf, absl::string_view* line,
                                        size_t* consumed) {
  *line = absl::string_view();
  // A long line that straddled two slabs left a large scratch copy: the
  // caller is done with it now, so it goes (memory for a long line is held
  // only while one is being read).
  if (scratch_.capacity() > kKeepScratch) std::string().swap(scratch_);
  size_t skip = 0;  // bytes at the front that belong to a discarded overlong line
  if (discarding_) {
    const size_t lf = buf.Find('\n', scanned_);
    if (lf == Buffer::npos) {
      // Still inside the overlong line: drop everything received so far.
      *consumed = buf.size();
      scanned_ = 0;
      return Status::kNeedMore;
    }
    discarding_ = false;
    skip = lf + 1;
    scanned_ = skip;
  }

  const size_t lf = buf.Find('\n', std::max(scanned_, skip));
  if (lf == Buffer::npos) {
    const size_t have = buf.size() - skip;
    if (have >= max_line_) {
      // Even if the LF came next, the line would be longer than allowed.
      *consumed = buf.size();
      discarding_ = true;
      scanned_ = 0;
      return Status::kTooLong;
    }
    *consumed = skip;
    scanned_ = have;  // offsets after the caller drained `skip` bytes
    return Status::kNeedMore;
  }

  scanned_ = 0;
  *consumed = lf + 1;
  const size_t length = lf + 1 - skip;  // terminator included
  if (length > max_line_) return Status::kTooLong;

  const absl::string_view front = buf.Front();
  size_t text = length - 1;
  if (text > 0) {
    char before_lf;
    if (lf - 1 < front.size()) {
      before_lf = front[lf - 1];
    } else {
      buf.CopyOut(lf - 1, 1, &before_lf);
    }
    if (before_lf == '\r') --text;
  }
  if (skip + text <= front.size()) {
    *line = front.substr(skip, text);
  } else {
    // The line straddles two slabs: the only case that copies.
    scratch_.resize(text);
    buf.CopyOut(skip, text, scratch_.data());
    *line = scratch_;
  }
  return Status::kLine;
}

}  // namespace postern
