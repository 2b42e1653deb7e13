// A whole pre-login POP3 dialogue driven from bytes (front_dialogue.h): the
// AUTHORIZATION state of RFC 1939 section 4 with CAPA (RFC 2449), STLS
// (RFC 2595), USER/PASS, AUTH (RFC 5034: initial responses, continuations,
// "*" cancels), XCLIENT from trusted peers, NOOP, QUIT and errors, as
// Pop3Front answers them.

#include <cstddef>
#include <cstdint>

#include "protocol/pop3_front.h"
#include "tests/fuzz/front_dialogue.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  postern::fuzz::FuzzDialogue<postern::Pop3Front>(data, size, /*imap=*/false);
  return 0;
}
