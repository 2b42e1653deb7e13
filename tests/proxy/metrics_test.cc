// The metrics registry (proxy/metrics.h): exact exposition text, sums over
// worker shards under concurrent writers and scrapers, histogram bucketing
// on the bounds, escaping, the series cap, registration rules, callbacks,
// and promtool's verdict on a sizeable output.

#include "proxy/metrics.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace postern {
namespace {

using Type = MetricsRegistry::Type;
using namespace std::string_literals;

TEST(MetricsTest, GoldenText) {
  MetricsRegistry r({.shards = 2});
  CounterFamily logins = *r.AddCounter("postern_logins_total", "Logins by listener and result.",
                                       {"listener", "result"});
  GaugeFamily open = *r.AddGauge("postern_sessions_open", "Sessions open.");
  HistogramFamily login_time =
      *r.AddHistogram("postern_login_duration_seconds", "Time from connect to login.", {"protocol"},
                      {0.01, 0.1, 1});
  CallbackRegistration build =
      *r.AddCallback("postern_build_info", "Version and commit of this build.", Type::kGauge,
                     {"version", "commit"}, [](CallbackSink& s) {
                       s.Emit({"1.2.3", "abc"}, 1);
                     });

  logins.Get(0, {"imaps", "ok"}).Add(3);
  logins.Get(1, {"imaps", "ok"}).Inc();
  logins.Get(1, {"imaps", "failed"}).Inc();
  logins.Get(0, {"pop3s", "ok"}).Add(7);
  open.Get(0, {}).Add(2);
  open.Get(1, {}).Add(3);
  open.Get(1, {}).Sub(1);
  Histogram imap0 = login_time.Get(0, {"imap"});
  Histogram imap1 = login_time.Get(1, {"imap"});
  imap0.Observe(0.005);
  imap0.Observe(0.1);
  imap1.Observe(0.5);
  imap1.Observe(2);
  login_time.Get(0, {"pop3"});  // resolved, never observed: zeros

  EXPECT_EQ(r.Scrape(),
            "# HELP postern_build_info Version and commit of this build.\n"
            "# TYPE postern_build_info gauge\n"
            "postern_build_info{version=\"1.2.3\",commit=\"abc\"} 1\n"
            "# HELP postern_login_duration_seconds Time from connect to login.\n"
            "# TYPE postern_login_duration_seconds histogram\n"
            "postern_login_duration_seconds_bucket{protocol=\"imap\",le=\"0.01\"} 1\n"
            "postern_login_duration_seconds_bucket{protocol=\"imap\",le=\"0.1\"} 2\n"
            "postern_login_duration_seconds_bucket{protocol=\"imap\",le=\"1\"} 3\n"
            "postern_login_duration_seconds_bucket{protocol=\"imap\",le=\"+Inf\"} 4\n"
            "postern_login_duration_seconds_sum{protocol=\"imap\"} 2.605\n"
            "postern_login_duration_seconds_count{protocol=\"imap\"} 4\n"
            "postern_login_duration_seconds_bucket{protocol=\"pop3\",le=\"0.01\"} 0\n"
            "postern_login_duration_seconds_bucket{protocol=\"pop3\",le=\"0.1\"} 0\n"
            "postern_login_duration_seconds_bucket{protocol=\"pop3\",le=\"1\"} 0\n"
            "postern_login_duration_seconds_bucket{protocol=\"pop3\",le=\"+Inf\"} 0\n"
            "postern_login_duration_seconds_sum{protocol=\"pop3\"} 0\n"
            "postern_login_duration_seconds_count{protocol=\"pop3\"} 0\n"
            "# HELP postern_logins_total Logins by listener and result.\n"
            "# TYPE postern_logins_total counter\n"
            "postern_logins_total{listener=\"imaps\",result=\"failed\"} 1\n"
            "postern_logins_total{listener=\"imaps\",result=\"ok\"} 4\n"
            "postern_logins_total{listener=\"pop3s\",result=\"ok\"} 7\n"
            "# HELP postern_sessions_open Sessions open.\n"
            "# TYPE postern_sessions_open gauge\n"
            "postern_sessions_open 4\n");
}

TEST(MetricsTest, SameLabelsSameSeries) {
  MetricsRegistry r({.shards = 1});
  CounterFamily c = *r.AddCounter("a_total", "A.", {"x"});
  c.Get(0, {"v"}).Inc();
  c.Get(0, {"v"}).Inc();
  EXPECT_EQ(2u, c.Get(0, {"v"}).shard_value());
  EXPECT_NE(std::string::npos, r.Scrape().find("a_total{x=\"v\"} 2\n"));
}

TEST(MetricsTest, FamilyWithoutLabelsShowsZeroAtOnce) {
  MetricsRegistry r;
  ASSERT_TRUE(r.AddCounter("a_total", "A.").ok());
  ASSERT_TRUE(r.AddCounter("b_total", "B.", {"x"}).ok());  // no series yet: left out
  EXPECT_EQ(r.Scrape(), "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n");
}

// Several workers increment their own shards while another thread scrapes:
// every scrape is well-formed and never goes backwards, the final totals
// are exact.
TEST(MetricsTest, ShardsSumExactlyUnderConcurrentWriters) {
  constexpr size_t kWorkers = 4;
  constexpr uint64_t kAdds = 1000000;
  MetricsRegistry r({.shards = kWorkers});
  CounterFamily bytes = *r.AddCounter("bytes_total", "Bytes.", {"dir"});
  GaugeFamily open = *r.AddGauge("open", "Open.");
  HistogramFamily lat = *r.AddHistogram("lat_seconds", "Latency.", {}, {0.5, 1.5});
  std::atomic<bool> stop{false};
  std::atomic<int> running{0};

  auto counter_value = [](const std::string& text, absl::string_view series) -> uint64_t {
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (absl::StartsWith(line, series)) {
        return std::strtoull(std::string(line.substr(series.size())).c_str(), nullptr, 10);
      }
    }
    return 0;
  };

