// The I/O-free half of auth-http (routing/auth_http.h): nginx's escaping,
// the request bytes, the response parser on every split of its input, and
// what each answer means.

#include "routing/auth_http.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/protocol/split_feeder.h"

namespace postern {
namespace {

using Verdict = DirectoryAnswer::Verdict;
using Result = AuthHttpResponseParser::Result;

// --- escaping --------------------------------------------------------------------------------

TEST(AuthHttpEscape, NginxMailAuthTable) {
  // ngx_escape_uri(NGX_ESCAPE_MAIL_AUTH): space, "%" and 0x00-0x1F only.
  EXPECT_EQ(AuthHttpEscape("alice"), "alice");
  EXPECT_EQ(AuthHttpEscape("sp ace"), "sp%20ace");
  EXPECT_EQ(AuthHttpEscape("100%"), "100%25");
  EXPECT_EQ(AuthHttpEscape("a+b=c:d/e?f&g#h\"i\\j'k<l>"), "a+b=c:d/e?f&g#h\"i\\j'k<l>");
  EXPECT_EQ(AuthHttpEscape("tab\there"), "tab%09here");
  EXPECT_EQ(AuthHttpEscape("cr\rlf\n"), "cr%0Dlf%0A");
  EXPECT_EQ(AuthHttpEscape(std::string("nul\0x", 5)), "nul%00x");
  EXPECT_EQ(AuthHttpEscape("\x1f\x7f"), "%1F\x7f");             // DEL stays, as in nginx
  EXPECT_EQ(AuthHttpEscape("j\xc3\xbcrgen"), "j\xc3\xbcrgen");  // UTF-8 stays
  EXPECT_EQ(AuthHttpEscape("\xff\x80"), "\xff\x80");
  EXPECT_EQ(AuthHttpEscape(""), "");
}

TEST(AuthHttpEscape, StrictAlsoEscapesDel) {
  EXPECT_EQ(AuthHttpEscapeStrict("a\x7f b%\r\n"), "a%7F%20b%25%0D%0A");
  EXPECT_EQ(AuthHttpEscapeStrict("Thunderbird 115.0"), "Thunderbird%20115.0");
}

TEST(AuthHttpEscape, EveryByte) {
  for (int c = 0; c < 256; ++c) {
    const std::string in(1, static_cast<char>(c));
    const bool escaped = c < 0x20 || c == ' ' || c == '%';
    EXPECT_EQ(AuthHttpEscape(in).size(), escaped ? 3u : 1u) << c;
    EXPECT_EQ(AuthHttpEscapeStrict(in).size(), escaped || c == 0x7f ? 3u : 1u) << c;
  }
}

// --- the request -----------------------------------------------------------------------------

AuthHttpRequestConfig Config() {
  AuthHttpRequestConfig c;
  c.uri = "/auth";
  c.host = "127.0.0.1";
  return c;
}

DirectoryRequest Login() {
  DirectoryRequest r;
  r.user = "alice";
  r.secret = "demo";
  r.protocol = "imap";
  r.client_ip = "192.0.2.42";
  r.client_port = 51234;
  r.local_ip = "198.51.100.7";
  r.local_port = 993;
  return r;
}

TEST(BuildAuthHttpRequest, PlainLogin) {
  EXPECT_EQ(BuildAuthHttpRequest(Config(), Login()),
            "GET /auth HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n"
            "Auth-Method: plain\r\n"
            "Auth-User: alice\r\n"
            "Auth-Pass: demo\r\n"
            "Auth-Protocol: imap\r\n"
            "Auth-Login-Attempt: 1\r\n"
            "Client-IP: 192.0.2.42\r\n"
            "Client-Port: 51234\r\n"
            "Local-IP: 198.51.100.7\r\n"
            "Local-Port: 993\r\n"
            "\r\n");
}

TEST(BuildAuthHttpRequest, EverythingSet) {
  AuthHttpRequestConfig c = Config();
  c.uri = "/mail/auth?v=1";
  c.host = "auth.internal";
  c.headers = {{"X-Auth-Key", "secret string"}, {"X-Other", "1"}};
  DirectoryRequest r = Login();
  r.mechanism = DirectoryRequest::Mechanism::kLogin;
  r.user = "j\xc3\xbcrgen x";
  r.secret = "p%ss\tw";
  r.authzid = "shared box";
  r.protocol = "pop3";
  r.tls = true;
  r.tls_version = "TLSv1.3";
  r.tls_cipher = "TLS_AES_256_GCM_SHA384";
  r.sni = "mail.example.org";
  r.attempt = 3;
  r.session_id = "WyZlH5tXr3";
  r.client_id = {{"name", "Thunderbird"}, {"version", "115.0"}, {"os", "Linux\r\nX: y"}};
  EXPECT_EQ(BuildAuthHttpRequest(c, r),
            "GET /mail/auth?v=1 HTTP/1.1\r\n"
            "Host: auth.internal\r\n"
            "Auth-Method: plain\r\n"
            "Auth-User: j\xc3\xbcrgen%20x\r\n"
            "Auth-Pass: p%25ss%09w\r\n"
            "Auth-Protocol: pop3\r\n"
            "Auth-Login-Attempt: 3\r\n"
            "Client-IP: 192.0.2.42\r\n"
            "Auth-SSL: on\r\n"
            "Auth-SSL-Protocol: TLSv1.3\r\n"
            "Auth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\n"
            "Client-Port: 51234\r\n"
            "Local-IP: 198.51.100.7\r\n"
            "Local-Port: 993\r\n"
            "Auth-SNI: mail.example.org\r\n"
            "Auth-Authzid: shared%20box\r\n"
            "Auth-Session-Id: WyZlH5tXr3\r\n"
            "Auth-ID-name: Thunderbird\r\n"
            "Auth-ID-version: 115.0\r\n"
            "Auth-ID-os: Linux%0D%0AX:%20y\r\n"
            "X-Auth-Key: secret string\r\n"
            "X-Other: 1\r\n"
            "\r\n");
}

TEST(BuildAuthHttpRequest, Methods) {
  DirectoryRequest r = Login();
  const std::pair<DirectoryRequest::Mechanism, absl::string_view> cases[] = {
      {DirectoryRequest::Mechanism::kPlain, "plain"},
      {DirectoryRequest::Mechanism::kLogin, "plain"},  // as nginx: no "login"
      {DirectoryRequest::Mechanism::kXoauth2, "xoauth2"},
      {DirectoryRequest::Mechanism::kOauthbearer, "oauthbearer"},
  };
  for (const auto& [m, name] : cases) {
    r.mechanism = m;
    EXPECT_TRUE(absl::StrContains(BuildAuthHttpRequest(Config(), r),
                                  absl::StrCat("\r\nAuth-Method: ", name, "\r\n")))
        << name;
  }
}

TEST(BuildAuthHttpRequest, AuthzidOnlyWhenAnotherIdentity) {
  DirectoryRequest r = Login();
  r.authzid = "alice";
  EXPECT_FALSE(absl::StrContains(BuildAuthHttpRequest(Config(), r), "Auth-Authzid"));
  r.authzid = "bob";
  EXPECT_TRUE(absl::StrContains(BuildAuthHttpRequest(Config(), r), "\r\nAuth-Authzid: bob\r\n"));
}

TEST(BuildAuthHttpRequest, TlsWithoutNames) {
  DirectoryRequest r = Login();
  r.tls = true;
  const std::string req = BuildAuthHttpRequest(Config(), r);
  EXPECT_TRUE(absl::StrContains(req, "\r\nAuth-SSL: on\r\n"));
  EXPECT_FALSE(absl::StrContains(req, "Auth-SSL-Protocol"));
  EXPECT_FALSE(absl::StrContains(req, "Auth-SSL-Cipher"));
}

TEST(BuildAuthHttpRequest, IdFieldsWithBadNamesAreLeftOut) {
  DirectoryRequest r = Login();
  r.client_id = {
      {"support-url", "x"}, {"bad name", "x"},           {"bad\r\nX-Injected: 1", "x"}, {"", "x"},
      {"colon:", "x"},      {std::string(65, 'a'), "x"}, {std::string(64, 'b'), "y"}};
  const std::string req = BuildAuthHttpRequest(Config(), r);
  EXPECT_TRUE(absl::StrContains(req, "\r\nAuth-ID-support-url: x\r\n"));
  EXPECT_TRUE(
      absl::StrContains(req, absl::StrCat("\r\nAuth-ID-", std::string(64, 'b'), ": y\r\n")));
  EXPECT_FALSE(absl::StrContains(req, "Injected"));
  EXPECT_FALSE(absl::StrContains(req, "bad"));
  EXPECT_FALSE(absl::StrContains(req, "colon"));
  EXPECT_FALSE(absl::StrContains(req, std::string(65, 'a')));
}

// Whatever bytes a client chooses, the request has exactly the header lines
// we wrote: no CR, LF or other control byte gets into a value.
TEST(BuildAuthHttpRequest, NoInjectionWhateverTheClientSends) {
  std::string every;
  for (int c = 0; c < 256; ++c) every.push_back(static_cast<char>(c));
  DirectoryRequest r = Login();
  r.user = every;
  r.secret = "\r\n\r\nGET /evil HTTP/1.1\r\n" + every;
  r.authzid = "x" + every;
  r.sni = every;
  r.protocol = "imap\r\nX: 1";
  r.client_ip = "1.2.3.4\n";
  r.tls = true;
  r.tls_version = "TLS\r\n";
  r.tls_cipher = every;
  r.session_id = every;
  r.client_id = {{"name", every}, {"version", "\r\n\r\n"}};
  const std::string req = BuildAuthHttpRequest(Config(), r);
  ASSERT_TRUE(absl::EndsWith(req, "\r\n\r\n"));
  const std::vector<absl::string_view> lines =
      absl::StrSplit(absl::string_view(req).substr(0, req.size() - 4), "\r\n");
  // Request line, Host .. Client-IP (7), Auth-SSL x3, Client-Port, Local-IP,
  // Local-Port, SNI, Authzid, Session-Id, 2 ID fields.
  EXPECT_EQ(lines.size(), 1u + 7 + 3 + 3 + 3 + 2) << req;
  for (size_t i = 0; i < lines.size(); ++i) {
    for (char ch : lines[i]) {
      EXPECT_GE(static_cast<unsigned char>(ch), 0x20) << lines[i];
    }
    if (i > 0) {
      EXPECT_NE(lines[i].find(": "), absl::string_view::npos) << lines[i];
    }
  }
  EXPECT_FALSE(absl::StrContains(req, "\r\nGET /evil"));
  EXPECT_FALSE(absl::StrContains(req, "\r\nX: 1"));
}

TEST(ValidateAuthHttpHeader, NamesAndValues) {
  EXPECT_TRUE(ValidateAuthHttpHeader("X-Auth-Key", "secret string\twith tab").ok());
  EXPECT_FALSE(ValidateAuthHttpHeader("", "x").ok());
  EXPECT_FALSE(ValidateAuthHttpHeader("X Key", "x").ok());
  EXPECT_FALSE(ValidateAuthHttpHeader("X:Key", "x").ok());
  EXPECT_FALSE(ValidateAuthHttpHeader("X_Key", "x").ok());
  EXPECT_FALSE(ValidateAuthHttpHeader("X-Key", "a\r\nb").ok());
  EXPECT_FALSE(ValidateAuthHttpHeader("X-Key", "a\x7f").ok());
  EXPECT_FALSE(ValidateAuthHttpHeader("X-Key", std::string("a\0b", 3)).ok());
}

// --- the response parser ---------------------------------------------------------------------

// Feeds `chunks` and returns the result (with EOF at the end if still needed).
Result FeedAll(AuthHttpResponseParser& p, const testing::Chunks& chunks, bool eof = true) {
  Result r = Result::kNeedMore;
  for (absl::string_view c : chunks) {
    size_t consumed = 0;
    r = p.Feed(c, &consumed);
    if (r != Result::kNeedMore) return r;
    EXPECT_EQ(consumed, c.size());
  }
  if (eof) r = p.FeedEof();
  return r;
}

TEST(AuthHttpResponseParser, EveryHeaderOnEverySplit) {
  const std::string input =
      "HTTP/1.1 200 OK\r\n"
      "Server: test\r\n"
      "auth-status: OK\r\n"
      "AUTH-SERVER:   192.0.2.10  \r\n"
      "Auth-Port: 143\r\n"
      "Auth-User: real@store\r\n"
      "Auth-Pass: pass word%20\r\n"
      "Auth-Wait: 3\r\n"
      "Auth-Error-Code: AUTHENTICATIONFAILED\r\n"
      "Auth-Backend: store1\r\n"
      "Auth-Shard: shard-7\r\n"
      "Auth-Master: yes\r\n"
      "Auth-Cache-TTL: 60\r\n"
      "Content-Length: 5\r\n"
      "\r\n"
      "hello";
  for (const testing::Chunks& chunks : testing::AllCuttings(input)) {
    AuthHttpResponseParser p;
    ASSERT_EQ(FeedAll(p, chunks, false), Result::kDone) << testing::Describe(chunks) << p.error();
    const AuthHttpResponse& r = p.response();
    EXPECT_EQ(r.http_status, 200);
    EXPECT_TRUE(r.keep_alive);
    EXPECT_TRUE(r.has_status);
    EXPECT_FALSE(r.refused);
    EXPECT_FALSE(r.status_wait);
    EXPECT_EQ(r.server, "192.0.2.10");
    EXPECT_EQ(r.port, "143");
    EXPECT_EQ(r.user, "real@store");
    EXPECT_EQ(r.pass, "pass word%20");  // as is: nginx does not unescape
    EXPECT_EQ(r.wait_seconds, 3);
    EXPECT_EQ(r.error_code, "AUTHENTICATIONFAILED");
    EXPECT_EQ(r.backend, "store1");
    EXPECT_EQ(r.shard, "shard-7");
    EXPECT_EQ(r.master, "yes");
    EXPECT_EQ(r.cache_ttl, "60");
  }
}

TEST(AuthHttpResponseParser, ChunkedBodyOnEverySplit) {
  const std::string input =
      "HTTP/1.1 200 OK\r\n"
      "Transfer-Encoding: chunked\r\n"
      "Auth-Status: Invalid login or password\r\n"
      "Auth-Wait: 2\r\n"
      "\r\n"
      "5\r\nhello\r\n"
      "3;ext=1\r\nabc\r\n"
      "0\r\n"
      "Trailer: x\r\n"
      "\r\n";
  for (const testing::Chunks& chunks : testing::AllCuttings(input)) {
    AuthHttpResponseParser p;
    ASSERT_EQ(FeedAll(p, chunks, false), Result::kDone) << testing::Describe(chunks) << p.error();
    EXPECT_TRUE(p.response().keep_alive);
    EXPECT_TRUE(p.response().refused);
    EXPECT_EQ(p.response().refusal, "Invalid login or password");
    EXPECT_EQ(p.response().wait_seconds, 2);
  }
}

TEST(AuthHttpResponseParser, StopsAtTheEndOfTheResponse) {
  const std::string one = "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nContent-Length: 2\r\n\r\nab";
  AuthHttpResponseParser p;
  size_t consumed = 0;
  EXPECT_EQ(p.Feed(one + "HTTP/1.1 200 OK\r\n", &consumed), Result::kDone);
  EXPECT_EQ(consumed, one.size());
  EXPECT_EQ(p.Feed("more", &consumed), Result::kDone);  // repeats, consumes nothing
  EXPECT_EQ(consumed, 0u);
  p.Reset();
  EXPECT_EQ(p.Feed(one, &consumed), Result::kDone);
  EXPECT_EQ(consumed, one.size());
}

TEST(AuthHttpResponseParser, KeepAliveRules) {
  struct Case {
    std::string input;
    bool keep_alive;
  } cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true},
      {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false},
      {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
      {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", true},
      {"HTTP/1.1 204 No Content\r\n\r\n", true},
      // No length: the body runs to the end of the stream; done at the
      // headers (nginx reads only those), not reusable.
      {"HTTP/1.1 200 OK\r\nAuth-Status: OK\r\n\r\n", false},
  };
  for (const Case& c : cases) {
    AuthHttpResponseParser p;
    size_t consumed = 0;
    ASSERT_EQ(p.Feed(c.input, &consumed), Result::kDone) << c.input;
    EXPECT_EQ(p.response().keep_alive, c.keep_alive) << c.input;
  }
}

TEST(AuthHttpResponseParser, BodyToEndOfStream) {
  // Done at the end of the headers; the body never matters.
  AuthHttpResponseParser p;
  size_t consumed = 0;
  EXPECT_EQ(p.Feed("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n", &consumed), Result::kNeedMore);
  EXPECT_EQ(p.Feed("\r\nsome body", &consumed), Result::kDone);
  EXPECT_TRUE(p.response().has_status);
}

TEST(AuthHttpResponseParser, Errors) {
  const std::string bad[] = {
      "",                                                  // nothing before EOF
      "garbage\r\n\r\n",                                   // no status line
      "Auth-Status: OK\r\n\r\n",                           // nginx takes this; we do not
      "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\n",            // cut in the headers
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  // cut in the body
      "HTTP/1.1 200 OK\r\nBad[Header: x\r\n\r\n",  // not a token (a space would pass: http-parser
                                                   // is lenient there)
      "HTTP/1.1 200 OK\r\nAuth-Status: O\x01K\r\n\r\n",               // control byte in a value
      "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",                 // bad length
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  // bad chunk
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",         // interim answer
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
  };
  for (const std::string& input : bad) {
    AuthHttpResponseParser p;
    EXPECT_EQ(FeedAll(p, {input}), Result::kError) << input;
    EXPECT_FALSE(p.error().empty()) << input;
    EXPECT_FALSE(ParseAuthHttpResponse(input).ok()) << input;
  }
}

TEST(AuthHttpResponseParser, FoldedLinesAreUnfoldedNeverAnotherHeader) {
  // obs-fold (a line starting with a space): nginx refuses the response;
  // http-parser unfolds it into the value (RFC 7230 3.2.4 allows either),
  // so the folded text can only ever lengthen the value before it.
  absl::StatusOr<AuthHttpResponse> r = ParseAuthHttpResponse(
      "HTTP/1.1 200 OK\r\nAuth-Status: bad\r\n Auth-Server: 1.2.3.4\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->refused);
  EXPECT_EQ(r->refusal, "bad Auth-Server: 1.2.3.4");
  EXPECT_FALSE(r->server.has_value());
}

TEST(AuthHttpResponseParser, BareLineFeeds) {
  // nginx takes LF alone as a line end; so does http-parser.
  absl::StatusOr<AuthHttpResponse> r = ParseAuthHttpResponse(
      "HTTP/1.1 200 OK\nAuth-Status: OK\nAuth-Server: 1.2.3.4\nAuth-Port: 1\nContent-Length: "
      "0\n\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->server, "1.2.3.4");
}

TEST(AuthHttpResponseParser, StartedTellsAStaleConnection) {
  AuthHttpResponseParser p;
  EXPECT_FALSE(p.started());
  EXPECT_EQ(p.FeedEof(), Result::kError);
  EXPECT_EQ(p.error(), "connection closed before a response");
  p.Reset();
  size_t consumed = 0;
  EXPECT_EQ(p.Feed("HTTP/1.1 2", &consumed), Result::kNeedMore);
  EXPECT_TRUE(p.started());
  EXPECT_EQ(p.FeedEof(), Result::kError);
  EXPECT_EQ(p.error(), "connection closed in the middle of the response");
}

TEST(AuthHttpResponseParser, HeaderBound) {
  const std::string big(kAuthHttpMaxHeaderBytes, 'x');
  AuthHttpResponseParser p;
  EXPECT_EQ(FeedAll(p, {"HTTP/1.1 200 OK\r\nX-Big: " + big + "\r\n\r\n"}), Result::kError);
  EXPECT_TRUE(absl::StrContains(p.error(), "headers over")) << p.error();
  // Many small headers add up too.
  std::string many = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 2000; ++i) absl::StrAppend(&many, "X-", i, ": v\r\n");
  AuthHttpResponseParser q;
  EXPECT_EQ(FeedAll(q, {many + "\r\n"}), Result::kError);
  // Just under the bound is fine.
  AuthHttpResponseParser ok;
  EXPECT_EQ(
      FeedAll(ok, {"HTTP/1.1 200 OK\r\nX: " + std::string(kAuthHttpMaxHeaderBytes - 100, 'y') +
                   "\r\nContent-Length: 0\r\n\r\n"}),
      Result::kDone)
      << ok.error();
}

TEST(AuthHttpResponseParser, BodyBound) {
  const std::string body(kAuthHttpMaxBodyBytes + 1, 'b');
  AuthHttpResponseParser p;
  EXPECT_EQ(FeedAll(p, {absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", body.size(), "\r\n\r\n",
                                     body)}),
            Result::kError);
  EXPECT_TRUE(absl::StrContains(p.error(), "body over")) << p.error();
}

TEST(AuthHttpResponseParser, AuthStatusAsNginxReadsIt) {
  auto parse = [](absl::string_view headers) {
    absl::StatusOr<AuthHttpResponse> r = ParseAuthHttpResponse(
        absl::StrCat("HTTP/1.1 200 OK\r\n", headers, "Content-Length: 0\r\n\r\n"));
    EXPECT_TRUE(r.ok()) << headers;
    return r.value_or(AuthHttpResponse());
  };
  AuthHttpResponse r = parse("Auth-Status: ok\r\n");  // case matters for the value
  EXPECT_TRUE(r.refused);
  EXPECT_EQ(r.refusal, "ok");
  r = parse("Auth-Status:\r\n");  // empty: a refusal with no text
  EXPECT_TRUE(r.refused);
  EXPECT_EQ(r.refusal, "");
  r = parse("Auth-Status: Bad\r\nAuth-Status: OK\r\n");  // nginx never clears a refusal
  EXPECT_TRUE(r.refused);
  EXPECT_EQ(r.refusal, "Bad");
  r = parse("Auth-Status: First\r\nAuth-Status: Second\r\n");
  EXPECT_EQ(r.refusal, "Second");
  r = parse("Auth-Status: WAIT\r\nAuth-Wait: 4\r\n");
  EXPECT_TRUE(r.status_wait);
  EXPECT_FALSE(r.refused);
  r = parse("Auth-Wait: 5\r\nAuth-Wait: x\r\nAuth-Wait: -1\r\n");  // a bad value keeps the last
  EXPECT_EQ(r.wait_seconds, 5);
  r = parse("X-Auth-Status: OK\r\nAuth-Statuses: OK\r\n");  // other names are ignored
  EXPECT_FALSE(r.has_status);
}

// --- what an answer means --------------------------------------------------------------------

AuthHttpOutcome Interpret(absl::string_view headers, int status = 200) {
  absl::StatusOr<AuthHttpResponse> r = ParseAuthHttpResponse(
      absl::StrCat("HTTP/1.1 ", status, " X\r\n", headers, "Content-Length: 0\r\n\r\n"));
  EXPECT_TRUE(r.ok()) << headers << r.status();
  return InterpretAuthHttpResponse(r.value_or(AuthHttpResponse()));
}

TEST(InterpretAuthHttpResponse, Accept) {
  AuthHttpOutcome o =
      Interpret("Auth-Status: OK\r\nAuth-Server: 192.0.2.10\r\nAuth-Port: 143\r\nAuth-Wait: 9\r\n");
  ASSERT_EQ(o.kind, AuthHttpOutcome::Kind::kAnswer);
  const DirectoryAnswer& a = o.answer;
  EXPECT_EQ(a.verdict, Verdict::kAccept);
  EXPECT_TRUE(a.checked);
  EXPECT_EQ(a.host, "192.0.2.10");
  EXPECT_EQ(a.port, 143);
  EXPECT_EQ(a.backend_user, "");  // the client's own user and password
  EXPECT_EQ(a.backend_password, "");
  EXPECT_FALSE(a.master);
  EXPECT_EQ(a.wait.count(), 0);  // Auth-Wait only matters for refusals
  EXPECT_FALSE(a.cacheable);     // nginx asks every time
}

TEST(InterpretAuthHttpResponse, AcceptWithRewritesAndExtensions) {
  const DirectoryAnswer a =
      Interpret(
          "Auth-Status: OK\r\nAuth-Server: [2001:db8::1]\r\nAuth-Port: 10143\r\n"
          "Auth-User: real@store\r\nAuth-Pass: back end\r\nAuth-Backend: store1\r\n"
          "Auth-Shard: s7\r\nAuth-Master: Yes\r\nAuth-Cache-TTL: 30\r\n")
          .answer;
  EXPECT_EQ(a.verdict, Verdict::kAccept);
  EXPECT_EQ(a.host, "2001:db8::1");
  EXPECT_EQ(a.port, 10143);
  EXPECT_EQ(a.backend_user, "real@store");
  EXPECT_EQ(a.backend_password, "back end");
  EXPECT_EQ(a.backend, "store1");
  EXPECT_EQ(a.shard, "s7");
  EXPECT_TRUE(a.master);
  EXPECT_TRUE(a.cacheable);
  EXPECT_EQ(a.ttl, std::chrono::seconds(30));
}

TEST(InterpretAuthHttpResponse, BackendOrShardInsteadOfServer) {
  DirectoryAnswer a = Interpret("Auth-Status: OK\r\nAuth-Backend: store2\r\n").answer;
  EXPECT_EQ(a.verdict, Verdict::kAccept);
  EXPECT_EQ(a.backend, "store2");
  EXPECT_EQ(a.host, "");
  a = Interpret("Auth-Status: OK\r\nAuth-Shard: s1\r\n").answer;
  EXPECT_EQ(a.verdict, Verdict::kAccept);
  EXPECT_EQ(a.shard, "s1");
}

TEST(InterpretAuthHttpResponse, NoStatusButServerIsAcceptedAsNginxDoes) {
  const DirectoryAnswer a = Interpret("Auth-Server: 127.0.0.1\r\nAuth-Port: 110\r\n").answer;
  EXPECT_EQ(a.verdict, Verdict::kAccept);
  EXPECT_EQ(a.port, 110);
}

TEST(InterpretAuthHttpResponse, Refuse) {
  const DirectoryAnswer a = Interpret(
                                "Auth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n"
                                "Auth-Error-Code: AUTHENTICATIONFAILED\r\nAuth-Server: 1.2.3.4\r\n")
                                .answer;
  EXPECT_EQ(a.verdict, Verdict::kRefuse);
  EXPECT_TRUE(a.checked);
  EXPECT_EQ(a.text, "Invalid login or password");
  EXPECT_EQ(a.wait, std::chrono::seconds(3));
  EXPECT_EQ(a.code, "AUTHENTICATIONFAILED");
  EXPECT_EQ(a.host, "");
  EXPECT_FALSE(a.cacheable);
}

TEST(InterpretAuthHttpResponse, RefusalDetails) {
  // SMTP-style codes are no atom: dropped.
  EXPECT_EQ(Interpret("Auth-Status: no\r\nAuth-Error-Code: 535 5.7.0\r\n").answer.code, "");
  EXPECT_EQ(Interpret("Auth-Status: no\r\nAuth-Error-Code: SYS/TEMP\r\n").answer.code, "SYS/TEMP");
  EXPECT_EQ(Interpret("Auth-Status: no\r\nAuth-Error-Code: A]B\r\n").answer.code, "");
  // Auth-Wait is capped.
  EXPECT_EQ(Interpret("Auth-Status: no\r\nAuth-Wait: 99999\r\n").answer.wait, kAuthHttpMaxWait);
  // A refusal may be cached when the service says so.
  const DirectoryAnswer a = Interpret("Auth-Status: no\r\nAuth-Cache-TTL: 5\r\n").answer;
  EXPECT_TRUE(a.cacheable);
  EXPECT_EQ(a.ttl, std::chrono::seconds(5));
  EXPECT_FALSE(Interpret("Auth-Status: no\r\nAuth-Cache-TTL: 0\r\n").answer.cacheable);
}

TEST(InterpretAuthHttpResponse, Wait) {
  AuthHttpOutcome o = Interpret("Auth-Status: WAIT\r\nAuth-Wait: 2\r\n");
  EXPECT_EQ(o.kind, AuthHttpOutcome::Kind::kAskAgain);
  EXPECT_EQ(o.again_after, std::chrono::seconds(2));
  o = Interpret("Auth-Status: WAIT\r\n");
  EXPECT_EQ(o.kind, AuthHttpOutcome::Kind::kAskAgain);
  EXPECT_EQ(o.again_after.count(), 0);
  // A refusal wins over WAIT, as in nginx.
  o = Interpret("Auth-Status: WAIT\r\nAuth-Status: no\r\n");
  EXPECT_EQ(o.kind, AuthHttpOutcome::Kind::kAnswer);
  EXPECT_EQ(o.answer.verdict, Verdict::kRefuse);
}

TEST(InterpretAuthHttpResponse, Unavailable) {
  const std::pair<std::string, int> cases[] = {
      {"Auth-Status: OK\r\n", 200},                                       // nowhere to go
      {"Auth-Status: OK\r\nAuth-Server: 1.2.3.4\r\n", 200},               // no port
      {"Auth-Status: OK\r\nAuth-Port: 143\r\n", 200},                     // no server
      {"Auth-Status: OK\r\nAuth-Port: 143\r\nAuth-Backend: b\r\n", 200},  // port without server
      {"Auth-Status: OK\r\nAuth-Server: mail.example.org\r\nAuth-Port: 143\r\n", 200},  // a name
      {"Auth-Status: OK\r\nAuth-Server: 1.2.3.4:143\r\nAuth-Port: 143\r\n", 200},
      {"Auth-Status: OK\r\nAuth-Server: 1.2.3\r\nAuth-Port: 143\r\n", 200},
      {"Auth-Status: OK\r\nAuth-Server: [1.2.3.4]\r\nAuth-Port: 143\r\n", 200},
      {"Auth-Status: OK\r\nAuth-Server: 1.2.3.4\r\nAuth-Port: 0\r\n", 200},
      {"Auth-Status: OK\r\nAuth-Server: 1.2.3.4\r\nAuth-Port: 65536\r\n", 200},
      {"Auth-Status: OK\r\nAuth-Server: 1.2.3.4\r\nAuth-Port: +143\r\n", 200},
      {"Auth-Status: OK\r\nAuth-Backend: b\r\nAuth-Master: maybe\r\n", 200},
      {"", 200},                                                               // nothing at all
      {"Auth-Status: OK\r\nAuth-Server: 1.2.3.4\r\nAuth-Port: 143\r\n", 500},  // not 2xx
      {"Auth-Status: OK\r\nAuth-Server: 1.2.3.4\r\nAuth-Port: 143\r\n", 302},
      {"Auth-Status: Invalid\r\n", 404},
  };
  for (const auto& [headers, status] : cases) {
    const AuthHttpOutcome o = Interpret(headers, status);
    EXPECT_EQ(o.kind, AuthHttpOutcome::Kind::kAnswer) << headers;
    EXPECT_EQ(o.answer.verdict, Verdict::kUnavailable) << status << " " << headers;
    EXPECT_FALSE(o.answer.cacheable);
    EXPECT_FALSE(o.answer.detail.empty());
  }
  // Any 2xx is an answer (nginx reads no status at all; "return 204" with
  // add_header is a common nginx-served auth endpoint).
  EXPECT_EQ(Interpret("Auth-Status: OK\r\nAuth-Server: 1.2.3.4\r\nAuth-Port: 143\r\n", 204)
                .answer.verdict,
            Verdict::kAccept);
}

TEST(ParseAuthHttpServerAddress, NumericOnly) {
  EXPECT_EQ(ParseAuthHttpServerAddress("127.0.0.1").value_or(""), "127.0.0.1");
  EXPECT_EQ(ParseAuthHttpServerAddress("::1").value_or(""), "::1");
  EXPECT_EQ(ParseAuthHttpServerAddress("[::1]").value_or(""), "::1");
  EXPECT_EQ(ParseAuthHttpServerAddress("2001:DB8:0::1").value_or(""), "2001:db8::1");
  for (const char* bad :
       {"", "localhost", "1.2.3.4.5", "[1.2.3.4]", "1.2.3.4 ", "[::1", "::g", "01.2.3.4x"}) {
    EXPECT_FALSE(ParseAuthHttpServerAddress(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace postern
