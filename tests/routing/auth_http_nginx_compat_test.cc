// Postern's auth-http against nginx 1.22's own: the requests nginx's mail
// proxy sent an auth_http service for a set of logins, and what it did with
// each answer, recorded by tests/integration/nginx_compat.py into
// nginx_auth_http_fixtures.inc. For the same logins Postern must send the
// same headers with the same values in the same order (its own headers
// after them), and read the same answers the same way: the same backend,
// user and password, or the same refusal. The differences it may show are
// the documented ones, spelled out below.

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "routing/auth_http.h"

namespace postern {
namespace {

struct NginxAuthHttpCase {
  absl::string_view name;
  absl::string_view server;  // imap (plaintext), imaps, pop3s
  absl::string_view how;     // login, login-literal, auth-plain, auth-login, user-pass, ...
  absl::string_view user;
  absl::string_view secret;
  absl::string_view authzid;
  uint32_t attempt;
  absl::string_view request;   // as nginx sent it
  absl::string_view response;  // the service's answer
  uint16_t backend_port;       // 0: nginx logged in nowhere
  absl::string_view backend_user;
  absl::string_view backend_pass;
  absl::string_view reply;  // else: the line nginx's client got
};

#include "tests/routing/nginx_auth_http_fixtures.inc"

using Headers = std::vector<std::pair<std::string, std::string>>;

// Request line and headers of a request head.
std::pair<std::string, Headers> SplitHead(absl::string_view head) {
  EXPECT_TRUE(absl::ConsumeSuffix(&head, "\r\n\r\n"));
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  std::pair<std::string, Headers> out;
  out.first = std::string(lines[0]);
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(": ");
    EXPECT_NE(colon, absl::string_view::npos) << lines[i];
    out.second.emplace_back(std::string(lines[i].substr(0, colon)),
                            std::string(lines[i].substr(colon + 2)));
  }
  return out;
}

std::string Get(const Headers& h, absl::string_view name) {
  for (const auto& [k, v] : h) {
    if (k == name) return v;
  }
  return "";
}

DirectoryRequest RequestFor(const NginxAuthHttpCase& c, const Headers& nginx) {
  DirectoryRequest r;
  r.mechanism = c.how == "auth-login" ? DirectoryRequest::Mechanism::kLogin
                                      : DirectoryRequest::Mechanism::kPlain;
  r.user = std::string(c.user);
  r.secret = std::string(c.secret);
  r.authzid = std::string(c.authzid);
  r.protocol = absl::StartsWith(c.server, "pop3") ? "pop3" : "imap";
  r.client_ip = "127.0.0.1";
  r.client_port = 40000;
  r.local_ip = "127.0.0.1";
  r.local_port = 993;
  r.attempt = c.attempt;
  r.tls = absl::EndsWith(c.server, "s");
  // The names of the TLS version and cipher are the TLS library's (nginx:
  // OpenSSL's; Postern: BoringSSL's, which agree on these); take nginx's.
  r.tls_version = Get(nginx, "Auth-SSL-Protocol");
  r.tls_cipher = Get(nginx, "Auth-SSL-Cipher");
  return r;
}

const std::set<std::string>& PosternHeaders() {
  static const std::set<std::string> names = {"Client-Port", "Local-IP",     "Local-Port",
                                              "Auth-SNI",    "Auth-Authzid", "Auth-Session-Id"};
  return names;
}

TEST(NginxCompat, FixturesAreThere) { EXPECT_GE(std::size(kNginxAuthHttpCases), 30u); }

TEST(NginxCompat, SameRequestHeadersAsNginx) {
  AuthHttpRequestConfig config;
  config.uri = "/auth";
  config.host = "127.0.0.1";
  for (const NginxAuthHttpCase& c : kNginxAuthHttpCases) {
    SCOPED_TRACE(std::string(c.name));
    const auto [nginx_line, nginx] = SplitHead(c.request);
    const std::string ours_text = BuildAuthHttpRequest(config, RequestFor(c, nginx));
    const auto [our_line, ours] = SplitHead(ours_text);
    // Difference 1: HTTP/1.1 (keep-alive) where nginx says HTTP/1.0.
    EXPECT_EQ(nginx_line, "GET /auth HTTP/1.0");
    EXPECT_EQ(our_line, "GET /auth HTTP/1.1");
    // Every header nginx sent, first, in nginx's order, byte for byte.
    ASSERT_GE(ours.size(), nginx.size()) << ours_text;
    for (size_t i = 0; i < nginx.size(); ++i) {
      EXPECT_EQ(ours[i].first, nginx[i].first) << i;
      EXPECT_EQ(ours[i].second, nginx[i].second) << nginx[i].first;
    }
    // Then only Postern's own.
    for (size_t i = nginx.size(); i < ours.size(); ++i) {
      EXPECT_TRUE(PosternHeaders().count(ours[i].first) ||
                  absl::StartsWith(ours[i].first, "Auth-ID-"))
          << ours[i].first;
    }
    // nginx ignores the SASL authorization identity; Postern passes it on.
    EXPECT_EQ(Get(ours, "Auth-Authzid"), std::string(c.authzid));
    EXPECT_EQ(Get(nginx, "Auth-Authzid"), "");
  }
}

TEST(NginxCompat, NginxSendsNeitherClientHostNorSaltNorLoginMethod) {
  for (const NginxAuthHttpCase& c : kNginxAuthHttpCases) {
    EXPECT_FALSE(absl::StrContains(c.request, "Client-Host")) << c.name;
    EXPECT_FALSE(absl::StrContains(c.request, "Auth-Salt")) << c.name;
    // AUTHENTICATE LOGIN too is "plain" for nginx.
    EXPECT_TRUE(absl::StrContains(c.request, "\r\nAuth-Method: plain\r\n")) << c.name;
  }
}

TEST(NginxCompat, SameAnswersAsNginx) {
  int accepted = 0, refused = 0, failed = 0;
  for (const NginxAuthHttpCase& c : kNginxAuthHttpCases) {
    SCOPED_TRACE(std::string(c.name));
    absl::StatusOr<AuthHttpResponse> r = ParseAuthHttpResponse(c.response);
    ASSERT_TRUE(r.ok()) << r.status();
    const AuthHttpOutcome o = InterpretAuthHttpResponse(*r);
    ASSERT_EQ(o.kind, AuthHttpOutcome::Kind::kAnswer);
    const DirectoryAnswer& a = o.answer;
    if (c.name == "answer_http_500") {
      // Difference 2: nginx reads no HTTP status and logged in; Postern
      // takes an answer that is not 2xx as the service failing.
      EXPECT_EQ(c.backend_port, kNginxImapBackendPort);
      EXPECT_EQ(a.verdict, DirectoryAnswer::Verdict::kUnavailable);
      continue;
    }
    if (c.backend_port != 0) {
      // nginx logged in: to the same place, as the same user, with the same
      // password.
      ++accepted;
      ASSERT_EQ(a.verdict, DirectoryAnswer::Verdict::kAccept) << a.detail;
      EXPECT_EQ(a.host, "127.0.0.1");
      EXPECT_EQ(a.port, c.backend_port);
      EXPECT_EQ(a.backend_user.empty() ? std::string(c.user) : a.backend_user, c.backend_user);
      EXPECT_EQ(a.backend_password.empty() ? std::string(c.secret) : a.backend_password,
                c.backend_pass);
    } else if (absl::StrContains(c.reply, "internal server error")) {
      // nginx gave up on the answer: Postern says unavailable.
      ++failed;
      EXPECT_EQ(a.verdict, DirectoryAnswer::Verdict::kUnavailable) << a.detail;
    } else {
      // nginx refused with Auth-Status's text: "a NO <text>" / "-ERR <text>".
      ++refused;
      ASSERT_EQ(a.verdict, DirectoryAnswer::Verdict::kRefuse) << a.detail;
      absl::string_view text = c.reply;
      EXPECT_TRUE(absl::ConsumePrefix(&text, "a NO ") || absl::ConsumePrefix(&text, "-ERR "))
          << c.reply;
      EXPECT_EQ(a.text, text);
      // nginx waited Auth-Wait seconds before the refusal (and then let the
      // client try again) or, without one, refused and closed.
      int64_t wait = 0;
      for (absl::string_view line : absl::StrSplit(c.response, "\r\n")) {
        if (absl::ConsumePrefix(&line, "Auth-Wait: ")) {
          if (!absl::SimpleAtoi(line, &wait)) wait = 0;
        }
      }
      EXPECT_EQ(a.wait, std::chrono::seconds(wait));
    }
  }
  EXPECT_GE(accepted, 20);
  EXPECT_GE(refused, 5);
  EXPECT_GE(failed, 3);
}

}  // namespace
}  // namespace postern