  std::thread scraper([&] {
    uint64_t last = 0;
    int scrapes = 0;
    while (!stop.load() || scrapes < 3) {
      const std::string text = r.Scrape();
      const uint64_t v = counter_value(text, "bytes_total{dir=\"in\"} ");
      EXPECT_GE(v, last);
      last = v;
      ++scrapes;
    }
  });
  std::vector<std::thread> workers;
  for (size_t w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      ++running;
      // Resolved on the worker, as the integrator would at session start.
      Counter in = bytes.Get(w, {"in"});
      Counter out = bytes.Get(w, {"out"});
      Gauge g = open.Get(w, {});
      Histogram h = lat.Get(w, {});
      for (uint64_t i = 0; i < kAdds; ++i) {
        in.Inc();
        out.Add(2);
        g.Add(1);
        h.Observe(static_cast<double>(i % 3));  // 0, 1, 2: one per bucket
        // A worker also resolves new series while others write.
        if (i % 100000 == 0) bytes.Get(w, {absl::StrCat("w", w, "-", i)}).Inc();
      }
    });
  }
  for (auto& t : workers) t.join();
  stop = true;
  scraper.join();

  const std::string text = r.Scrape();
  EXPECT_EQ(kWorkers * kAdds, counter_value(text, "bytes_total{dir=\"in\"} "));
  EXPECT_EQ(2 * kWorkers * kAdds, counter_value(text, "bytes_total{dir=\"out\"} "));
  EXPECT_NE(std::string::npos, text.find(absl::StrCat("\nopen ", kWorkers * kAdds, "\n")));
  // i % 3 over 1,000,000: 333,334 zeros, 333,333 ones and twos.
  EXPECT_EQ(kWorkers * 333334, counter_value(text, "lat_seconds_bucket{le=\"0.5\"} "));
  EXPECT_EQ(kWorkers * 666667, counter_value(text, "lat_seconds_bucket{le=\"1.5\"} "));
  EXPECT_EQ(kWorkers * kAdds, counter_value(text, "lat_seconds_bucket{le=\"+Inf\"} "));
  EXPECT_EQ(kWorkers * kAdds, counter_value(text, "lat_seconds_count "));
  EXPECT_NE(std::string::npos,
            text.find(absl::StrCat("lat_seconds_sum ", kWorkers * (333333 + 2 * 333333), "\n")));
  EXPECT_EQ(1u, counter_value(text, "bytes_total{dir=\"w3-900000\"} "));
}

