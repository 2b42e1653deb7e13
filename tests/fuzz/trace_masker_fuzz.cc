// libFuzzer target: TraceMasker never lets a LOGIN / PASS secret through,
// however the client's bytes are cut and whatever the server says between
// them. The input: a first byte choosing IMAP or POP3 and the cutting, then
// the client's bytes. The secret planted in a LOGIN / PASS command must
// never show in the output, and the output stays bounded.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "protocol/trace_masker.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool imap = (data[0] & 1) != 0;
  const size_t step = (data[0] >> 1) % 13 + 1;
  std::string noise(reinterpret_cast<const char*>(data) + 1, size - 1);
  // Without literals every line is a command or a SASL response: the
  // planted LOGIN / PASS is one of those. (Inside a literal of a command
  // that is not masked it would be that command's data, shown.)
  for (char& c : noise) {
    if (c == '{') c = '[';
  }
  static const std::string kSecret = "Zq9SECRETq9Z";
  const std::string planted =
      imap ? "\r\nx LOGIN user " + kSecret + "\r\n" : "\r\nPASS " + kSecret + "\r\n";
  // Noise first (may leave a literal or a SASL exchange open: then the
  // planted line is masked too, as part of it), then the planted command.
  const std::string input = noise + planted;
  postern::TraceMasker m(imap, 1024);
  std::string out;
  for (size_t i = 0; i < input.size(); i += step) {
    m.Client(absl::string_view(input).substr(i, step), &out);
    if (i % 3 == 0) m.Server("+ \r\n", &out);
  }
  // The noise itself may contain the secret's text: only count beyond it.
  size_t in_noise = 0;
  for (size_t at = noise.find(kSecret); at != std::string::npos; at = noise.find(kSecret, at + 1)) {
    ++in_noise;
  }
  size_t in_out = 0;
  for (size_t at = out.find(kSecret); at != std::string::npos; at = out.find(kSecret, at + 1)) {
    ++in_out;
  }
  if (in_out > in_noise) abort();
  if (out.size() > 8 * input.size() + 64) abort();
  return 0;
}
