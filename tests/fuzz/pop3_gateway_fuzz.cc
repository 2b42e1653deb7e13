// libFuzzer target: the POP3 gateway fed from both sides. The input is a
// list of records: a selector byte, then data. Selector 0xFF: the client is
// gone; 0xFE: the backend is gone; 0xFD: the client's backlog toggles
// between high and drained (then Resume). Otherwise bit 0 picks the side
// (0 client, 1 backend) and (selector >> 1) + 1 bytes follow.
//
// Checked: no crash; every command sent to the backend is one of the fixed
// shapes with only numbers filled in (nothing the client sent reaches the
// backend); no line of the client output starts with a single "." unless it
// is a terminator (message text is always dot-stuffed), and a terminator is
// followed by a status line or nothing.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "protocol/buffer.h"
#include "protocol/pop3_gateway.h"

namespace {

class Host : public postern::Pop3GatewayHost {
 public:
  std::string client;
  size_t drained = 0;
  bool high = false;
  bool finished = false;

  void ToClient(absl::string_view b) override {
    if (finished) abort();
    client.append(b.data(), b.size());
  }
  void ToBackend(absl::string_view b) override {
    if (finished) abort();
    CheckCommand(b);
  }
  size_t ClientBacklog() const override { return high ? 1 << 20 : client.size() - drained; }
  void Finish(absl::string_view) override {
    if (finished) abort();  // once
    finished = true;
  }

 private:
  // Tag, then a fixed command whose digit runs (and sequence sets) are
  // replaced by '#'.
  static void CheckCommand(absl::string_view b) {
    if (b.size() < 4 || b.substr(b.size() - 2) != "\r\n") abort();
    b.remove_suffix(2);
    if (b.find_first_of("\r\n") != absl::string_view::npos) abort();
    if (b[0] != 'G') abort();
    size_t i = 1;
    while (i < b.size() && b[i] >= '0' && b[i] <= '9') ++i;
    if (i == 1 || i >= b.size() || b[i] != ' ') abort();
    std::string shape;
    for (size_t k = i + 1; k < b.size(); ++k) {
      const char c = b[k];
      if ((c >= '0' && c <= '9') || c == ':' || c == ',') {
        if (shape.empty() || shape.back() != '#') shape += '#';
      } else {
        shape += c;
      }
    }
    static const char* const kShapes[] = {
        "SELECT INBOX",
        "FETCH #* (UID RFC#.SIZE)",
        "UID FETCH # (BODY.PEEK[])",
        "UID FETCH # (BODY[])",
        "UID FETCH # (BODY.PEEK[HEADER])",
        "UID FETCH # (BODY.PEEK[TEXT]<#.#>)",
        "UID STORE # +FLAGS.SILENT (\\Seen)",
        "UID STORE # +FLAGS.SILENT (\\Deleted)",
        "UID EXPUNGE #",
        "UID SEARCH DELETED",
        "EXPUNGE",
        "NOOP",  // the sync before UID SEARCH DELETED without UIDPLUS
        "LOGOUT",
    };
    for (const char* s : kShapes) {
      if (shape == s) return;
    }
    abort();
  }
};

void CheckClientOutput(absl::string_view out) {
  size_t pos = 0;
  bool after_terminator = false;
  while (pos < out.size()) {
    const size_t crlf = out.find("\r\n", pos);
    if (crlf == absl::string_view::npos) return;  // a body cut short by a broken backend
    const absl::string_view line = out.substr(pos, crlf - pos);
    if (after_terminator && line.substr(0, 3) != "+OK" && line.substr(0, 4) != "-ERR") abort();
    after_terminator = line == ".";
    if (!line.empty() && line[0] == '.' && line != "." && line[1] != '.') abort();
    pos = crlf + 2;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Host host;
  postern::Pop3GatewayOptions options;
  options.listing_chunk = 64;
  // Bit 2 of the first byte: a tiny backlog bound (the pause and resume
  // paths on every answer) or a roomy one (whole sessions up to QUIT).
  options.max_reply_backlog = (size > 0 && (data[0] & 4)) ? 32 : 4096;
  options.top_chunk = 8;
  options.max_messages = 1000;
  options.imap_limits.max_line = 4096;
  options.imap_limits.max_literal = 1 << 16;
  if (size > 0 && (data[0] & 1)) options.seen = postern::Pop3GatewayOptions::Seen::kImmediate;
  postern::Pop3Gateway gw(host, options);
  postern::BufferPool pool(256);
  postern::Buffer in(pool);
  gw.Start({"IMAP4rev1", (size > 0 && (data[0] & 2)) ? "UIDPLUS" : "X"});
  size_t i = size > 0 ? 1 : 0;
  while (i < size && !host.finished) {
    const uint8_t sel = data[i++];
    if (sel == 0xFF) {
      gw.ClientGone();
    } else if (sel == 0xFE) {
      gw.BackendGone();
    } else if (sel == 0xFD) {
      host.high = !host.high;
      host.drained = host.client.size();
      gw.Resume(in);
    } else {
      const size_t n = std::min<size_t>((sel >> 1) + 1, size - i);
      const absl::string_view chunk(reinterpret_cast<const char*>(data) + i, n);
      i += n;
      if (sel & 1) {
        gw.OnBackendData(chunk);
      } else {
        in.Append(chunk);
        gw.OnClientData(in);
      }
    }
  }
  CheckClientOutput(host.client);
  return 0;
}
