// Snapshots: what a reload builds anew, what it carries over (health slots,
// the abuse table, ticket keys), and what it refuses to change.

#include "proxy/snapshot.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tls/tls_context.h"

namespace postern {
namespace {

using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << contents;
}

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "postern_snapshot_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    std::string cert, key;
    ASSERT_TRUE(MakeSelfSignedPem({"mail.example.test"}, &cert, &key).ok());
    WriteFile(dir_ + "/cert.pem", cert);
    WriteFile(dir_ + "/key.pem", key);
    std::string raw(80, '\0');
    for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<char>(i * 7 + 1);
    WriteFile(dir_ + "/ticket.keys", absl::Base64Escape(raw) + "\n");
  }

  std::shared_ptr<const Config> Parse(const std::string& extra) {
    const std::string yaml = absl::StrCat(R"(
listeners:
  - {name: imaps, protocol: imap, address: "127.0.0.1:0", tls: implicit}
  - {name: pop3, protocol: pop3, address: "127.0.0.1:0", tls: none}
tls: {certificate: cert.pem, key: key.pem}
backends:
  - {name: a, address: 127.0.0.1}
  - {name: b, address: 127.0.0.2}
)",
                                          extra);
    auto c = ParseConfig(yaml, dir_ + "/postern.yaml");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }

  std::string dir_;
};

TEST_F(SnapshotTest, AReloadCarriesHealthAbuseAndTicketKeysOver) {
  auto first = BuildSnapshot(Parse(""), nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  const Snapshot& s1 = **first;
  EXPECT_EQ(s1.serial, 1u);
  ASSERT_NE(s1.tls, nullptr);
  ASSERT_NE(s1.tls->ticket_keys(), nullptr);  // in memory, to be carried over
  s1.health->Find("a")->drained.store(true);

  auto second = BuildSnapshot(Parse(""), &s1);
  ASSERT_TRUE(second.ok()) << second.status();
  const Snapshot& s2 = **second;
  EXPECT_EQ(s2.serial, 2u);
  EXPECT_NE(s2.tls, s1.tls);                                // certificates read again
  EXPECT_EQ(s2.tls->ticket_keys(), s1.tls->ticket_keys());  // tickets still resume
  EXPECT_EQ(s2.health->Find("a"), s1.health->Find("a"));    // the same slot
  EXPECT_TRUE(s2.health->Find("a")->drained.load());
  EXPECT_EQ(s2.abuse, s1.abuse);  // same policy: same counts
  EXPECT_NE(s2.cache, s1.cache);  // answers are not carried

  // Another abuse policy: a new table.
  auto third = BuildSnapshot(Parse("abuse: {block_after_ip: 7}\n"), &s2);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_NE((*third)->abuse, s2.abuse);
}

TEST_F(SnapshotTest, TicketKeyFileIsReadAgainAndShared) {
  auto c1 = ParseConfig(R"(
listeners:
  - {name: imaps, protocol: imap, address: "127.0.0.1:0", tls: implicit}
tls: {certificate: cert.pem, key: key.pem, ticket_key_file: ticket.keys}
backends:
  - {name: a, address: 127.0.0.1}
)",
                        dir_ + "/postern.yaml");
  ASSERT_TRUE(c1.ok()) << c1.status();
  auto s1 = BuildSnapshot(*c1, nullptr);
  ASSERT_TRUE(s1.ok()) << s1.status();
  ASSERT_NE((*s1)->tls->ticket_keys(), nullptr);
  EXPECT_EQ((*s1)->tls->ticket_keys()->size(), 1u);
  // A second key at the front (a rotation): the reload reads it into the
  // same shared object.
  std::string raw(80, '\x42');
  std::ifstream in(dir_ + "/ticket.keys");
  std::string old((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  WriteFile(dir_ + "/ticket.keys", absl::Base64Escape(raw) + "\n" + old);
  auto s2 = BuildSnapshot(*c1, s1->get());
  ASSERT_TRUE(s2.ok()) << s2.status();
  EXPECT_EQ((*s2)->tls->ticket_keys(), (*s1)->tls->ticket_keys());
  EXPECT_EQ((*s2)->tls->ticket_keys()->size(), 2u);
  // A broken key file: the reload is refused, naming the option.
  WriteFile(dir_ + "/ticket.keys", "not base64 at all!\n");
  auto s3 = BuildSnapshot(*c1, s2->get());
  ASSERT_FALSE(s3.ok());
  EXPECT_THAT(std::string(s3.status().message()), HasSubstr("tls.ticket_key_file"));
  EXPECT_EQ((*s2)->tls->ticket_keys()->size(), 2u);  // the keys in use stay
}

TEST_F(SnapshotTest, AMissingCertificateRefusesTheSnapshot) {
  auto c = Parse("");
  ASSERT_NE(c, nullptr);
  unlink((dir_ + "/cert.pem").c_str());
  auto s = BuildSnapshot(c, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("cert.pem"));
}

TEST_F(SnapshotTest, ReloadRefusesListenerWorkerAndUserChanges) {
  auto base = Parse("");
  ASSERT_NE(base, nullptr);
  EXPECT_TRUE(CheckReloadable(*base, *Parse("limits: {max_line: 4096}\n")).ok());
  EXPECT_TRUE(CheckReloadable(*base, *Parse("routing: {default_backend: b}\n")).ok());
  auto workers = CheckReloadable(*base, *Parse("workers: 3\n"));
  EXPECT_THAT(std::string(workers.message()), HasSubstr("workers"));

  auto moved = ParseConfig(R"(
listeners:
  - {name: imaps, protocol: imap, address: "127.0.0.1:9993", tls: implicit}
  - {name: pop3, protocol: pop3, address: "127.0.0.1:0", tls: none}
tls: {certificate: cert.pem, key: key.pem}
backends:
  - {name: a, address: 127.0.0.1}
)",
                           dir_ + "/postern.yaml");
  ASSERT_TRUE(moved.ok()) << moved.status();
  auto st = CheckReloadable(*base, **moved);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("listeners[0].address"));

  auto fewer = ParseConfig(R"(
listeners:
  - {name: imaps, protocol: imap, address: "127.0.0.1:0", tls: implicit}
tls: {certificate: cert.pem, key: key.pem}
backends:
  - {name: a, address: 127.0.0.1}
)",
                           dir_ + "/postern.yaml");
  ASSERT_TRUE(fewer.ok()) << fewer.status();
  EXPECT_THAT(std::string(CheckReloadable(*base, **fewer).message()),
              HasSubstr("number of listeners"));
}

}  // namespace
}  // namespace postern
