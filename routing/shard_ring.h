#pragma once

// ShardRing: which shard holds a user's mailbox, by consistent hashing over
// weighted shards (issue 10). routing/README.md says why this algorithm and
// gives its measured figures.
//
// A consistent-hash ring in the manner of ketama: every shard puts
// `weight * points_per_weight` points on a 64-bit circle, and a key belongs
// to the shard owning the first point at or after the key's hash (wrapping
// around). Hence:
//  - adding a shard moves to it the keys that fall on its new arcs, and no
//    key between two old shards; removing one moves only its own keys, each
//    to the shard that owns the next point. About weight/total of the keys
//    move, 1/(N+1) when an (N+1)th shard of equal weight joins N.
//  - a shard's share of keys is its share of points in expectation; the
//    spread around it shrinks as 1/sqrt(points).
//  - the ring depends only on the set of (name, weight) pairs: every
//    instance builds the same ring from the same configuration, whatever
//    order the shards are listed in. Lookup() answers with the index in the
//    list Build() was given, so callers map it to their own shard entries.
//
// The hash is fixed and documented (routing/hash64.h): a shard's points are
// the first weight * points_per_weight outputs of SplitMix64 started from
// XxHash64(name, 0); a key's position is XxHash64(key, 0). Points that
// collide are ordered by shard name. A shard's identity is its name:
// renaming a shard moves all of its users.
//
// Immutable once built and shared between threads as
// std::shared_ptr<const ShardRing> (ARCHITECTURE.md, "Threads and sharing").

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace postern {

struct ShardSpec {
  std::string name;  // unique, non-empty; hashed, so it must not change
  uint32_t weight = 1;
};

struct ShardRingOptions {
  // Ring points per unit of weight. The spread of a shard's share around
  // its weight is about 1/sqrt(weight * points_per_weight): 3% for a shard
  // of weight 1 at the default (routing/README.md has the measurements).
  // Part of the ring's definition: every instance must use the same value.
  uint32_t points_per_weight = 1024;
};

class ShardRing {
 public:
  static constexpr uint32_t kMaxWeight = 1000;
  static constexpr size_t kMaxShards = 65536;
  // 4 Mi points take 48 MiB (a 64-bit point and a 32-bit owner each) plus
  // a 16 MiB index; weights summing to 4096 at the default density.
  static constexpr size_t kMaxPoints = size_t{1} << 22;

  // INVALID_ARGUMENT: no shard, an empty or duplicate name, a weight of 0 or
  // over kMaxWeight, points_per_weight of 0, more than kMaxShards shards or
  // kMaxPoints points.
  static absl::StatusOr<std::shared_ptr<const ShardRing>> Build(
      std::vector<ShardSpec> shards, const ShardRingOptions& options = {});

  // The shard for a key already normalized (NormalizeUser): an index into
  // the vector given to Build. Never fails.
  size_t Lookup(absl::string_view normalized_key) const;
  // The same for a precomputed XxHash64(normalized_key, 0).
  size_t LookupHash(uint64_t hash) const;

  size_t size() const { return shards_.size(); }
  const ShardSpec& shard(size_t index) const { return shards_[index]; }
  size_t points() const { return points_.size(); }
  // Heap bytes held by the ring (points, owners, index).
  size_t memory_bytes() const;

 private:
  ShardRing() = default;

  std::vector<ShardSpec> shards_;  // as given to Build
  std::vector<uint64_t> points_;   // sorted
  std::vector<uint32_t> owners_;   // owners_[i]: the shard of points_[i]
  // index_[b]: the first point whose top `index_bits_` bits are >= b, for
  // b in [0, 2^index_bits_]; a lookup searches only index_[b]..index_[b+1].
  std::vector<uint32_t> index_;
  int index_bits_ = 0;
};

// The key a user is placed by: ASCII letters lower-cased (RFC 5321 section
// 2.4 lets only the domain part be case-insensitive, but every mail store
// in use, Dovecot's "%Lu" included, folds the whole name), every other byte
// kept as it is: UTF-8 is not case-folded or normalized, so two spellings
// that differ beyond ASCII are two users. domain_only: the part after the
// last '@' ("" for "alice@"), or the whole name when there is none.
std::string NormalizeUser(absl::string_view user, bool domain_only);

}  // namespace postern
