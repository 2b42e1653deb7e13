#pragma once

// Session ticket keys for server contexts (RFC 5077 tickets in TLS 1.2, PSK
// tickets in TLS 1.3: BoringSSL seals both through the same callback).
//
// One TlsTicketKeys object is shared by every TlsContext built from it, so a
// certificate reload (a new TlsContext) keeps resuming the sessions of the
// old one, and every instance of a fleet that reads the same key file
// resumes the others' tickets.
//
// The keys are an immutable snapshot swapped atomically: Reload() builds a
// new snapshot off the hot path and handshakes pick up whichever snapshot is
// current when they seal or open a ticket. The first key of a snapshot seals
// new tickets; every key opens them. A ticket sealed with an older key is
// accepted and renewed (sealed again with the newest key); a ticket whose key
// is gone is ignored, and the handshake is a full one.
//
// Key file (tls/README.md): text, one key per line, newest first, each the
// base64 of 80 random bytes laid out as nginx's ssl_session_ticket_key
// (16-byte key name, 32-byte HMAC-SHA256 key, 32-byte AES-256-CBC key).
// Blank lines and lines starting with '#' are skipped. Make a key with
//   openssl rand 80 | base64 -w0; echo

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct hmac_ctx_st HMAC_CTX;

namespace postern {

class TlsTicketKeys {
 public:
  static constexpr size_t kKeySize = 80;      // name 16, HMAC key 32, AES key 32
  static constexpr size_t kKeyNameSize = 16;  // SSL_TICKET_KEY_NAME_LEN
  static constexpr size_t kMaxKeys = 16;      // keys in one file
  static constexpr std::chrono::seconds kDefaultRotation = std::chrono::hours(12);

  // Reads the keys from `path`. Errors name the option, the file and the
  // line: "tls.ticket_key_file: /etc/postern/ticket.keys: line 2: ...".
  static absl::StatusOr<std::shared_ptr<TlsTicketKeys>> FromFile(const std::string& path);
  // Same from the file's text (tests). `source` names it in errors.
  static absl::StatusOr<std::shared_ptr<TlsTicketKeys>> FromText(absl::string_view text,
                                                                 const std::string& source);
  // Random keys held in memory only, for a single instance without a key
  // file: a new key every `rotation`, the previous one still opens tickets
  // (so a ticket lives at most twice `rotation`). Unlike the keys BoringSSL
  // makes inside each SSL_CTX, these survive a certificate reload when the
  // new context shares this object.
  static std::shared_ptr<TlsTicketKeys> Ephemeral(std::chrono::seconds rotation = kDefaultRotation);

  TlsTicketKeys(const TlsTicketKeys&) = delete;
  TlsTicketKeys& operator=(const TlsTicketKeys&) = delete;

  // File keys: re-reads the file and swaps the keys in. On any error the
  // current keys stay, and the error says why (the same messages as
  // FromFile). Ephemeral keys: rotates now (a new sealing key; the previous
  // one still opens tickets).
  // Thread-safe; handshakes running meanwhile use the old or the new keys.
  absl::Status Reload();

  // The key file, or "" for ephemeral keys.
  const std::string& file() const { return file_; }
  // Keys currently held (the first seals, all open).
  size_t size() const;
  // Names (hex, 32 digits) of the current keys, the sealing key first. For
  // logs after a reload: they identify a key without revealing it.
  std::vector<std::string> key_names() const;

  // SSL_CTX_set_tlsext_ticket_key_cb's contract, for TlsContext's callback:
  // with `encrypt` set, writes the newest key's name and a fresh IV and
  // returns 1 (-1 on failure); otherwise looks `key_name` up and returns 1
  // (the newest key), 2 (an older key: renew the ticket) or 0 (unknown key:
  // ignore the ticket).
  int HandleTicket(uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher, HMAC_CTX* hmac,
                   bool encrypt);

 private:
  struct Key {
    uint8_t name[kKeyNameSize];
    uint8_t hmac_key[32];
    uint8_t aes_key[32];
  };
  struct Snapshot {
    ~Snapshot();
    std::vector<Key> keys;  // never empty; keys[0] seals
    // Ephemeral keys: when keys[0] retires.
    std::chrono::steady_clock::time_point rotate_at;
  };

  TlsTicketKeys(std::string file, std::chrono::seconds rotation,
                std::shared_ptr<const Snapshot> keys);
  static absl::StatusOr<std::shared_ptr<const Snapshot>> Parse(absl::string_view text,
                                                               const std::string& source);
  // Ephemeral keys: a new random key first, then the newest of `previous`.
  std::shared_ptr<const Snapshot> Rotated(const Snapshot* previous) const;
  std::shared_ptr<const Snapshot> Current();

  const std::string file_;
  const std::chrono::seconds rotation_;  // zero for file keys
  std::mutex writer_mu_;                 // one Reload or rotation at a time
  std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
};

}  // namespace postern
