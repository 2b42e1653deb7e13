#include "protocol/stream_tracker.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"

namespace postern {

// --- ImapResponseTracker ----------------------------------------------------

size_t ImapResponseTracker::FeedUntilBoundary(absl::string_view b, bool stop) {
  const size_t n = b.size();
  size_t i = 0;
  while (i < n) {
    if (state_ == State::kLiteral) {
      const uint64_t take = std::min<uint64_t>(literal_left_, n - i);
      i += static_cast<size_t>(take);
      literal_left_ -= take;
      if (literal_left_ == 0) {
        // RFC 9051 section 4.3: after the payload the same line goes on.
        state_ = State::kLine;
        tail_len_ = 0;
      }
      continue;
    }
    const void* lf = std::memchr(b.data() + i, '\n', n - i);
    const size_t end =
        lf != nullptr ? static_cast<size_t>(static_cast<const char*>(lf) - b.data()) : n;
    // Keep the last bytes of the line: a literal announcement is at its end.
    const size_t len = end - i;
    if (len >= sizeof(tail_)) {
      std::memcpy(tail_, b.data() + end - sizeof(tail_), sizeof(tail_));
      tail_len_ = sizeof(tail_);
    } else if (len > 0) {
      const size_t keep = std::min<size_t>(tail_len_, sizeof(tail_) - len);
      std::memmove(tail_, tail_ + tail_len_ - keep, keep);
      std::memcpy(tail_ + keep, b.data() + i, len);
      tail_len_ = static_cast<uint8_t>(keep + len);
    }
    state_ = State::kLine;
    if (lf == nullptr) return n;
    i = end + 1;
    EndLine();
    if (stop && state_ == State::kLineStart) return i;
  }
  return n;
}

void ImapResponseTracker::EndLine() {
  size_t len = tail_len_;
  tail_len_ = 0;
  if (len > 0 && tail_[len - 1] == '\r') --len;
  // "{" 1*DIGIT "}" at the very end (a client-style "{n+}" is tolerated).
  if (len >= 3 && tail_[len - 1] == '}') {
    size_t j = len - 1;
    if (j > 0 && tail_[j - 1] == '+') --j;
    size_t digits_end = j;
    while (j > 0 && absl::ascii_isdigit(static_cast<unsigned char>(tail_[j - 1]))) --j;
    if (j > 0 && j < digits_end && tail_[j - 1] == '{') {
      uint64_t v = 0;
      for (size_t k = j; k < digits_end; ++k) {
        const uint64_t d = static_cast<uint64_t>(tail_[k] - '0');
        // Saturates: a stream announcing more than 2^64 bytes never ends.
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
      }
      if (v > 0) {
        state_ = State::kLiteral;
        literal_left_ = v;
      } else {
        state_ = State::kLine;  // "{0}": the line goes on at once
      }
      return;
    }
  }
  state_ = State::kLineStart;
}

void ImapResponseTracker::Spliced(uint64_t n, absl::string_view peeked,
                                  const ImapResponseTracker& ahead) {
  if (peeked.empty()) {
    SkipLiteral(n);
  } else if (n >= peeked.size()) {
    *this = ahead;
    SkipLiteral(n - peeked.size());
  } else {
    Feed(peeked.substr(0, static_cast<size_t>(n)));
  }
}

void ImapResponseTracker::SkipLiteral(uint64_t n) {
  if (state_ != State::kLiteral) return;
  literal_left_ -= std::min(n, literal_left_);
  if (literal_left_ == 0) {
    state_ = State::kLine;
    tail_len_ = 0;
  }
}

// --- Pop3ResponseTracker ------------------------------------------------------

void Pop3ResponseTracker::ClientBytes(absl::string_view bytes) {
  for (char c : bytes) {
    if (c == '\n') {
      EndCommand();
      continue;
    }
    if (c == '\r') continue;
    if (!word_done_) {
      if (c == ' ') {
        word_done_ = true;
      } else if (word_len_ < sizeof(word_)) {
        word_[word_len_++] = absl::ascii_toupper(static_cast<unsigned char>(c));
      } else {
        word_too_long_ = true;
      }
    } else if (c != ' ') {
      has_arg_ = true;
    }
  }
}

void Pop3ResponseTracker::EndCommand() {
  const absl::string_view w(word_, word_len_);
  const bool empty = word_len_ == 0;
  bool multi = false;
  if (!word_too_long_) {
    // RFC 1939 sections 5 and 7, RFC 2449 section 5.
    multi = w == "RETR" || w == "TOP" || w == "CAPA" || ((w == "LIST" || w == "UIDL") && !has_arg_);
  }
  word_len_ = 0;
  word_done_ = false;
  has_arg_ = false;
  word_too_long_ = false;
  // An empty line gets no answer from the servers we relay to.
  if (!empty) Push(multi);
}

void Pop3ResponseTracker::Push(bool multi) {
  if (count_ == kMaxPending) {
    lost_ = true;
    return;
  }
  const uint32_t pos = (head_ + count_) % kMaxPending;
  const uint64_t bit = uint64_t{1} << (pos % 64);
  if (multi) {
    bits_[pos / 64] |= bit;
  } else {
    bits_[pos / 64] &= ~bit;
  }
  ++count_;
}

bool Pop3ResponseTracker::Pop() {
  if (count_ == 0) return false;
  const bool multi = (bits_[head_ / 64] >> (head_ % 64)) & 1;
  head_ = (head_ + 1) % kMaxPending;
  --count_;
  return multi;
}

size_t Pop3ResponseTracker::ServerBytes(absl::string_view b, bool stop) {
  const size_t n = b.size();
  size_t i = 0;
  while (i < n) {
    const char c = b[i];
    switch (server_) {
      case Server::kIdle:
        multi_ = Pop();
        server_ = Server::kStatus;
        status_len_ = 0;
        ok_ = false;
        continue;  // the same byte, as the status line's first
      case Server::kStatus: {
        if (status_len_ < 3) {
          ok_ = (status_len_ == 0 || ok_) && c == "+OK"[status_len_];
          ++status_len_;
        }
        if (c == '\n') {
          ok_ = ok_ && status_len_ >= 3;
          if (ok_ && multi_) {
            server_ = Server::kBody;
          } else {
            server_ = Server::kIdle;
            ++i;
            if (stop) return i;
            continue;
          }
        }
        ++i;
        continue;
      }
      case Server::kBody:
        server_ = c == '.' ? Server::kBodyDot : c == '\n' ? Server::kBody : Server::kBodyLine;
        ++i;
        continue;
      case Server::kBodyLine: {
        const void* lf = std::memchr(b.data() + i, '\n', n - i);
        if (lf == nullptr) return n;
        i = static_cast<size_t>(static_cast<const char*>(lf) - b.data()) + 1;
        server_ = Server::kBody;
        continue;
      }
      case Server::kBodyDot:
      case Server::kBodyDotCr:
        if (c == '\n') {
          // A line holding a single "." ends the answer (RFC 1939 section 3).
          server_ = Server::kIdle;
          ++i;
          if (stop) return i;
          continue;
        }
        server_ = c == '\r' && server_ == Server::kBodyDot ? Server::kBodyDotCr : Server::kBodyLine;
        ++i;
        continue;
    }
  }
  return n;
}

}  // namespace postern
