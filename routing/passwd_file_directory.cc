#include "routing/passwd_file_directory.h"

#include <openssl/mem.h>
#include <sys/stat.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace postern {
namespace {

// A lookup's answer travels through this: the handle marks it cancelled
// when destroyed, and the delivery (always on the worker's loop thread)
// looks before calling. Only the loop thread touches it.
struct LookupState {
  Directory::Done done;
  bool cancelled = false;
  // A slow hash's deadline and work, while both are pending.
  uv_timer_t* deadline = nullptr;
  uv_work_t* work = nullptr;
};

// Stops and frees a lookup's deadline timer (its data: a reference to the
// state).
void CloseDeadline(LookupState* s) {
  if (s->deadline == nullptr) return;
  uv_timer_stop(s->deadline);
  uv_close(reinterpret_cast<uv_handle_t*>(s->deadline), [](uv_handle_t* h) {
    delete static_cast<std::shared_ptr<LookupState>*>(h->data);
    delete reinterpret_cast<uv_timer_t*>(h);
  });
  s->deadline = nullptr;
}

class LookupHandle final : public Directory::Lookup {
 public:
  explicit LookupHandle(std::shared_ptr<LookupState> s) : state_(std::move(s)) {}
  ~LookupHandle() override { state_->cancelled = true; }

 private:
  std::shared_ptr<LookupState> state_;
};

void Deliver(const std::shared_ptr<LookupState>& s, DirectoryAnswer a) {
  if (s->cancelled || !s->done) return;
  Directory::Done done = std::move(s->done);
  done(std::move(a));
}

// Answers on a later turn of the loop (never inside Start).
std::unique_ptr<Directory::Lookup> PostAnswer(const Poster& post, Directory::Done done,
                                              DirectoryAnswer a) {
  auto state = std::make_shared<LookupState>();
  state->done = std::move(done);
  post([state, a = std::move(a)]() mutable { Deliver(state, std::move(a)); });
  return std::make_unique<LookupHandle>(state);
}

DirectoryAnswer Refusal(std::string detail) {
  DirectoryAnswer a;
  a.verdict = DirectoryAnswer::Verdict::kRefuse;
  a.checked = true;
  a.detail = std::move(detail);
  return a;
}

// A slow hash on the libuv thread pool. Owns itself until after_work.
struct VerifyWork {
  uv_work_t req;
  std::shared_ptr<LookupState> state;
  std::shared_ptr<const PasswdFile> snapshot;  // keeps `entry` alive
  const PasswdEntry* entry;
  std::string protocol;
  std::string password;
  bool matched = false;
  bool error = false;
  bool decoy = false;  // an unknown user: the hash is only for the timing
};

}  // namespace

std::unique_ptr<Directory::Lookup> PassthroughDirectory::Start(const DirectoryRequest&, Done done) {
  DirectoryAnswer a;
  a.verdict = DirectoryAnswer::Verdict::kAccept;
  a.checked = false;  // the backend decides
  a.cacheable = false;
  a.detail = "passthrough";
  return PostAnswer(post_, std::move(done), std::move(a));
}

absl::StatusOr<std::shared_ptr<PasswdFileSource>> PasswdFileSource::Open(
    std::string name, std::string path, PasswdFileOptions options) {
  std::shared_ptr<PasswdFileSource> s(
      new PasswdFileSource(std::move(name), std::move(path), std::move(options)));
  absl::Status st = s->Reload();
  if (!st.ok()) return st;
  return s;
}

std::shared_ptr<const PasswdFile> PasswdFileSource::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

bool PasswdFileSource::Changed() const {
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) return false;  // gone: keep what we have
  const int64_t mtime =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  std::lock_guard<std::mutex> lock(mu_);
  return mtime != mtime_ns_ || static_cast<int64_t>(st.st_size) != size_;
}

absl::Status PasswdFileSource::Reload() {
  struct stat st;
  int64_t mtime = 0, size = -1;
  if (stat(path_.c_str(), &st) == 0) {
    mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    size = static_cast<int64_t>(st.st_size);
  }
  absl::StatusOr<std::shared_ptr<const PasswdFile>> loaded = PasswdFile::Load(path_, options_);
  std::lock_guard<std::mutex> lock(mu_);
  // A broken file is not retried until it changes again.
  mtime_ns_ = mtime;
  size_ = size;
  if (!loaded.ok()) return loaded.status();
  current_ = *std::move(loaded);
  generation_.fetch_add(1);
  return absl::OkStatus();
}

