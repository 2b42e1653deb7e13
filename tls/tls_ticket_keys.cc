#include "tls/tls_ticket_keys.h"

#include <openssl/base64.h>
#include <openssl/cipher.h>
#include <openssl/digest.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tls/tls_internal.h"

namespace postern {
namespace {

constexpr char kOption[] = "tls.ticket_key_file";
constexpr char kMakeKeyHint[] = "make a key with: openssl rand 80 | base64 -w0; echo";

// The IV of a ticket: AES-CBC's block.
constexpr size_t kIvSize = 16;

}  // namespace

TlsTicketKeys::Snapshot::~Snapshot() {
  if (!keys.empty()) OPENSSL_cleanse(keys.data(), keys.size() * sizeof(Key));
}

TlsTicketKeys::TlsTicketKeys(std::string file, std::chrono::seconds rotation,
                             std::shared_ptr<const Snapshot> keys)
    : file_(std::move(file)), rotation_(rotation), snapshot_(std::move(keys)) {}

absl::StatusOr<std::shared_ptr<const TlsTicketKeys::Snapshot>> TlsTicketKeys::Parse(
    absl::string_view text, const std::string& source) {
  auto snapshot = std::make_shared<Snapshot>();
  std::vector<int> lines;  // the line of each key, for duplicate names
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);  // also a CR of CRLF files
    if (line.empty() || line.front() == '#') continue;
    auto error = [&](absl::string_view what) {
      return absl::FailedPreconditionError(
          absl::StrCat(kOption, ": ", source, ": line ", line_number, ": ", what));
    };
    if (snapshot->keys.size() == kMaxKeys) {
      return error(absl::StrCat("more than ", kMaxKeys, " keys"));
    }
    uint8_t raw[kKeySize + 3];  // room for any base64 line that may hold kKeySize bytes
    size_t raw_len = 0;
    size_t max_len = 0;
    if (!EVP_DecodedLength(&max_len, line.size()) || max_len > sizeof(raw) ||
        !EVP_DecodeBase64(raw, &raw_len, sizeof(raw), reinterpret_cast<const uint8_t*>(line.data()),
                          line.size())) {
      OPENSSL_cleanse(raw, sizeof(raw));
      // Never echo the line: it may be most of a key.
      if (max_len > sizeof(raw)) {
        return error(absl::StrCat("not a key (longer than base64 of ", kKeySize, " bytes; ",
                                  kMakeKeyHint, ")"));
      }
      return error(absl::StrCat("not base64 (one key per line; ", kMakeKeyHint, ")"));
    }
    if (raw_len != kKeySize) {
      OPENSSL_cleanse(raw, sizeof(raw));
      return error(absl::StrCat(raw_len, " bytes, a key is ", kKeySize, " (", kMakeKeyHint, ")"));
    }
    Key key;
    std::memcpy(key.name, raw, sizeof(key.name));
    std::memcpy(key.hmac_key, raw + sizeof(key.name), sizeof(key.hmac_key));
    std::memcpy(key.aes_key, raw + sizeof(key.name) + sizeof(key.hmac_key), sizeof(key.aes_key));
    OPENSSL_cleanse(raw, sizeof(raw));
    for (size_t i = 0; i < snapshot->keys.size(); ++i) {
      if (std::memcmp(snapshot->keys[i].name, key.name, sizeof(key.name)) == 0) {
        OPENSSL_cleanse(&key, sizeof(key));
        return error(absl::StrCat("the key name (first 16 bytes) repeats line ", lines[i]));
      }
    }
    snapshot->keys.push_back(key);
    OPENSSL_cleanse(&key, sizeof(key));
    lines.push_back(line_number);
  }
  if (snapshot->keys.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(kOption, ": ", source, ": no key (", kMakeKeyHint, ")"));
  }
  return std::shared_ptr<const Snapshot>(std::move(snapshot));
}

absl::StatusOr<std::shared_ptr<TlsTicketKeys>> TlsTicketKeys::FromFile(const std::string& path) {
  absl::StatusOr<std::string> text = tls_internal::ReadFile(kOption, path);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::shared_ptr<const Snapshot>> keys = Parse(*text, path);
  OPENSSL_cleanse(text->data(), text->size());
  if (!keys.ok()) return keys.status();
  return std::shared_ptr<TlsTicketKeys>(
      new TlsTicketKeys(path, std::chrono::seconds(0), *std::move(keys)));
}

