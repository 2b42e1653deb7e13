#include "bench/mailbench/worker.h"

#include <openssl/err.h>

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "bench/mailbench/session.h"

namespace postern::mailbench {
namespace {

// The worker whose loop runs on this thread (for BoringSSL's new-session callback).
thread_local Worker* current_worker = nullptr;

}  // namespace

void WorkerStats::RecordError(absl::string_view why) {
  std::string key(why);
  auto it = errors.find(key);
  if (it != errors.end()) {
    ++it->second;
  } else if (errors.size() < kMaxErrorKinds) {
    errors.emplace(std::move(key), 1);
  } else {
    ++errors["(other errors)"];
  }
}

void WorkerStats::Merge(WorkerStats&& o) {
  auto append = [](std::vector<uint64_t>& to, std::vector<uint64_t>& from) {
    to.insert(to.end(), from.begin(), from.end());
  };
  sessions_ok += o.sessions_ok;
  sessions_failed += o.sessions_failed;
  tls_resumed += o.tls_resumed;
  append(session_ns, o.session_ns);
  append(ready_ns, o.ready_ns);
  append(login_ns, o.login_ns);
  append(connect_login_ns, o.connect_login_ns);
  append(rtt_ns, o.rtt_ns);
  append(transfer_ns, o.transfer_ns);
  transfer_bytes += o.transfer_bytes;
  messages += o.messages;
  verified += o.verified;
  verify_mismatches += o.verify_mismatches;
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  auto min_nonzero = [](uint64_t a, uint64_t b) {
    return a == 0 ? b : b == 0 ? a : std::min(a, b);
  };
  first_start_ns = min_nonzero(first_start_ns, o.first_start_ns);
  first_transfer_ns = min_nonzero(first_transfer_ns, o.first_transfer_ns);
  last_end_ns = std::max(last_end_ns, o.last_end_ns);
  last_transfer_ns = std::max(last_transfer_ns, o.last_transfer_ns);
  held_max += o.held_max;
  for (auto& [k, v] : o.errors) {
    auto it = errors.find(k);
    if (it != errors.end()) {
      it->second += v;
    } else if (errors.size() < kMaxErrorKinds) {
      errors.emplace(k, v);
    } else {
      errors["(other errors)"] += v;
    }
  }
  deadline_hit = deadline_hit || o.deadline_hit;
}

Worker::Worker(const Options& options, uint32_t index, uint64_t quota, uint32_t concurrency,
               SharedCounters* shared)
    : options_(options),
      index_(index),
      quota_(quota),
      concurrency_(concurrency),
      shared_(shared),
      read_buffer_(new char[kReadBufferSize]) {}

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(const Options& options, uint32_t index,
                                                       uint64_t quota, uint32_t concurrency,
                                                       SharedCounters* shared) {
  std::unique_ptr<Worker> w(new Worker(options, index, quota, concurrency, shared));
  if (options.tls) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_method());
    if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed");
    w->ssl_ctx_ = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // A benchmark against our own test certificate on loopback: no verification.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (options.resume) {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
      SSL_CTX_sess_set_new_cb(ctx, OnNewTlsSession);
    } else {
      // Every connection pays a full handshake: that is what the figures compare.
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
  }
  return w;
}

Worker::~Worker() {
  if (resume_session_ != nullptr) SSL_SESSION_free(resume_session_);
  if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
}

int Worker::OnNewTlsSession(SSL* /*ssl*/, SSL_SESSION* session) {
  Worker* w = current_worker;
  if (w == nullptr) return 0;
  if (w->resume_session_ != nullptr) SSL_SESSION_free(w->resume_session_);
  w->resume_session_ = session;
  return 1;  // we keep the reference
}

SSL* Worker::NewSsl() {
  SSL* ssl = SSL_new(ssl_ctx_);
  if (ssl == nullptr) return nullptr;
  SSL_set_connect_state(ssl);
  SSL_set_tlsext_host_name(ssl, options_.sni.c_str());
  if (options_.resume && resume_session_ != nullptr) SSL_set_session(ssl, resume_session_);
  return ssl;
}

std::string Worker::UserFor(uint64_t session_index) const {
  if (options_.user.find("%d") == std::string::npos) return options_.user;
  return absl::StrReplaceAll(options_.user,
                             {{"%d", absl::StrCat(session_index % options_.users + 1)}});
}