TEST(MetricsTest, HistogramBucketEdges) {
  MetricsRegistry r;
  HistogramFamily f = *r.AddHistogram("h_seconds", "H.", {}, {1, 2.5, 5});
  Histogram h = f.Get(0, {});
  h.Observe(1);                         // exactly on a bound: le="1"
  h.Observe(2.5);                       // le="2.5"
  h.Observe(5);                         // le="5"
  h.Observe(std::nextafter(5.0, 6.0));  // just above the last bound: +Inf
  h.Observe(0);
  h.Observe(-3);                                        // below everything: le="1"
  h.Observe(-std::numeric_limits<double>::infinity());  // le="1"
  h.Observe(std::numeric_limits<double>::quiet_NaN());  // dropped
  h.Observe(std::nextafter(1.0, 0.0));                  // le="1"
  h.Observe(std::nextafter(1.0, 2.0));                  // le="2.5"
  const std::string text = r.Scrape();
  EXPECT_NE(std::string::npos, text.find("h_seconds_bucket{le=\"1\"} 5\n")) << text;
  EXPECT_NE(std::string::npos, text.find("h_seconds_bucket{le=\"2.5\"} 7\n")) << text;
  EXPECT_NE(std::string::npos, text.find("h_seconds_bucket{le=\"5\"} 8\n")) << text;
  EXPECT_NE(std::string::npos, text.find("h_seconds_bucket{le=\"+Inf\"} 9\n")) << text;
  EXPECT_NE(std::string::npos, text.find("h_seconds_count 9\n")) << text;
  EXPECT_NE(std::string::npos, text.find("h_seconds_sum -Inf\n")) << text;
}

TEST(MetricsTest, HistogramPositiveInfinityAndDurations) {
  MetricsRegistry r;
  HistogramFamily f = *r.AddHistogram("d_seconds", "D.", {}, {0.001, 0.01});
  Histogram h = f.Get(0, {});
  h.ObserveDuration(std::chrono::microseconds(1000));  // 0.001 exactly: first bucket
  h.ObserveDuration(std::chrono::milliseconds(5));
  h.Observe(std::numeric_limits<double>::infinity());
  const std::string text = r.Scrape();
  EXPECT_NE(std::string::npos, text.find("d_seconds_bucket{le=\"0.001\"} 1\n")) << text;
  EXPECT_NE(std::string::npos, text.find("d_seconds_bucket{le=\"0.01\"} 2\n")) << text;
  EXPECT_NE(std::string::npos, text.find("d_seconds_bucket{le=\"+Inf\"} 3\n")) << text;
  EXPECT_NE(std::string::npos, text.find("d_seconds_sum +Inf\n")) << text;
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry r;
  CounterFamily f = *r.AddCounter("e_total", "Help with \\ and\nnewline \"quoted\".", {"v"});
  f.Get(0, {"a\"b\\c\nd"}).Inc();
  f.Get(0, {"nul\0byte\ttab\rcr"s}).Inc();
  EXPECT_EQ(r.Scrape(),
            "# HELP e_total Help with \\\\ and\\nnewline \"quoted\".\n"
            "# TYPE e_total counter\n"
            "e_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"
            "e_total{v=\"nul\0byte\ttab\rcr\"} 1\n"s);
}

TEST(MetricsTest, IllFormedUtf8AndLongValuesAreCleaned) {
  MetricsRegistry r;
  CounterFamily f = *r.AddCounter("u_total", "U.", {"v"});
  f.Get(0, {"caf\xc3\xa9 \xff\xfe x\xe2\x82"}).Inc();
  f.Get(0, {std::string(1000, 'a')}).Inc();
  f.Get(0, {std::string(300, 'a')}).Inc();  // the same first 256 bytes: the same series
  const std::string text = r.Scrape();
  EXPECT_NE(std::string::npos,
            text.find("u_total{v=\"caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd x\xef\xbf\xbd\"} 1\n"))
      << text;
  EXPECT_NE(std::string::npos, text.find("u_total{v=\"" + std::string(256, 'a') + "\"} 2\n"));
}

