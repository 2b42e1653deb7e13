#include "proxy/snapshot.h"

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace postern {
namespace {

absl::StatusOr<std::shared_ptr<const TlsContext>> ServerTls(const Config& config,
                                                            const Snapshot* previous) {
  if (!config.tls_needed) return std::shared_ptr<const TlsContext>();
  TlsServerOptions o;
  o.certificate_file = config.tls.certificate;
  o.key_file = config.tls.key;
  for (const TlsCertificateConfig& c : config.tls.certificates) {
    o.certificates.push_back(TlsCertificateFiles{c.certificate, c.key});
  }
  o.min_version = config.tls.min_version;
  o.session_tickets = config.tls.session_tickets;
  if (config.tls.session_tickets) {
    // Ticket keys outlive a reload: tickets issued before it still resume.
    const std::shared_ptr<TlsTicketKeys>* before =
        previous != nullptr && previous->tls != nullptr ? &previous->tls->ticket_keys() : nullptr;
    const std::string& file = config.tls.ticket_key_file;
    if (before != nullptr && *before != nullptr && (*before)->file() == file) {
      if (!file.empty()) {
        // The same file: read again (a rotation); on error the old keys stay
        // and the reload is refused with the reason.
        absl::Status st = (*before)->Reload();
        if (!st.ok()) return st;
      }
      o.ticket_keys = *before;
    } else if (!file.empty()) {
      auto keys = TlsTicketKeys::FromFile(file);
      if (!keys.ok()) return keys.status();
      o.ticket_keys = *std::move(keys);
    } else {
      // One instance without a key file: keys in memory, rotated.
      o.ticket_keys = TlsTicketKeys::Ephemeral();
    }
  }
  return TlsContext::CreateServer(o);
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Snapshot>> BuildSnapshot(std::shared_ptr<const Config> config,
                                                              const Snapshot* previous) {
  auto s = std::make_shared<Snapshot>();
  s->serial = previous != nullptr ? previous->serial + 1 : 1;
  const Config& c = *config;
  absl::StatusOr<std::shared_ptr<const TlsContext>> tls = ServerTls(c, previous);
  if (!tls.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(c.source, ": ", tls.status().message()));
  }
  s->tls = *std::move(tls);
  for (const BackendConfig& b : c.backends) {
    if (b.tls == BackendTls::kNone) continue;
    TlsClientOptions o;
    o.verify_peer = b.tls_verify;
    o.ca_file = b.tls_ca_file;
    auto ctx = TlsContext::CreateClient(o);
    if (!ctx.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(c.source, ": backends: ", b.name, ": ", ctx.status().message()));
    }
    if (!b.tls_verify) {
      spdlog::warn("backend {}: TLS without certificate verification (tls_verify: false)", b.name);
    }
    s->backend_tls[b.name] = *std::move(ctx);
  }
  for (const DirectoryConfig& d : c.directories) {
    if (d.type != DirectoryConfig::Type::kPasswdFile) continue;
    PasswdFileOptions o;
    o.case_insensitive = d.case_insensitive;
    auto source = PasswdFileSource::Open(d.name, d.path, o);
    if (!source.ok()) return source.status();
    s->passwd_files[d.name] = *std::move(source);
  }
  s->health = std::make_shared<BackendHealth>(c, previous ? previous->health.get() : nullptr);
  if (previous != nullptr && previous->abuse != nullptr && previous->abuse->policy() == c.abuse) {
    s->abuse = previous->abuse;
  } else {
    auto table = AbuseTable::Create(c.abuse);
    if (!table.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(c.source, ": abuse: ", table.status().message()));
    }
    s->abuse = *std::move(table);
  }
  s->cache = std::make_shared<DirectoryCache>(
      DirectoryCacheOptions{c.auth_cache.ttl, c.auth_cache.negative_ttl, c.auth_cache.max_entries});
  s->config = std::move(config);
  return std::shared_ptr<const Snapshot>(std::move(s));
}

absl::Status CheckReloadable(const Config& running, const Config& next) {
  // "postern.yaml:12: listeners[0].address cannot change ...": the line of
  // the first of `keys` the new file has (none when it has none of them).
  auto refuse = [&](absl::string_view what, std::initializer_list<absl::string_view> keys) {
    std::string where = next.source;
    for (absl::string_view key : keys) {
      auto it = next.lines.find(key);
      if (it == next.lines.end()) continue;
      absl::StrAppend(&where, ":", it->second);
      break;
    }
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": ", what, " cannot change on a reload (restart Postern)"));
  };
  if (running.workers != next.workers) return refuse("workers", {"workers"});
  if (running.user != next.user || running.group != next.group) {
    return refuse("user/group", {running.user != next.user ? "user" : "group", "user", "group"});
  }
  if (running.admin.enabled != next.admin.enabled ||
      running.admin.address.text != next.admin.address.text) {
    return refuse("admin.address", {"admin.address", "admin"});
  }
  if (running.admin.token != next.admin.token) {
    return refuse("admin.token_file's token", {"admin.token_file", "admin"});
  }
  if (running.listeners.size() != next.listeners.size()) {
    return refuse(absl::StrCat("the number of listeners (", running.listeners.size(), " -> ",
                               next.listeners.size(), ")"),
                  {"listeners"});
  }
  for (size_t i = 0; i < next.listeners.size(); ++i) {
    const ListenerConfig& a = running.listeners[i];
    const ListenerConfig& b = next.listeners[i];
    const std::string key = absl::StrCat("listeners[", i, "]");
    const std::string address = absl::StrCat(key, ".address");
    // The address first: a default name ("imap-993") follows it.
    for (auto [differs, field] :
         {std::pair<bool, const char*>{a.address.text != b.address.text, ".address"},
          {a.name != b.name, ".name"},
          {a.protocol != b.protocol, ".protocol"},
          {a.backlog != b.backlog, ".backlog"}}) {
      if (!differs) continue;
      const std::string path = absl::StrCat(key, field);
      // A key left out (a default name or backlog): the listener's address.
      return refuse(path, {path, address, "listeners"});
    }
  }
  return absl::OkStatus();
}

}  // namespace postern
