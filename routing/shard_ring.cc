#include "routing/shard_ring.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "routing/hash64.h"

namespace postern {

absl::StatusOr<std::shared_ptr<const ShardRing>> ShardRing::Build(std::vector<ShardSpec> shards,
                                                                  const ShardRingOptions& options) {
  if (shards.empty()) return absl::InvalidArgumentError("shard ring: no shard");
  if (shards.size() > kMaxShards) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ring: ", shards.size(), " shards (at most ", kMaxShards, ")"));
  }
  if (options.points_per_weight == 0) {
    return absl::InvalidArgumentError("shard ring: points_per_weight must be at least 1");
  }
  std::vector<absl::string_view> names;
  names.reserve(shards.size());
  size_t total = 0;
  for (const ShardSpec& s : shards) {
    if (s.name.empty()) return absl::InvalidArgumentError("shard ring: a shard has no name");
    names.push_back(s.name);
    if (s.weight == 0 || s.weight > kMaxWeight) {
      return absl::InvalidArgumentError(absl::StrCat("shard ring: shard '", s.name, "' has weight ",
                                                     s.weight, " (1 to ", kMaxWeight, ")"));
    }
    total += static_cast<size_t>(s.weight) * options.points_per_weight;
  }
  std::sort(names.begin(), names.end());
  const auto dup = std::adjacent_find(names.begin(), names.end());
  if (dup != names.end()) {
    return absl::InvalidArgumentError(absl::StrCat("shard ring: duplicate shard '", *dup, "'"));
  }
  if (total > kMaxPoints) {
    return absl::InvalidArgumentError(absl::StrCat("shard ring: ", total, " points (at most ",
                                                   kMaxPoints, "): lower the weights"));
  }

  // Every shard's points: SplitMix64 from XxHash64(name).
  struct Point {
    uint64_t hash;
    uint32_t owner;
  };
  std::vector<Point> all;
  all.reserve(total);
  for (size_t i = 0; i < shards.size(); ++i) {
    uint64_t state = XxHash64(shards[i].name, 0);
    const size_t n = static_cast<size_t>(shards[i].weight) * options.points_per_weight;
    for (size_t j = 0; j < n; ++j) all.push_back({SplitMix64(&state), static_cast<uint32_t>(i)});
  }
  // Sorted by hash; equal hashes by name, so that the listing order of the
  // shards never matters.
  std::sort(all.begin(), all.end(), [&](const Point& a, const Point& b) {
    if (a.hash != b.hash) return a.hash < b.hash;
    return shards[a.owner].name < shards[b.owner].name;
  });

  std::shared_ptr<ShardRing> ring(new ShardRing());
  ring->points_.reserve(all.size());
  ring->owners_.reserve(all.size());
  for (const Point& p : all) {
    ring->points_.push_back(p.hash);
    ring->owners_.push_back(p.owner);
  }
  // About one point per index bucket: 2^bits >= points, at least 2^8.
  int bits = 8;
  while (bits < 24 && (size_t{1} << bits) < all.size()) ++bits;
  ring->index_bits_ = bits;
  const size_t buckets = size_t{1} << bits;
  ring->index_.resize(buckets + 1);
  size_t p = 0;
  for (size_t b = 0; b <= buckets; ++b) {
    // The first point whose top bits are >= b.
    while (p < all.size() && (all[p].hash >> (64 - bits)) < b) ++p;
    ring->index_[b] = static_cast<uint32_t>(p);
  }
  ring->shards_ = std::move(shards);
  return std::shared_ptr<const ShardRing>(std::move(ring));
}

size_t ShardRing::LookupHash(uint64_t hash) const {
  const size_t b = static_cast<size_t>(hash >> (64 - index_bits_));
  const auto first = points_.begin() + index_[b];
  const auto last = points_.begin() + index_[b + 1];
  // The first point >= hash: in this bucket, or else the first point of the
  // buckets after it (index_[b + 1]), or else the ring wraps to point 0.
  size_t at = static_cast<size_t>(std::lower_bound(first, last, hash) - points_.begin());
  if (at == points_.size()) at = 0;
  return owners_[at];
}

size_t ShardRing::Lookup(absl::string_view normalized_key) const {
  return LookupHash(XxHash64(normalized_key, 0));
}

size_t ShardRing::memory_bytes() const {
  return points_.capacity() * sizeof(uint64_t) + owners_.capacity() * sizeof(uint32_t) +
         index_.capacity() * sizeof(uint32_t);
}

std::string NormalizeUser(absl::string_view user, bool domain_only) {
  if (domain_only) {
    const size_t at = user.rfind('@');
    if (at != absl::string_view::npos) user.remove_prefix(at + 1);
  }
  return absl::AsciiStrToLower(user);
}

}  // namespace postern
