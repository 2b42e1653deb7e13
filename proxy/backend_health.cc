#include "proxy/backend_health.h"

#include <uv.h>

#include "proxy/event_log.h"
#include "spdlog/spdlog.h"

namespace postern {

BackendHealth::BackendHealth(const Config& config, const BackendHealth* previous) {
  for (const BackendConfig& b : config.backends) {
    if (previous != nullptr) {
      if (auto it = previous->slots_.find(b.name); it != previous->slots_.end()) {
        slots_[b.name] = it->second;
        continue;
      }
    }
    auto s = std::make_shared<Slot>();
    s->name = b.name;
    slots_[b.name] = std::move(s);
  }
}

BackendHealth::Slot* BackendHealth::Find(const std::string& name) const {
  auto it = slots_.find(name);
  return it == slots_.end() ? nullptr : it->second.get();
}

uint64_t BackendHealth::NowMs() { return uv_hrtime() / 1'000'000; }

void BackendHealth::Failed(Slot& s, const HealthConfig& h, absl::string_view why) {
  const uint32_t n = s.failures.fetch_add(1) + 1;
  if (n < h.failures) return;
  const uint64_t now = NowMs();
  const uint64_t until = now + static_cast<uint64_t>(h.cooldown.count());
  const uint64_t before = s.down_until_ms.exchange(until);
  // One line when it goes down (not on every failure while down).
  if (before <= now) {
    LogEvent("backend_down", spdlog::level::warn)
        .Str("backend", s.name)
        .Num("failures", n)
        .Num("cooldown_ms", static_cast<int64_t>(h.cooldown.count()))
        .Quoted("detail", why)
        .Emit();
  }
}

void BackendHealth::Succeeded(Slot& s) {
  s.failures.store(0);
  const uint64_t before = s.down_until_ms.exchange(0);
  if (before != 0) LogEvent("backend_up").Str("backend", s.name).Emit();
}

uint32_t BackendHealth::Dropped(Slot& s) {
  const uint64_t second = NowMs() / 1000;
  uint64_t seen = s.drop_second.load();
  if (seen != second && s.drop_second.compare_exchange_strong(seen, second)) {
    s.drops.store(0);
  }
  return s.drops.fetch_add(1) + 1;
}

}  // namespace postern