TEST(MetricsTest, SeriesCapSendsTheRestToOverflow) {
  MetricsRegistry r({.shards = 2, .max_series_per_family = 3});
  CounterFamily f = *r.AddCounter("c_total", "C.", {"backend", "result"});
  for (int i = 0; i < 10; ++i) f.Get(i % 2, {absl::StrCat("b", i), "ok"}).Inc();
  f.Get(0, {"b0", "ok"}).Inc();  // an existing series still resolves to itself
  GaugeFamily g = *r.AddGauge("g", "G.", {"x"});
  g.Get(0, {"1"}).Set(1);
  EXPECT_EQ(r.Scrape(),
            "# HELP c_total C.\n"
            "# TYPE c_total counter\n"
            "c_total{backend=\"__overflow__\",result=\"__overflow__\"} 7\n"
            "c_total{backend=\"b0\",result=\"ok\"} 2\n"
            "c_total{backend=\"b1\",result=\"ok\"} 1\n"
            "c_total{backend=\"b2\",result=\"ok\"} 1\n"
            "# HELP g G.\n"
            "# TYPE g gauge\n"
            "g{x=\"1\"} 1\n"
            "# HELP postern_metrics_series_dropped_total Label sets sent to a family's overflow "
            "series once the family had its maximum number of series.\n"
            "# TYPE postern_metrics_series_dropped_total counter\n"
            "postern_metrics_series_dropped_total{family=\"c_total\"} 7\n");
}

TEST(MetricsTest, RegistrationRules) {
  MetricsRegistry r;
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddCounter("requests", "R.").status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddGauge("open_total", "O.").status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddGauge("x_count", "X.").status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddGauge("x_bucket", "X.").status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddGauge("CamelCase", "X.").status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddGauge("a:b", "X.").status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddGauge("1a", "X.").status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddGauge("", "X.").status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddGauge("a", "").status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddGauge("a", "A.", {"__x"}).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddGauge("a", "A.", {"a-b"}).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddGauge("a", "A.", {"x", "x"}).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            r.AddHistogram("h", "H.", {"le"}, {1}).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            r.AddHistogram("h", "H.", {}, {2, 1}).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            r.AddHistogram("h", "H.", {}, {1, 1}).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, r.AddHistogram("h", "H.", {}, {}).status().code());
  EXPECT_EQ(
      absl::StatusCode::kInvalidArgument,
      r.AddHistogram("h", "H.", {}, {1, std::numeric_limits<double>::infinity()}).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            r.AddHistogram("h", "H.", {}, std::vector<double>(65, 0.0)).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            r.AddCallback("cb", "C.", Type::kHistogram, {}, [](CallbackSink&) {}).status().code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            r.AddCallback("cb", "C.", Type::kGauge, {}, nullptr).status().code());

  ASSERT_TRUE(r.AddHistogram("lat", "L.", {}, {1}).ok());
  ASSERT_TRUE(r.AddGauge("lat_bucketing", "L.").ok());  // only the exact names are taken
  EXPECT_EQ(absl::StatusCode::kAlreadyExists, r.AddGauge("lat", "X.").status().code());
  EXPECT_EQ(absl::StatusCode::kAlreadyExists, r.AddHistogram("lat", "X.", {}, {1}).status().code());
  EXPECT_EQ(absl::StatusCode::kAlreadyExists,
            r.AddCallback("lat", "X.", Type::kGauge, {}, [](CallbackSink&) {}).status().code());
  EXPECT_EQ(absl::StatusCode::kAlreadyExists,
            r.AddCounter("postern_metrics_series_dropped_total", "X.").status().code());
  EXPECT_TRUE(
      r.AddHistogram("h", "H.", {"ok_label"}, MetricsRegistry::ExponentialBounds(0.001, 2, 64))
          .ok());
}

