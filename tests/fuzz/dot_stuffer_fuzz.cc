// libFuzzer target: DotStuffer's output, decoded with RFC 1939 section 3's
// receiver rule, gives back the input (bare LF made CR LF, CR LF added when
// it did not end with LF), ends with the only terminator line, and does not
// depend on how the input was cut.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "protocol/dot_stuffer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = data[0] % 17 + 1;  // the first byte picks the cutting
  const absl::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  postern::DotStuffer stuffer;
  std::string out;
  for (size_t i = 0; i < in.size(); i += step) stuffer.Encode(in.substr(i, step), out);
  stuffer.Finish(out);

  std::string whole;
  postern::DotStuffer again;
  again.Encode(in, whole);
  again.Finish(whole);
  if (whole != out) abort();

  // What the receiver must get back.
  std::string expect;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) expect += '\r';
    expect += in[i];
  }
  if (!expect.empty() && expect.back() != '\n') expect += "\r\n";

  // Receiver: lines end in CR LF; "." alone ends the response; otherwise a
  // leading "." is dropped.
  std::string got;
  absl::string_view wire = out;
  bool terminated = false;
  while (!wire.empty()) {
    const size_t crlf = wire.find("\r\n");
    if (crlf == absl::string_view::npos) abort();  // every line ends in CR LF
    absl::string_view line = wire.substr(0, crlf);
    wire.remove_prefix(crlf + 2);
    if (line == ".") {
      terminated = true;
      break;
    }
    if (!line.empty() && line[0] == '.') line.remove_prefix(1);
    got.append(line.data(), line.size());
    got += "\r\n";
  }
  if (!terminated || !wire.empty()) abort();  // the terminator is last, and only once
  if (got != expect) abort();
  return 0;
}