PasswdFileDirectory::PasswdFileDirectory(std::shared_ptr<PasswdFileSource> source, uv_loop_t* loop,
                                         Poster post, std::chrono::milliseconds timeout)
    : source_(std::move(source)), loop_(loop), post_(std::move(post)), timeout_(timeout) {}

DirectoryAnswer PasswdFileDirectory::Answer(const PasswdEntry& entry, bool matched,
                                            absl::string_view protocol) {
  if (!matched) return Refusal("password mismatch");
  if (entry.nologin) {
    // Dovecot: nologin refuses the login, with reason= for the client. The
    // text needs a code of its own to be shown (the fronts give their own
    // words for the generic ones): Dovecot 2.3 answers `NO [CONTACTADMIN]
    // <reason>` and `-ERR [AUTH] <reason>`.
    DirectoryAnswer a = Refusal("nologin");
    a.text = std::string(entry.reason);
    if (!a.text.empty()) a.code = protocol == "pop3" ? "AUTH" : "CONTACTADMIN";
    return a;
  }
  DirectoryAnswer a;
  a.verdict = DirectoryAnswer::Verdict::kAccept;
  a.checked = true;
  a.backend_user = std::string(entry.destuser);
  a.host = std::string(entry.host);
  a.port = entry.port;
  for (const PasswdExtraField& f : entry.extra_fields) {
    if (f.key == "pass") {
      a.backend_password = std::string(f.value);  // Dovecot: the backend's password
    } else if (f.key == "master" && (f.value.empty() || f.value == "y" || f.value == "yes")) {
      a.master = true;  // log in with the backend's master user
    } else if (f.key == "backend") {
      a.backend = std::string(f.value);  // Postern: a configured backend's name
    } else if (f.key == "shard") {
      a.shard = std::string(f.value);
    }
  }
  a.detail = "passwd-file";
  return a;
}