TEST(MetricsTest, BadCallsGetDetachedHandles) {
  MetricsRegistry r({.shards = 2});
  CounterFamily f = *r.AddCounter("c_total", "C.", {"a"});
  f.Get(0, {"x", "y"}).Inc();  // wrong number of values
  f.Get(2, {"x"}).Inc();       // no such shard
  CounterFamily().Get(0, {}).Inc();
  Counter().Add(5);
  Gauge().Set(1);
  Histogram().Observe(1);
  HistogramFamily().Get(0, {}).Observe(2);
  EXPECT_EQ(r.Scrape(), "");
}

TEST(MetricsTest, CallbacksSumDuplicatesAndUnregister) {
  MetricsRegistry r({.max_series_per_family = 2});
  std::atomic<int> calls{0};
  CallbackRegistration pools =
      *r.AddCallback("pool_bytes", "Pool bytes.", Type::kGauge, {"pool"}, [&](CallbackSink& s) {
        ++calls;
        s.Emit({"small"}, 100);  // worker 0
        s.Emit({"small"}, 50);   // worker 1: summed
        s.Emit({"bulk"}, 0.5);
        s.Emit({"third"}, 1);   // over the cap of 2: dropped
        s.Emit({"a", "b"}, 1);  // wrong arity: ignored
      });
  CallbackRegistration refusals = *r.AddCallback("refused_total", "Refused.", Type::kCounter, {},
                                                 [](CallbackSink& s) { s.Emit({}, 12); });
  EXPECT_EQ(r.Scrape(),
            "# HELP pool_bytes Pool bytes.\n"
            "# TYPE pool_bytes gauge\n"
            "pool_bytes{pool=\"bulk\"} 0.5\n"
            "pool_bytes{pool=\"small\"} 150\n"
            "# HELP postern_metrics_series_dropped_total Label sets sent to a family's overflow "
            "series once the family had its maximum number of series.\n"
            "# TYPE postern_metrics_series_dropped_total counter\n"
            "postern_metrics_series_dropped_total{family=\"pool_bytes\"} 1\n"
            "# HELP refused_total Refused.\n"
            "# TYPE refused_total counter\n"
            "refused_total 12\n");
  EXPECT_EQ(1, calls.load());
  pools.Reset();
  EXPECT_EQ(r.Scrape(),
            "# HELP refused_total Refused.\n# TYPE refused_total counter\nrefused_total 12\n");
  EXPECT_EQ(1, calls.load());
  // The name is free again once the registration is gone.
  EXPECT_TRUE(r.AddGauge("pool_bytes", "Pool bytes, now a gauge.").ok());
  // A registration may outlive its registry.
  CallbackRegistration outlives;
  {
    MetricsRegistry r2;
    outlives = *r2.AddCallback("x", "X.", Type::kGauge, {}, [](CallbackSink& s) { s.Emit({}, 1); });
  }
  outlives.Reset();
}

TEST(MetricsTest, CallbackMayRegisterAndResolve) {
  MetricsRegistry r;
  CounterFamily f = *r.AddCounter("c_total", "C.", {"k"});
  bool registered = false;
  CallbackRegistration reg = *r.AddCallback("cb", "CB.", Type::kGauge, {}, [&](CallbackSink& s) {
    f.Get(0, {"from-callback"}).Inc();  // takes the registry's lock: not held here
    if (!registered) registered = r.AddGauge("late", "Late.").ok();
    s.Emit({}, 1);
  });
  r.Scrape();
  EXPECT_TRUE(registered);
  // Counters are read before the callbacks run: the first callback's add.
  EXPECT_NE(std::string::npos, r.Scrape().find("c_total{k=\"from-callback\"} 1\n"));
}

