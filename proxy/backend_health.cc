#include "proxy/backend_health.h"

#include <uv.h>

#include "proxy/log_text.h"
#include "spdlog/spdlog.h"

namespace postern {

BackendHealth::BackendHealth(const Config& config) {
  for (const BackendConfig& b : config.backends) {
    auto s = std::make_unique<Slot>();
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
    spdlog::warn("backend down: backend={} failures={} cooldown_ms={} detail=\"{}\"", s.name, n,
                 h.cooldown.count(), LogQuoted(why));
  }
}

void BackendHealth::Succeeded(Slot& s) {
  s.failures.store(0);
  const uint64_t before = s.down_until_ms.exchange(0);
  if (before != 0) spdlog::info("backend up: backend={}", s.name);
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
