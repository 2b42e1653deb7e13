// mailbench: an IMAP/POP3 load generator for loopback targets only.
//
// Scenarios (see Usage()): login storm, bulk download, idle sessions held,
// NOOP ping. Prints a human-readable report, then one JSON line with every
// figure (bench/compare parses the last line).

#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/mailbench/options.h"
#include "bench/mailbench/proc_stats.h"
#include "bench/mailbench/report.h"
#include "bench/mailbench/worker.h"

namespace postern::mailbench {
namespace {

double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// Raises the open-files limit to the hard limit and checks the run fits in it.
absl::Status PrepareFileLimit(const Options& o) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return absl::InternalError("getrlimit failed");
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  uint64_t open_at_once =
      o.scenario == Scenario::kIdle ? o.clients + o.concurrency : uint64_t{o.clients};
  if (open_at_once + 64 > rl.rlim_cur) {
    return absl::ResourceExhaustedError(absl::StrCat(
        open_at_once, " sockets at once do not fit the open-files limit of ", rl.rlim_cur));
  }
  return absl::OkStatus();
}

uint64_t Share(uint64_t total, uint32_t parts, uint32_t i) {
  return total / parts + (i < total % parts ? 1 : 0);
}

std::optional<ProcSample> Sample(const Options& o, std::vector<std::string>* notes) {
  if (o.pids.empty()) return std::nullopt;
  absl::StatusOr<ProcSample> s = SampleProcs(o.pids);
  if (!s.ok()) {
    notes->push_back(std::string(s.status().message()));
    return std::nullopt;
  }
  return *s;
}

void PrintDistribution(const char* what, const char* unit, const Distribution& d) {
  if (d.count == 0) return;
  std::cout << absl::StrFormat(
      "  %-34s n=%-7d p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f %s\n", what, d.count, d.p50,
      d.p90, d.p99, d.max, d.mean, unit);
}

int Main(int argc, char** argv) {
  absl::StatusOr<Options> parsed = ParseOptions(argc, argv);
  if (!parsed.ok()) {
    if (absl::IsCancelled(parsed.status())) {
      std::cout << Usage();
      return 0;
    }
    std::cerr << "mailbench: " << parsed.status().message() << "\n(try --help)\n";
    return 2;
  }
  const Options& o = *parsed;
  signal(SIGPIPE, SIG_IGN);
  if (absl::Status s = PrepareFileLimit(o); !s.ok()) {
    std::cerr << "mailbench: " << s.message() << "\n";
    return 2;
  }

  SharedCounters shared;
  std::vector<std::unique_ptr<Worker>> workers;
  for (uint32_t i = 0; i < o.threads; ++i) {
    uint64_t quota = Share(o.sessions, o.threads, i);
    uint32_t concurrency =
        o.scenario == Scenario::kIdle
            ? static_cast<uint32_t>(std::max<uint64_t>(1, Share(o.concurrency, o.threads, i)))
            : static_cast<uint32_t>(std::max<uint64_t>(1, Share(o.clients, o.threads, i)));
    absl::StatusOr<std::unique_ptr<Worker>> w = Worker::Create(o, i, quota, concurrency, &shared);
    if (!w.ok()) {
      std::cerr << "mailbench: " << w.status().message() << "\n";
      return 2;
    }
    workers.push_back(std::move(*w));
  }

  std::vector<std::string> notes;
  std::optional<ProcSample> before = Sample(o, &notes);
  std::optional<ProcSample> held_start;
  std::optional<ProcSample> held_end;
  uint64_t held_count = 0;
  double self_cpu_before = SelfCpuSeconds();
  uint64_t t0 = uv_hrtime();

  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->Run(); });

  if (o.scenario == Scenario::kIdle) {
    // Wait until every session is held in IDLE (or has failed), bounded by --duration.
    const uint64_t deadline = t0 + static_cast<uint64_t>(o.duration_s * 1e9);
    while (shared.settled.load() < o.sessions && uv_hrtime() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    held_start = Sample(o, &notes);
    // Hold, but never past --duration (the workers abort everything then).
    const uint64_t hold_end = uv_hrtime() + static_cast<uint64_t>(o.hold_s * 1e9);
    while (uv_hrtime() < std::min(hold_end, deadline) && shared.held.load() > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    held_count = shared.held.load();
    held_end = Sample(o, &notes);
    for (auto& w : workers) w->Release();
  }
  for (auto& t : threads) t.join();
  uint64_t t1 = uv_hrtime();
  double self_cpu = SelfCpuSeconds() - self_cpu_before;
  std::optional<ProcSample> after = Sample(o, &notes);

  WorkerStats st;
  for (auto& w : workers) st.Merge(std::move(w->stats()));

  const double run_s = (t1 - t0) / 1e9;
  const double wall_s =
      st.last_end_ns > st.first_start_ns ? (st.last_end_ns - st.first_start_ns) / 1e9 : run_s;
  const double transfer_s = st.last_transfer_ns > st.first_transfer_ns
                                ? (st.last_transfer_ns - st.first_transfer_ns) / 1e9
                                : 0;
  Distribution session_ms = Summarize(st.session_ns, 1e6);
  Distribution ready_ms = Summarize(st.ready_ns, 1e6);
  Distribution login_ms = Summarize(st.login_ns, 1e6);
  Distribution connect_login_ms = Summarize(st.connect_login_ns, 1e6);
  Distribution rtt_us = Summarize(st.rtt_ns, 1e3);
  double transfer_sum_s = 0;
  for (uint64_t ns : st.transfer_ns) transfer_sum_s += ns / 1e9;
  Distribution transfer_ms = Summarize(st.transfer_ns, 1e6);
  const double sessions_per_s = wall_s > 0 ? st.sessions_ok / wall_s : 0;
  const double mb = st.transfer_bytes / 1e6;
  const double mb_per_s = transfer_s > 0 ? mb / transfer_s : 0;
  // One session's rate: message bytes over the time spent inside transfers.
  const double session_mb_per_s = transfer_sum_s > 0 ? mb / transfer_sum_s : 0;

  JsonObject j;
  j.Add("tool", "mailbench")
      .Add("label", o.label)
      .Add("scenario", ScenarioName(o.scenario))
      .Add("proto", ProtoName(o.proto))
      .Add("tls", o.tls)
      .Add("resume", o.resume)
      .Add("target", absl::StrCat(o.host, ":", o.port))
      .Add("threads", static_cast<uint64_t>(o.threads))
      .Add("clients", static_cast<uint64_t>(o.clients))
      .Add("sessions", o.sessions)
      .Add("sessions_ok", st.sessions_ok)
      .Add("sessions_failed", st.sessions_failed)
      .Add("tls_resumed", st.tls_resumed)
      .Add("deadline_hit", st.deadline_hit)
      .Add("run_s", run_s)
      .Add("wall_s", wall_s)
      .Add("sessions_per_s", sessions_per_s)
      .Add("session_ms", session_ms)
      .Add("ready_ms", ready_ms)
      .Add("login_ms", login_ms)
      .Add("connect_login_ms", connect_login_ms)
      .Add("bytes_in", st.bytes_in)
      .Add("bytes_out", st.bytes_out)
      .Add("self_cpu_s", self_cpu);
  if (o.scenario == Scenario::kBulk) {
    j.Add("messages", st.messages)
        .Add("payload_bytes", st.transfer_bytes)
        .Add("transfer_s", transfer_s)
        .Add("mb_per_s", mb_per_s)
        .Add("session_mb_per_s", session_mb_per_s)
        .Add("transfer_ms", transfer_ms);
    if (o.digests) j.Add("verified", st.verified).Add("verify_mismatches", st.verify_mismatches);
  }
  if (o.scenario == Scenario::kPing) j.Add("rtt_us", rtt_us);
  if (o.scenario == Scenario::kIdle) j.Add("held", held_count);

  JsonObject proc;
  bool have_proc = before.has_value() && after.has_value();
  double cpu_s = 0;
  bool cpu_precise = false;
  if (have_proc) {
    cpu_s = CpuSecondsBetween(*before, *after, &cpu_precise);
    std::string pids;
    for (int p : o.pids) absl::StrAppend(&pids, pids.empty() ? "" : ",", p);
    proc.Add("pids", pids)
        .Add("cpu_s", cpu_s)
        .Add("cpu_source", cpu_precise ? "schedstat" : "stat")
        .Add("rss_kb_before", before->rss_kb)
        .Add("pss_kb_before", before->pss_kb)
        .Add("rss_kb_after", after->rss_kb)
        .Add("pss_kb_after", after->pss_kb);
    if (st.sessions_ok > 0) proc.Add("cpu_us_per_session", cpu_s * 1e6 / st.sessions_ok);
    if (o.scenario == Scenario::kBulk && mb > 0) proc.Add("cpu_us_per_mb", cpu_s * 1e6 / mb);
    if (held_start && held_end) {
      bool hold_precise = false;
      proc.Add("rss_kb_held", held_end->rss_kb)
          .Add("pss_kb_held", held_end->pss_kb)
          .Add("cpu_s_during_hold", CpuSecondsBetween(*held_start, *held_end, &hold_precise));
      if (held_count > 0) {
        proc.Add("rss_bytes_per_held",
                 (static_cast<double>(held_end->rss_kb) - before->rss_kb) * 1024 / held_count)
            .Add("pss_bytes_per_held",
                 (static_cast<double>(held_end->pss_kb) - before->pss_kb) * 1024 / held_count);
      }
    }
    j.AddRaw("proc", proc.Build());
  }
  if (!st.errors.empty()) {
    JsonObject errors;
    for (const auto& [text, n] : st.errors) errors.Add(text, n);
    j.AddRaw("errors", errors.Build());
  }
  if (!notes.empty()) {
    std::string all;
    for (const std::string& n : notes) absl::StrAppend(&all, all.empty() ? "" : "; ", n);
    j.Add("notes", all);
  }

  if (!o.json_only) {
    std::cout << absl::StrFormat("mailbench %s %s%s %s:%d  threads=%d clients=%d sessions=%d%s\n",
                                 ScenarioName(o.scenario), ProtoName(o.proto), o.tls ? "+tls" : "",
                                 o.host, o.port, o.threads, o.clients, o.sessions,
                                 o.resume ? " resume" : "");
    std::cout << absl::StrFormat("  sessions: %d ok, %d failed in %.3f s = %.1f sessions/s%s\n",
                                 st.sessions_ok, st.sessions_failed, wall_s, sessions_per_s,
                                 st.deadline_hit ? "  (DEADLINE REACHED)" : "");
    if (o.tls) std::cout << absl::StrFormat("  TLS sessions resumed: %d\n", st.tls_resumed);
    PrintDistribution("session (connect..LOGOUT reply)", "ms", session_ms);
    PrintDistribution("ready (connect+TLS+greeting)", "ms", ready_ms);
    PrintDistribution("login (LOGIN/PASS to OK)", "ms", login_ms);
    PrintDistribution("connect..login OK", "ms", connect_login_ms);
    if (o.scenario == Scenario::kBulk) {
      std::cout << absl::StrFormat(
          "  bulk: %d messages, %.3f MB in %.3f s = %.2f MB/s (per session %.2f MB/s)\n",
          st.messages, mb, transfer_s, mb_per_s, session_mb_per_s);
      PrintDistribution("transfer per session", "ms", transfer_ms);
      if (o.digests) {
        std::cout << absl::StrFormat("  sha256: %d messages verified, %d mismatches\n", st.verified,
                                     st.verify_mismatches);
      }
    }
    if (o.scenario == Scenario::kPing) PrintDistribution("NOOP round trip", "us", rtt_us);
    if (o.scenario == Scenario::kIdle) {
      std::cout << absl::StrFormat("  idle: %d sessions held for %.1f s\n", held_count, o.hold_s);
    }
    if (have_proc) {
      std::cout << absl::StrFormat("  proc %s: cpu %.3f s", o.pids.size() == 1 ? "pid" : "pids",
                                   cpu_s);
      if (st.sessions_ok > 0) {
        std::cout << absl::StrFormat(" = %.1f us/session", cpu_s * 1e6 / st.sessions_ok);
      }
      if (o.scenario == Scenario::kBulk && mb > 0) {
        std::cout << absl::StrFormat(", %.1f us/MB", cpu_s * 1e6 / mb);
      }
      std::cout << absl::StrFormat("; rss %d -> %d kB, pss %d -> %d kB\n", before->rss_kb,
                                   after->rss_kb, before->pss_kb, after->pss_kb);
      if (held_end && held_count > 0) {
        std::cout << absl::StrFormat(
            "  held: rss %d kB (+%.0f B/session), pss %d kB (+%.0f B/session)\n", held_end->rss_kb,
            (static_cast<double>(held_end->rss_kb) - before->rss_kb) * 1024 / held_count,
            held_end->pss_kb,
            (static_cast<double>(held_end->pss_kb) - before->pss_kb) * 1024 / held_count);
      }
    }
    std::cout << absl::StrFormat("  mailbench cpu %.3f s\n", self_cpu);
    for (const auto& [text, n] : st.errors) std::cout << "  error x" << n << ": " << text << "\n";
    for (const std::string& n : notes) std::cout << "  note: " << n << "\n";
  }
  std::cout << j.Build() << std::endl;
  return st.sessions_failed == 0 && st.sessions_ok > 0 && !st.deadline_hit ? 0 : 1;
}

}  // namespace
}  // namespace postern::mailbench

int main(int argc, char** argv) { return postern::mailbench::Main(argc, argv); }