absl::StatusOr<std::shared_ptr<TlsTicketKeys>> TlsTicketKeys::FromText(absl::string_view text,
                                                                       const std::string& source) {
  absl::StatusOr<std::shared_ptr<const Snapshot>> keys = Parse(text, source);
  if (!keys.ok()) return keys.status();
  return std::shared_ptr<TlsTicketKeys>(
      new TlsTicketKeys("", std::chrono::seconds(0), *std::move(keys)));
}

std::shared_ptr<TlsTicketKeys> TlsTicketKeys::Ephemeral(std::chrono::seconds rotation) {
  if (rotation <= std::chrono::seconds(0)) rotation = kDefaultRotation;
  std::shared_ptr<TlsTicketKeys> keys(new TlsTicketKeys("", rotation, nullptr));
  keys->snapshot_.store(keys->Rotated(nullptr));
  return keys;
}

std::shared_ptr<const TlsTicketKeys::Snapshot> TlsTicketKeys::Rotated(
    const Snapshot* previous) const {
  auto next = std::make_shared<Snapshot>();
  Key key;
  RAND_bytes(reinterpret_cast<uint8_t*>(&key), sizeof(key));  // aborts rather than fail
  next->keys.push_back(key);
  OPENSSL_cleanse(&key, sizeof(key));
  if (previous != nullptr) next->keys.push_back(previous->keys.front());
  next->rotate_at = std::chrono::steady_clock::now() + rotation_;
  return next;
}

absl::Status TlsTicketKeys::Reload() {
  std::lock_guard<std::mutex> lock(writer_mu_);
  if (rotation_ > std::chrono::seconds(0)) {
    snapshot_.store(Rotated(snapshot_.load().get()));
    return absl::OkStatus();
  }
  if (file_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(kOption, ": keys given as text, no file"));
  }
  absl::StatusOr<std::string> text = tls_internal::ReadFile(kOption, file_);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::shared_ptr<const Snapshot>> keys = Parse(*text, file_);
  OPENSSL_cleanse(text->data(), text->size());
  if (!keys.ok()) return keys.status();
  snapshot_.store(*std::move(keys));
  return absl::OkStatus();
}

size_t TlsTicketKeys::size() const { return snapshot_.load()->keys.size(); }

std::vector<std::string> TlsTicketKeys::key_names() const {
  std::shared_ptr<const Snapshot> snapshot = snapshot_.load();
  std::vector<std::string> names;
  for (const Key& key : snapshot->keys) {
    names.push_back(absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(key.name), sizeof(key.name))));
  }
  return names;
}

std::shared_ptr<const TlsTicketKeys::Snapshot> TlsTicketKeys::Current() {
  std::shared_ptr<const Snapshot> snapshot = snapshot_.load();
  if (rotation_ > std::chrono::seconds(0) &&
      std::chrono::steady_clock::now() >= snapshot->rotate_at) {
    std::lock_guard<std::mutex> lock(writer_mu_);
    snapshot = snapshot_.load();  // another handshake may have rotated already
    if (std::chrono::steady_clock::now() >= snapshot->rotate_at) {
      snapshot = Rotated(snapshot.get());
      snapshot_.store(snapshot);
    }
  }
  return snapshot;
}

int TlsTicketKeys::HandleTicket(uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher,
                                HMAC_CTX* hmac, bool encrypt) {
  std::shared_ptr<const Snapshot> snapshot = Current();
  if (encrypt) {
    const Key& key = snapshot->keys.front();
    std::memcpy(key_name, key.name, sizeof(key.name));
    if (!RAND_bytes(iv, kIvSize) ||
        !EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes_key, iv) ||
        !HMAC_Init_ex(hmac, key.hmac_key, sizeof(key.hmac_key), EVP_sha256(), nullptr)) {
      return -1;
    }
    return 1;
  }
  for (size_t i = 0; i < snapshot->keys.size(); ++i) {
    const Key& key = snapshot->keys[i];
    if (std::memcmp(key_name, key.name, sizeof(key.name)) != 0) continue;
    if (!HMAC_Init_ex(hmac, key.hmac_key, sizeof(key.hmac_key), EVP_sha256(), nullptr) ||
        !EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes_key, iv)) {
      return -1;
    }
    return i == 0 ? 1 : 2;  // 2: sealed with an older key, renew it
  }
  return 0;  // a key that is gone (or never was): a full handshake
}

}  // namespace postern