TEST(MetricsTest, FormatsValues) {
  EXPECT_EQ("0", FormatMetricValue(0));
  EXPECT_EQ("3", FormatMetricValue(3));
  EXPECT_EQ("-2.5", FormatMetricValue(-2.5));
  EXPECT_EQ("0.1", FormatMetricValue(0.1));
  EXPECT_EQ("4000000", FormatMetricValue(4e6));
  EXPECT_EQ("-7", FormatMetricValue(-7.0));
  EXPECT_EQ("0", FormatMetricValue(-0.0));
  EXPECT_EQ("1e+21", FormatMetricValue(1e21));
  EXPECT_EQ("0.30000000000000004", FormatMetricValue(0.1 + 0.2));
  EXPECT_EQ("9007199254740992", FormatMetricValue(9007199254740992.0));
  EXPECT_EQ("1e-05", FormatMetricValue(0.00001));
  EXPECT_EQ("+Inf", FormatMetricValue(std::numeric_limits<double>::infinity()));
  EXPECT_EQ("-Inf", FormatMetricValue(-std::numeric_limits<double>::infinity()));
  EXPECT_EQ("NaN", FormatMetricValue(std::numeric_limits<double>::quiet_NaN()));
}

// A registry the size of a real one (several workers, listeners, backends,
// histograms, callbacks, hostile label values), checked by promtool.
TEST(MetricsTest, PromtoolAcceptsASizeableOutput) {
  const char* promtool = nullptr;
  for (const char* p : {"/usr/bin/promtool", "/usr/local/bin/promtool"}) {
    if (access(p, X_OK) == 0) promtool = p;
  }
  if (promtool == nullptr) {
    GTEST_SKIP() << "promtool is not installed (Debian: apt-get install prometheus); skipped";
  }
  MetricsRegistry r({.shards = 4, .max_series_per_family = 500});
  CounterFamily logins = *r.AddCounter("postern_logins_total", "Logins by listener and result.",
                                       {"listener", "result"});
  CounterFamily bytes =
      *r.AddCounter("postern_relay_bytes_total", "Bytes relayed.", {"backend", "direction"});
  GaugeFamily sessions =
      *r.AddGauge("postern_sessions", "Sessions by stage.", {"listener", "stage"});
  HistogramFamily login_time =
      *r.AddHistogram("postern_login_duration_seconds", "Login time.", {"listener", "backend"},
                      MetricsRegistry::ExponentialBounds(0.0005, 2, 16));
  CallbackRegistration info =
      *r.AddCallback("postern_build_info", "Build \"info\" with a \\ and a\nnewline.", Type::kGauge,
                     {"version", "commit"}, [](CallbackSink& s) {
                       s.Emit({"0.1.0", "deadbeef"}, 1);
                     });
  CallbackRegistration pool = *r.AddCallback("postern_buffer_pool_bytes", "Pool bytes.",
                                             Type::kGauge, {"worker"}, [](CallbackSink& s) {
                                               for (int w = 0; w < 4; ++w)
                                                 s.Emit({absl::StrCat(w)}, w * 65536.0);
                                             });
  for (size_t w = 0; w < 4; ++w) {
    for (int l = 0; l < 8; ++l) {
      const std::string listener = absl::StrCat("listener-", l);
      for (const char* result : {"ok", "failed", "unavailable", "refused"}) {
        logins.Get(w, {listener, result}).Add(w + l);
      }
      for (const char* stage : {"prelogin", "login", "relay", "gateway"}) {
        sessions.Get(w, {listener, stage}).Add(1.5);
      }
      for (int b = 0; b < 40; ++b) {
        Histogram h = login_time.Get(w, {listener, absl::StrCat("store", b)});
        for (int i = 0; i < 20; ++i) h.Observe(0.0001 * (i + 1) * (b + 1));
      }
    }
    for (int b = 0; b < 700; ++b) {  // past the cap: overflow
      bytes.Get(w, {absl::StrCat("b\"\\\n\xff", b), "in"}).Add(1000);
    }
  }
  const std::string text = r.Scrape();
  EXPECT_GT(text.size(), 200000u);
  char path[] = "/tmp/postern-metrics-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(static_cast<ssize_t>(text.size()), write(fd, text.data(), text.size()));
  close(fd);
  const std::string out = std::string(path) + ".out";
  const std::string cmd = absl::StrCat(promtool, " check metrics < ", path, " > ", out, " 2>&1");
  const int rc = std::system(cmd.c_str());
  std::ifstream in(out);
  const std::string said((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(0, rc) << said;
  unlink(path);
  unlink(out.c_str());
}

}  // namespace
}  // namespace postern
