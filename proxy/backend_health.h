#pragma once

// Which backends are up, and how loaded, as seen by this instance; shared by
// all workers (atomics, no locks on the login path).
//
// Passive: `health.failures` consecutive connect or greeting failures mark a
// backend down for `health.cooldown`; a success clears the count. Active: a
// periodic connect-and-greeting check per backend (HealthChecker, run by the
// server) marks it down or up the same way. Load: the sessions this instance
// has open on each backend, so a shard's replicas share its load.
//
// Slots are looked up by backend name, and a reloaded config's BackendHealth
// shares the slots of the backends it keeps with the previous one (their
// health, load and drain state carry over; sessions of either snapshot count
// in the same slot). The map itself is immutable once built.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "proxy/config.h"

namespace postern {

class BackendHealth {
 public:
  struct Slot {
    std::string name;
    std::atomic<uint32_t> failures{0};
    std::atomic<uint64_t> down_until_ms{0};  // monotonic ms; 0: up
    std::atomic<int32_t> sessions{0};
    // Backend-side disconnects in the current second (a backend that dies
    // with its sessions: their clients are disconnected over
    // health.disconnect_spread).
    std::atomic<uint64_t> drop_second{0};
    std::atomic<uint32_t> drops{0};
    // Which of backends[].source_addresses the next login connects from.
    std::atomic<uint32_t> source_turn{0};
    uint32_t NextSource() { return source_turn.fetch_add(1, std::memory_order_relaxed); }
    // Drained by the admin API: no new sessions go there (its sessions are
    // closed by the workers, spread over time).
    std::atomic<bool> drained{false};
  };

  // `previous`: the health of the config this one replaces (may be null).
  BackendHealth(const Config& config, const BackendHealth* previous);

  // Null for a backend not in the config (a directory's host:port).
  Slot* Find(const std::string& name) const;

  static uint64_t NowMs();
  bool Up(const Slot& s) const { return s.down_until_ms.load() <= NowMs(); }
  // Up and not drained: new sessions may go there.
  bool Usable(const Slot& s) const { return !s.drained.load() && Up(s); }
  // Every slot (admin views, metrics).
  template <typename Fn>
  void ForEach(Fn fn) const {
    for (const auto& [name, slot] : slots_) fn(*slot);
  }
  // A connect or greeting failure (passive), or a failed active check.
  void Failed(Slot& s, const HealthConfig& h, absl::string_view why);
  void Succeeded(Slot& s);
  // A session lost its backend unexpectedly; returns how many did within
  // the current second on this backend.
  uint32_t Dropped(Slot& s);

 private:
  absl::flat_hash_map<std::string, std::shared_ptr<Slot>> slots_;
};

}  // namespace postern
