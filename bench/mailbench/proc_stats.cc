#include "bench/mailbench/proc_stats.h"

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

}  // namespace

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
  absl::StatusOr<std::string> rollup = ReadFile(absl::StrCat("/proc/", pid, "/smaps_rollup"));
  if (!rollup.ok()) return rollup.status();
  if (absl::Status st = ParseSmapsRollup(*rollup, &s); !st.ok()) return st;
  return s;
}

absl::StatusOr<ProcSample> SampleProcs(const std::vector<int>& pids) {
  ProcSample sum;
  for (int pid : pids) {
    absl::StatusOr<ProcSample> s = SampleProc(pid);
    if (!s.ok()) return s.status();
    sum.cpu_s += s->cpu_s;
    sum.rss_kb += s->rss_kb;
    sum.pss_kb += s->pss_kb;
  }
  return sum;
}

}  // namespace postern::mailbench
