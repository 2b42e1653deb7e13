#include "protocol/dot_stuffer.h"

#include <cstring>

namespace postern {

void DotStuffer::Encode(absl::string_view in, Sink out) {
  if (in.empty()) return;
  const char* const data = in.data();
  const size_t n = in.size();
  size_t run = 0;  // start of the bytes not yet passed on
  // RFC 1939 section 3: "prior to sending a line of the multi-line response,
  // if any line begins with the termination octet, the line is
  // 'byte-stuffed' by pre-pending the termination octet to that line".
  if (last_ == '\n' && data[0] == '.') out(".");
  size_t i = 0;
  while (i < n) {
    const void* hit = std::memchr(data + i, '\n', n - i);
    if (hit == nullptr) break;
    const size_t k = static_cast<size_t>(static_cast<const char*>(hit) - data);
    const char prev = k > 0 ? data[k - 1] : last_;
    if (options_.repair_bare_lf && prev != '\r') {
      // Lines end in CRLF (RFC 1939 section 3); Dovecot's POP3 server adds
      // the missing CR the same way.
      if (k > run) out(absl::string_view(data + run, k - run));
      out("\r");
      run = k;  // the LF goes out with the next run
    }
    if (k + 1 < n && data[k + 1] == '.') {
      out(absl::string_view(data + run, k + 1 - run));
      out(".");
      run = k + 1;
    }
    i = k + 1;
  }
  if (n > run) out(absl::string_view(data + run, n - run));
  last_ = data[n - 1];
}

void DotStuffer::Finish(Sink out) {
  // "the multi-line response is terminated with the octet pair CRLF, the
  // termination octet, and CRLF" (RFC 1939 section 3): the terminator must
  // start a line of its own.
  if (last_ != '\n') {
    out("\r\n.\r\n");
  } else {
    out(".\r\n");
  }
  Reset();
}

}  // namespace postern
