#pragma once

// Directory answers, positive and negative, kept for a while (TTLs), shared
// by all workers. The key is a SHA-256 over everything that decides the
// answer: the directory (and its file generation, so a reloaded passwd-file
// is never answered from the cache), the mechanism, user, authorization
// identity, the secret, the protocol and the client's address. So a changed
// password is never served from the cache: the new one has no entry, and
// the cache holds no secret, only its hash. Bounded: at most max_entries;
// expired entries go first, then arbitrary ones.

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "routing/directory.h"

namespace postern {

struct DirectoryCacheOptions {
  std::chrono::milliseconds ttl{60'000};           // accepted logins
  std::chrono::milliseconds negative_ttl{10'000};  // refused ones
  size_t max_entries = 100'000;
};

class DirectoryCache {
 public:
  using Key = std::array<uint8_t, 32>;

  explicit DirectoryCache(DirectoryCacheOptions options) : options_(options) {}

  static Key MakeKey(absl::string_view directory, uint64_t generation, const DirectoryRequest& r);

  // A live entry's answer.
  std::optional<DirectoryAnswer> Find(const Key& key, uint64_t now_ms);
  // Keeps `answer` (kAccept or kRefuse, when cacheable) for its TTL.
  void Store(const Key& key, absl::string_view user, const DirectoryAnswer& answer,
             uint64_t now_ms);
  // Forgets every entry of `user` (the admin API); returns how many.
  size_t ClearUser(absl::string_view user);
  // Forgets every entry; returns how many.
  size_t Clear();
  size_t size() const;

 private:
  struct KeyHash {
    size_t operator()(const Key& k) const {
      size_t h;
      static_assert(sizeof(h) <= sizeof(Key));
      __builtin_memcpy(&h, k.data(), sizeof(h));
      return h;
    }
  };
  struct Entry {
    DirectoryAnswer answer;
    std::string user;
    uint64_t expires_ms;
  };
  static constexpr size_t kShards = 16;
  struct Shard {
    std::mutex mu;
    absl::flat_hash_map<Key, Entry, KeyHash> map;
  };
  Shard& ShardOf(const Key& k) { return shards_[k[31] % kShards]; }

  DirectoryCacheOptions options_;
  Shard shards_[kShards];
};

}  // namespace postern
