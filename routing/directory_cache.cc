#include "routing/directory_cache.h"

#include <openssl/sha.h>

#include <algorithm>

namespace postern {
namespace {

void AddField(SHA256_CTX* c, absl::string_view s) {
  // Length-prefixed: no two field lists hash alike by shifting a boundary.
  const uint64_t n = s.size();
  SHA256_Update(c, &n, sizeof(n));
  SHA256_Update(c, s.data(), s.size());
}

}  // namespace

DirectoryCache::Key DirectoryCache::MakeKey(absl::string_view directory, uint64_t generation,
                                            const DirectoryRequest& r) {
  SHA256_CTX c;
  SHA256_Init(&c);
  AddField(&c, directory);
  SHA256_Update(&c, &generation, sizeof(generation));
  const uint8_t mech = static_cast<uint8_t>(r.mechanism);
  SHA256_Update(&c, &mech, 1);
  AddField(&c, r.user);
  AddField(&c, r.authzid);
  AddField(&c, r.secret);
  AddField(&c, r.protocol);
  AddField(&c, r.client_ip);
  Key k;
  SHA256_Final(k.data(), &c);
  return k;
}

std::optional<DirectoryAnswer> DirectoryCache::Find(const Key& key, uint64_t now_ms) {
  Shard& s = ShardOf(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return std::nullopt;
  if (it->second.expires_ms <= now_ms) {
    s.map.erase(it);
    return std::nullopt;
  }
  return it->second.answer;
}

void DirectoryCache::Store(const Key& key, absl::string_view user, const DirectoryAnswer& answer,
                           uint64_t now_ms) {
  if (!answer.cacheable || answer.verdict == DirectoryAnswer::Verdict::kUnavailable) return;
  std::chrono::milliseconds ttl =
      answer.verdict == DirectoryAnswer::Verdict::kAccept ? options_.ttl : options_.negative_ttl;
  if (answer.ttl.count() > 0) ttl = std::min(ttl, answer.ttl);
  if (ttl.count() <= 0 || options_.max_entries == 0) return;
  Shard& s = ShardOf(key);
  const size_t cap = std::max<size_t>(1, options_.max_entries / kShards);
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.map.size() >= cap && s.map.find(key) == s.map.end()) {
    // Expired entries first; if none, any one (the map's order is arbitrary).
    for (auto it = s.map.begin(); it != s.map.end();) {
      if (it->second.expires_ms <= now_ms) {
        s.map.erase(it++);
      } else {
        ++it;
      }
    }
    if (s.map.size() >= cap) s.map.erase(s.map.begin());
  }
  Entry& e = s.map[key];
  e.answer = answer;
  e.user = std::string(user);
  e.expires_ms = now_ms + static_cast<uint64_t>(ttl.count());
}

size_t DirectoryCache::ClearUser(absl::string_view user) {
  size_t n = 0;
  for (Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    for (auto it = s.map.begin(); it != s.map.end();) {
      if (it->second.user == user) {
        s.map.erase(it++);
        ++n;
      } else {
        ++it;
      }
    }
  }
  return n;
}

size_t DirectoryCache::Clear() {
  size_t n = 0;
  for (Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    n += s.map.size();
    s.map.clear();
  }
  return n;
}

size_t DirectoryCache::size() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(const_cast<std::mutex&>(s.mu));
    n += s.map.size();
  }
  return n;
}

}  // namespace postern
