// A whole pre-login IMAP dialogue driven from bytes (front_dialogue.h): the
// not-authenticated state of RFC 9051 section 3.1 with CAPABILITY, NOOP,
// LOGOUT, STARTTLS, LOGIN, AUTHENTICATE (SASL-IR, continuations, "*"
// cancels), ID and literals, as ImapFront answers them.
//
// Also checked: the client's ID fields kept for the backend are only those
// of RFC 2971 section 3.3, within its limits (at most 30 fields, names up to
// 30 octets, values up to 1024), never an "x-" field; a trusted-proxy field
// only from a trusted client.

#include <cstddef>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "protocol/imap_front.h"
#include "tests/fuzz/front_dialogue.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using postern::ImapFront;

void CheckClientId(const ImapFront& front) {
  static const char* const kAllowed[] = {"name",    "version",     "os",         "os-version",
                                         "vendor",  "support-url", "address",    "date",
                                         "command", "arguments",   "environment"};
  POSTERN_FUZZ_CHECK(front.client_id().size() <= 30);
  for (const auto& [name, value] : front.client_id()) {
    bool known = false;
    for (const char* a : kAllowed) known = known || absl::EqualsIgnoreCase(name, a);
    POSTERN_FUZZ_CHECK(known);
    POSTERN_FUZZ_CHECK(value.size() <= 1024);
    for (const char ch : value) POSTERN_FUZZ_CHECK(ch != '\r' && ch != '\n' && ch != '\0');
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  postern::fuzz::FuzzDialogue<ImapFront>(data, size, /*imap=*/true);
  // Once more whole, to look at what the front kept of the client's ID.
  postern::fuzz::FuzzInput input(data, size);
  const postern::fuzz::DialogueSetup setup = postern::fuzz::ReadDialogueSetup(input);
  postern::BufferPool pool(4096);
  postern::Buffer in(pool);
  postern::fuzz::DialogueHost host(setup, in);
  host.tls_active_ = setup.options.tls;
  ImapFront front(host, setup.options);
  front.Start();
  in.Append(setup.stream);
  while (!host.ended_ && !host.pending_login_ && !host.tls_pending_ &&
         front.ProcessOne(in) == postern::Front::Step::kHandled) {
  }
  CheckClientId(front);
  if (!setup.options.trusted) POSTERN_FUZZ_CHECK(front.trusted_id().empty());
  return 0;
}
