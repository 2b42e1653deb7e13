#pragma once

// Reads another process's CPU time and memory from /proc, the way the
// comparison figures are computed: CPU from /proc/PID/stat (utime + stime,
// all threads, live and exited), memory from /proc/PID/smaps_rollup.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace postern::mailbench {

struct ProcSample {
  double cpu_s = 0;     // utime + stime, seconds
  uint64_t rss_kb = 0;  // Rss: from smaps_rollup
  uint64_t pss_kb = 0;  // Pss: from smaps_rollup
};

// Parses the text of /proc/PID/stat; the command name may hold spaces and
// parentheses, so fields are counted after the last ')'.
absl::StatusOr<double> ParseStatCpuSeconds(absl::string_view stat, long ticks_per_second);

// Parses the text of /proc/PID/smaps_rollup into rss_kb and pss_kb.
absl::Status ParseSmapsRollup(absl::string_view text, ProcSample* out);

absl::StatusOr<ProcSample> SampleProc(int pid);

// Sums samples of several processes (for an nginx with several workers).
absl::StatusOr<ProcSample> SampleProcs(const std::vector<int>& pids);

}  // namespace postern::mailbench
