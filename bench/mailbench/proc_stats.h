#pragma once

// Reads another process's CPU time and memory from /proc, the way the
// comparison figures are computed: CPU from /proc/PID/stat (utime + stime,
// all threads, live and exited) and, to the nanosecond, from each thread's
// /proc/PID/task/TID/schedstat; memory from /proc/PID/smaps_rollup.
//
// Why both: stat counts in clock ticks (10 ms), so a bulk run that costs the
// proxy 100-200 ms of CPU is measured to +-10% (one tick is about 50 us/MB
// of the bench's 196 MB FETCH). schedstat's first field is the thread's time
// on a CPU in nanoseconds, but it only covers threads alive when sampled: the
// precise figure is used when the same threads were there before and after.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace postern::mailbench {

struct ProcSample {
  double cpu_s = 0;     // utime + stime, seconds
  uint64_t rss_kb = 0;  // Rss: from smaps_rollup
  uint64_t pss_kb = 0;  // Pss: from smaps_rollup
  // Per thread (keyed by pid and tid: samples of several processes are
  // summed), nanoseconds on a CPU from schedstat; empty when unreadable.
  std::map<std::pair<int, int>, uint64_t> task_ns;
};

// CPU seconds between two samples: from schedstat when both hold the same
// threads (then *precise is set), else from the ticks of /proc/PID/stat.
double CpuSecondsBetween(const ProcSample& before, const ProcSample& after, bool* precise);

// Parses the first field of /proc/PID/task/TID/schedstat (ns on a CPU).
absl::StatusOr<uint64_t> ParseSchedstatNs(absl::string_view text);

// Parses the text of /proc/PID/stat; the command name may hold spaces and
// parentheses, so fields are counted after the last ')'.
absl::StatusOr<double> ParseStatCpuSeconds(absl::string_view stat, long ticks_per_second);

// Parses the text of /proc/PID/smaps_rollup into rss_kb and pss_kb.
absl::Status ParseSmapsRollup(absl::string_view text, ProcSample* out);

absl::StatusOr<ProcSample> SampleProc(int pid);

// Sums samples of several processes (for an nginx with several workers).
absl::StatusOr<ProcSample> SampleProcs(const std::vector<int>& pids);

}  // namespace postern::mailbench