void Worker::Run() {
  current_worker = this;
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, OnAsync);
  async_.data = this;
  {
    std::lock_guard<std::mutex> lock(async_mu_);
    async_open_ = true;
  }
  uv_timer_init(&loop_, &deadline_);
  deadline_.data = this;
  uv_timer_start(&deadline_, OnDeadline, static_cast<uint64_t>(options_.duration_s * 1000), 0);
  uv_timer_init(&loop_, &run_for_);
  run_for_.data = this;
  if (options_.run_for_s > 0) {
    uv_timer_start(&run_for_, OnRunFor, static_cast<uint64_t>(options_.run_for_s * 1000), 0);
  }
  if (stop_requested_.load()) {
    StopHere("stopped");
  } else {
    StartMore();
  }
  MaybeFinish();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  ERR_clear_error();
  current_worker = nullptr;
}

void Worker::Release() {
  release_requested_.store(true);
  std::lock_guard<std::mutex> lock(async_mu_);
  if (async_open_) uv_async_send(&async_);
}

void Worker::Stop() {
  stop_requested_.store(true);
  std::lock_guard<std::mutex> lock(async_mu_);
  if (async_open_) uv_async_send(&async_);
}

void Worker::OnAsync(uv_async_t* handle) {
  auto* w = static_cast<Worker*>(handle->data);
  if (w->stop_requested_.load()) {
    w->StopHere("stopped");
    return;
  }
  if (w->release_requested_.load() && !w->releasing_) {
    w->releasing_ = true;
    std::vector<Session*> held;
    for (Session* s : w->sessions_) {
      if (s->held()) held.push_back(s);
    }
    for (Session* s : held) s->Release();
  }
}

void Worker::OnDeadline(uv_timer_t* handle) {
  auto* w = static_cast<Worker*>(handle->data);
  w->stats_.deadline_hit = true;
  w->StopHere("run deadline (--duration) reached");
}

void Worker::OnRunFor(uv_timer_t* handle) {
  auto* w = static_cast<Worker*>(handle->data);
  w->no_more_ = true;
  w->MaybeFinish();
}

void Worker::StopHere(absl::string_view why) {
  stopping_ = true;
  std::vector<Session*> all(sessions_.begin(), sessions_.end());
  for (Session* s : all) s->Abort(why);
  MaybeFinish();
}

void Worker::StartMore() {
  while (!stopping_ && !no_more_ && started_ < quota_ && active_ < concurrency_) {
    // Session indices interleave across workers so "%d" users spread evenly.
    uint64_t global_index = started_ * options_.threads + index_;
    // --ramp: the first `concurrency_` sessions start spread over the ramp.
    double delay = 0;
    if (options_.ramp_s > 0 && started_ < concurrency_) {
      delay = options_.ramp_s * static_cast<double>(started_) / concurrency_;
    }
    auto* s = new Session(this, global_index, delay);
    sessions_.insert(s);
    ++started_;
    ++active_;
    s->Start();
  }
}

void Worker::OnHeld(Session* /*s*/) {
  --active_;
  ++held_;
  stats_.held_max = std::max(stats_.held_max, held_);
  shared_->held.fetch_add(1);
  shared_->settled.fetch_add(1);
  StartMore();
}

void Worker::OnFailedBeforeHold() { shared_->settled.fetch_add(1); }

void Worker::OnSessionClosed(Session* s, bool was_held, bool counted_active) {
  sessions_.erase(s);
  delete s;
  if (counted_active) --active_;
  if (was_held) {
    --held_;
    shared_->held.fetch_sub(1);
  }
  StartMore();
  MaybeFinish();
}

void Worker::MaybeFinish() {
  if (finishing_ || !sessions_.empty() || (!stopping_ && !no_more_ && started_ < quota_)) return;
  finishing_ = true;
  {
    std::lock_guard<std::mutex> lock(async_mu_);
    async_open_ = false;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  uv_timer_stop(&deadline_);
  uv_close(reinterpret_cast<uv_handle_t*>(&deadline_), nullptr);
  uv_timer_stop(&run_for_);
  uv_close(reinterpret_cast<uv_handle_t*>(&run_for_), nullptr);
}

}  // namespace postern::mailbench