const PasswdEntry* PasswdFileDirectory::Decoy(const PasswdFile& file) {
  // The costliest scheme among the first entries (a file usually holds one
  // scheme; with several, unknown users cost like the slowest).
  // A rough cost: the family first, then its own parameters (argon2's
  // memory times passes, crypt's rounds).
  auto number_after = [](absl::string_view s, absl::string_view key) -> double {
    const size_t at = s.find(key);
    if (at == absl::string_view::npos) return 0;
    double v = 0;
    for (size_t i = at + key.size(); i < s.size() && absl::ascii_isdigit(s[i]); ++i) {
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  auto cost = [&](absl::string_view field) -> double {
    const std::string lower = absl::AsciiStrToLower(field);
    if (absl::StrContains(lower, "argon2")) {
      return 6e12 + number_after(lower, "m=") * std::max(1.0, number_after(lower, "t="));
    }
    constexpr std::pair<absl::string_view, double> kRanks[] = {
        {"{blf-crypt}", 5e12},    {"$2", 5e12},  {"{sha512-crypt}", 4e12}, {"$6$", 4e12},
        {"{sha256-crypt}", 3e12}, {"$5$", 3e12}, {"{md5-crypt}", 2e12},    {"$1$", 2e12}};
    for (const auto& [prefix, rank] : kRanks) {
      if (absl::StartsWith(lower, prefix)) return rank + number_after(lower, "rounds=");
    }
    return IsSlowScheme(field) ? 1e12 : 0;
  };
  const PasswdEntry* best = nullptr;
  double best_cost = -1;
  size_t seen = 0;
  for (const PasswdEntry& e : file.entries()) {
    if (e.password.empty()) continue;
    const double c = cost(e.password);
    if (c > best_cost) {
      best = &e;
      best_cost = c;
    }
    if (++seen == 64) break;
  }
  return best;
}

std::unique_ptr<Directory::Lookup> PasswdFileDirectory::Start(const DirectoryRequest& request,
                                                              Done done) {
  if (request.mechanism == DirectoryRequest::Mechanism::kXoauth2 ||
      request.mechanism == DirectoryRequest::Mechanism::kOauthbearer) {
    return PostAnswer(post_, std::move(done),
                      Refusal("passwd-file checks passwords, not OAuth tokens"));
  }
  if (!request.authzid.empty() && request.authzid != request.user) {
    return PostAnswer(post_, std::move(done),
                      Refusal("passwd-file: no authorization identity other than the user"));
  }
  std::shared_ptr<const PasswdFile> snapshot = source_->Current();
  const PasswdEntry* entry = snapshot != nullptr ? snapshot->Find(request.user) : nullptr;
  // An unknown user costs the same hash as a known one (checked against
  // another entry's field, the answer then a refusal): the response time
  // does not tell which users exist.
  const bool decoy = entry == nullptr;
  if (decoy && snapshot != nullptr) entry = Decoy(*snapshot);
  if (entry == nullptr) return PostAnswer(post_, std::move(done), Refusal("unknown user"));
  if (entry->password.empty()) {
    // Dovecot allows an empty field (no password login); we never match it.
    return PostAnswer(post_, std::move(done), Refusal("no password set"));
  }
  if (!IsSlowScheme(entry->password)) {
    absl::StatusOr<bool> ok = VerifyPassword(request.secret, entry->password);
    if (decoy) return PostAnswer(post_, std::move(done), Refusal("unknown user"));
    if (!ok.ok()) {
      DirectoryAnswer a = Refusal(absl::StrCat("bad password field: ", ok.status().message()));
      return PostAnswer(post_, std::move(done), std::move(a));
    }
    return PostAnswer(post_, std::move(done), Answer(*entry, *ok, request.protocol));
  }
  // crypt and argon2 take milliseconds to seconds: the thread pool.
  auto state = std::make_shared<LookupState>();
  state->done = std::move(done);
  auto* w = new VerifyWork{};
  w->req.data = w;
  w->state = state;
  w->snapshot = std::move(snapshot);
  w->entry = entry;
  w->protocol = request.protocol;
  w->password = request.secret;
  w->decoy = decoy;
  int r = uv_queue_work(
      loop_, &w->req,
      [](uv_work_t* req) {
        auto* w = static_cast<VerifyWork*>(req->data);
        absl::StatusOr<bool> ok = VerifyPassword(w->password, w->entry->password);
        w->error = !ok.ok();
        w->matched = ok.ok() && *ok;
      },
      [](uv_work_t* req, int status) {
        auto* w = static_cast<VerifyWork*>(req->data);
        OPENSSL_cleanse(w->password.data(), w->password.size());
        w->state->work = nullptr;
        CloseDeadline(w->state.get());
        if (status == 0) {
          Deliver(w->state, w->decoy ? Refusal("unknown user")
                            : w->error
                                ? Refusal("bad password field")
                                : PasswdFileDirectory::Answer(*w->entry, w->matched, w->protocol));
        } else {
          Deliver(w->state, DirectoryAnswer::Unavailable("password check canceled"));
        }
        delete w;
      });
  if (r != 0) {
    OPENSSL_cleanse(w->password.data(), w->password.size());
    delete w;
    Done d = std::move(state->done);
    return PostAnswer(post_, std::move(d),
                      DirectoryAnswer::Unavailable(absl::StrCat("thread pool: ", uv_strerror(r))));
  }
  state->work = &w->req;
  // The lookup's own bound: a pool busy with other hashes (a flood of slow
  // schemes) answers "unavailable" instead of keeping the client waiting.
  // The work is dropped from the queue if it has not started; a hash
  // already running finishes and its answer goes nowhere.
  auto* t = new uv_timer_t;
  uv_timer_init(loop_, t);
  t->data = new std::shared_ptr<LookupState>(state);
  state->deadline = t;
  uv_timer_start(
      t,
      [](uv_timer_t* timer) {
        std::shared_ptr<LookupState> s = *static_cast<std::shared_ptr<LookupState>*>(timer->data);
        CloseDeadline(s.get());
        if (s->work != nullptr) uv_cancel(reinterpret_cast<uv_req_t*>(s->work));
        Deliver(s, DirectoryAnswer::Unavailable("password check timed out"));
      },
      static_cast<uint64_t>(timeout_.count()), 0);
  return std::make_unique<LookupHandle>(state);
}

}  // namespace postern
