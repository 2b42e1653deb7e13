#include "bench/mailbench/proc_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace postern::mailbench {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Each thread's time on a CPU; an empty map when any is unreadable (a thread
// that ends while the directory is read, or a kernel without schedstat).
std::map<std::pair<int, int>, uint64_t> SampleTasks(int pid) {
  std::map<std::pair<int, int>, uint64_t> out;
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  bool ok = true;
  while (struct dirent* e = readdir(d)) {
    int tid = 0;
    if (!absl::SimpleAtoi(e->d_name, &tid)) continue;  // "." and ".."
    absl::StatusOr<std::string> text = ReadFile(absl::StrCat(dir, "/", tid, "/schedstat"));
    absl::StatusOr<uint64_t> ns =
        text.ok() ? ParseSchedstatNs(*text) : absl::StatusOr<uint64_t>(text.status());
    if (!ns.ok()) {
      ok = false;
      break;
    }
    out[{pid, tid}] = *ns;
  }
  closedir(d);
  if (!ok) out.clear();
  return out;
}

}  // namespace

absl::StatusOr<uint64_t> ParseSchedstatNs(absl::string_view text) {
  // proc(5): "time spent on the cpu (in nanoseconds)", then the time spent
  // waiting on a runqueue and the number of timeslices.
  std::vector<absl::string_view> f = absl::StrSplit(text, ' ', absl::SkipEmpty());
  uint64_t ns = 0;
  if (f.size() < 3 || !absl::SimpleAtoi(f[0], &ns)) {
    return absl::InvalidArgumentError("malformed schedstat");
  }
  return ns;
}

double CpuSecondsBetween(const ProcSample& before, const ProcSample& after, bool* precise) {
  *precise = false;
  if (before.task_ns.empty() || before.task_ns.size() != after.task_ns.size()) {
    return after.cpu_s - before.cpu_s;
  }
  uint64_t ns = 0;
  for (const auto& [task, b] : before.task_ns) {
    auto it = after.task_ns.find(task);
    if (it == after.task_ns.end() || it->second < b) return after.cpu_s - before.cpu_s;
    ns += it->second - b;
  }
  *precise = true;
  return static_cast<double>(ns) / 1e9;
}

absl::StatusOr<double> ParseStatCpuSeconds(absl::string_view stat, long ticks_per_second) {
  size_t close = stat.rfind(')');
  if (close == absl::string_view::npos || ticks_per_second <= 0) {
    return absl::InvalidArgumentError("malformed /proc/PID/stat");
  }
  // proc(5): after "(comm)" come field 3 (state) onwards; utime is field 14,
  // stime field 15.
  std::vector<absl::string_view> f = absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipEmpty());
  constexpr size_t kUtime = 14 - 3;
  constexpr size_t kStime = 15 - 3;
  uint64_t utime = 0;
  uint64_t stime = 0;
  if (f.size() <= kStime || !absl::SimpleAtoi(f[kUtime], &utime) ||
      !absl::SimpleAtoi(f[kStime], &stime)) {
    return absl::InvalidArgumentError("malformed /proc/PID/stat");
  }
  return static_cast<double>(utime + stime) / static_cast<double>(ticks_per_second);
}

absl::Status ParseSmapsRollup(absl::string_view text, ProcSample* out) {
  bool rss = false;
  bool pss = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    uint64_t* dst = nullptr;
    if (absl::ConsumePrefix(&line, "Rss:")) {
      dst = &out->rss_kb;
      rss = true;
    } else if (absl::ConsumePrefix(&line, "Pss:")) {
      dst = &out->pss_kb;
      pss = true;
    } else {
      continue;
    }
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, "kB");
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), dst)) {
      return absl::InvalidArgumentError("malformed smaps_rollup line");
    }
  }
  if (!rss || !pss) return absl::InvalidArgumentError("smaps_rollup without Rss/Pss");
  return absl::OkStatus();
}

absl::StatusOr<ProcSample> SampleProc(int pid) {
  ProcSample s;
  absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return stat.status();
  absl::StatusOr<double> cpu = ParseStatCpuSeconds(*stat, sysconf(_SC_CLK_TCK));
  if (!cpu.ok()) return cpu.status();
  s.cpu_s = *cpu;
  s.task_ns = SampleTasks(pid);
  absl::StatusOr<std::string> rollup = ReadFile(absl::StrCat("/proc/", pid, "/smaps_rollup"));
  if (!rollup.ok()) return rollup.status();
  if (absl::Status st = ParseSmapsRollup(*rollup, &s); !st.ok()) return st;
  return s;
}

absl::StatusOr<ProcSample> SampleProcs(const std::vector<int>& pids) {
  ProcSample sum;
  bool ok_tasks = true;
  for (int pid : pids) {
    absl::StatusOr<ProcSample> s = SampleProc(pid);
    if (!s.ok()) return s.status();
    sum.cpu_s += s->cpu_s;
    if (s->task_ns.empty()) ok_tasks = false;
    sum.task_ns.insert(s->task_ns.begin(), s->task_ns.end());
    sum.rss_kb += s->rss_kb;
    sum.pss_kb += s->pss_kb;
  }
  if (!ok_tasks) sum.task_ns.clear();  // all or nothing
  return sum;
}

}  // namespace postern::mailbench
