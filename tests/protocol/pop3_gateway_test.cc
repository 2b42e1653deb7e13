#include "protocol/pop3_gateway.h"

#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern {
namespace {

#include "tests/protocol/dovecot_fixtures.inc"

using ::testing::HasSubstr;

// A scripted IMAP server: enough of RFC 3501 for what the gateway sends,
// answering the way Dovecot does.
class FakeImap {
 public:
  struct Msg {
    uint32_t uid;
    std::string body;
    std::set<std::string> flags;
    bool expunged_elsewhere = false;  // gone from the server, still in the gateway's table
    // Set by another session since our last command. As in Dovecot, a
    // command runs on our view first (SEARCH does not see them), then the
    // view syncs (they become `flags`, announced by an untagged FETCH before
    // the tagged answer); EXPUNGE acts on the store itself and sees them.
    std::set<std::string> unsynced_flags;
  };
  std::vector<Msg> msgs;
  uint32_t uidvalidity = 1796135574;
  bool uidplus = true;
  bool send_uidvalidity = true;
  // Recorded SELECT / FETCH sizes responses to replay instead of generating.
  std::string select_untagged, select_tagged, sizes_untagged;
  // Sent before the next answer (unsolicited responses).
  std::string inject;
  std::vector<std::string> commands;        // everything received, tags stripped
  std::map<std::string, std::string> fail;  // command prefix -> tagged answer

  std::string Answer(const std::string& line) {
    std::string out = Run(line);
    // The view syncs at the end of every command.
    std::string sync;
    std::vector<Msg*> live = Live();
    for (size_t i = 0; i < live.size(); ++i) {
      if (live[i]->unsynced_flags.empty()) continue;
      live[i]->flags.insert(live[i]->unsynced_flags.begin(), live[i]->unsynced_flags.end());
      live[i]->unsynced_flags.clear();
      absl::StrAppend(&sync, "* ", i + 1, " FETCH (FLAGS (", absl::StrJoin(live[i]->flags, " "),
                      "))\r\n");
    }
    const size_t tagged = out.rfind("\r\n", out.size() - 3);
    out.insert(tagged == std::string::npos ? 0 : tagged + 2, sync);
    return out;
  }

  std::string Run(const std::string& line) {
    const size_t sp = line.find(' ');
    const std::string tag = line.substr(0, sp);
    const std::string cmd = line.substr(sp + 1, line.size() - sp - 3);  // no CRLF
    commands.push_back(cmd);
    std::string out = inject;
    inject.clear();
    for (const auto& [prefix, answer] : fail) {
      if (absl::StartsWith(cmd, prefix)) return absl::StrCat(out, tag, " ", answer, "\r\n");
    }
    if (cmd == "SELECT INBOX") {
      if (!select_untagged.empty())
        return absl::StrCat(out, select_untagged, tag, " ", select_tagged);
      absl::StrAppend(&out, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* ",
                      Live().size(), " EXISTS\r\n* 0 RECENT\r\n");
      if (send_uidvalidity)
        absl::StrAppend(&out, "* OK [UIDVALIDITY ", uidvalidity, "] UIDs valid\r\n");
      return absl::StrCat(out, tag, " OK [READ-WRITE] Select completed.\r\n");
    }
    if (cmd == "FETCH 1:* (UID RFC822.SIZE)") {
      if (!sizes_untagged.empty())
        return absl::StrCat(out, sizes_untagged, tag, " OK Fetch completed.\r\n");
      std::vector<Msg*> live = Live();
      for (size_t i = 0; i < live.size(); ++i) {
        absl::StrAppend(&out, "* ", i + 1, " FETCH (UID ", live[i]->uid, " RFC822.SIZE ",
                        live[i]->body.size(), ")\r\n");
      }
      return absl::StrCat(out, tag, " OK Fetch completed.\r\n");
    }
    if (absl::StartsWith(cmd, "UID FETCH ")) {
      std::vector<std::string> parts = absl::StrSplit(cmd, ' ');
      uint32_t uid = 0;
      EXPECT_TRUE(absl::SimpleAtoi(parts[2], &uid)) << cmd;
      const std::string item = parts[3].substr(1, parts[3].size() - 2);
      size_t seq = 0;
      Msg* m = Find(uid, &seq);
      if (m != nullptr) {
        const size_t hdr_end = m->body.find("\r\n\r\n");
        // The header ends after its blank line; an empty header is just that
        // line; no blank line: all header (RFC 3501 section 6.4.5).
        const size_t split = absl::StartsWith(m->body, "\r\n") ? 2
                             : hdr_end == std::string::npos    ? m->body.size()
                                                               : hdr_end + 4;
        std::string label, data;
        if (item == "BODY.PEEK[]" || item == "BODY[]") {
          label = "BODY[]";
          data = m->body;
          if (item == "BODY[]") m->flags.insert("\\Seen");
        } else if (item == "BODY.PEEK[HEADER]") {
          label = "BODY[HEADER]";
          data = m->body.substr(0, split);
        } else {
          // BODY.PEEK[TEXT]<o.l>
          uint64_t o = 0, l = 0;
          std::vector<std::string> ol = absl::StrSplit(item.substr(16, item.size() - 17), '.');
          EXPECT_TRUE(absl::SimpleAtoi(ol[0], &o) && absl::SimpleAtoi(ol[1], &l)) << item;
          const std::string text = m->body.substr(split);
          label = absl::StrCat("BODY[TEXT]<", o, ">");
          data = o < text.size() ? text.substr(o, l) : "";
        }
        absl::StrAppend(&out, "* ", seq, " FETCH (UID ", uid, " ", label, " {", data.size(),
                        "}\r\n", data, ")\r\n");
      }
      return absl::StrCat(out, tag, " OK Fetch completed.\r\n");
    }
    if (absl::StartsWith(cmd, "UID STORE ")) {
      std::vector<std::string> parts = absl::StrSplit(cmd, ' ');
      const std::string flag = parts[4].substr(1, parts[4].size() - 2);
      for (uint32_t uid : Uids(parts[2])) {
        if (Msg* m = Find(uid, nullptr)) m->flags.insert(flag);
      }
      return absl::StrCat(out, tag, " OK Store completed.\r\n");
    }
    if (absl::StartsWith(cmd, "UID EXPUNGE ")) {
      std::set<uint32_t> set;
      for (uint32_t uid : Uids(cmd.substr(12))) set.insert(uid);
      Expunge([&](const Msg& m) { return set.count(m.uid) > 0; }, &out);
      return absl::StrCat(out, tag, " OK Expunge completed.\r\n");
    }
    if (cmd == "EXPUNGE") {
      Expunge([](const Msg&) { return true; }, &out);
      return absl::StrCat(out, tag, " OK Expunge completed.\r\n");
    }
    if (cmd == "NOOP") return absl::StrCat(out, tag, " OK NOOP completed.\r\n");
    if (cmd == "UID SEARCH DELETED") {
      out += "* SEARCH";
      for (Msg* m : Live()) {
        if (m->flags.count("\\Deleted")) absl::StrAppend(&out, " ", m->uid);
      }
      return absl::StrCat(out, "\r\n", tag, " OK Search completed.\r\n");
    }
    if (cmd == "LOGOUT") {
      return absl::StrCat(out, "* BYE Logging out\r\n", tag, " OK Logout completed.\r\n");
    }
    return absl::StrCat(out, tag, " BAD Error in IMAP command\r\n");
  }

  std::vector<Msg*> Live() {
    std::vector<Msg*> v;
    for (Msg& m : msgs) {
      if (!m.expunged_elsewhere) v.push_back(&m);
    }
    return v;
  }
  Msg* Find(uint32_t uid, size_t* seq) {
    std::vector<Msg*> live = Live();
    for (size_t i = 0; i < live.size(); ++i) {
      if (live[i]->uid == uid) {
        if (seq != nullptr) *seq = i + 1;
        return live[i];
      }
    }
    return nullptr;
  }
  const Msg* ByUid(uint32_t uid) const {
    for (const Msg& m : msgs) {
      if (m.uid == uid) return &m;
    }
    return nullptr;
  }
  static std::vector<uint32_t> Uids(absl::string_view set) {
    std::vector<uint32_t> out;
    for (absl::string_view r : absl::StrSplit(set, ',')) {
      std::vector<absl::string_view> ab = absl::StrSplit(r, ':');
      uint32_t a = 0, b = 0;
      EXPECT_TRUE(absl::SimpleAtoi(ab[0], &a)) << set;
      b = a;
      if (ab.size() == 2) {
        EXPECT_TRUE(absl::SimpleAtoi(ab[1], &b)) << set;
      }
      for (uint32_t u = a; u <= b; ++u) out.push_back(u);
    }
    return out;
  }
  template <typename F>
  void Expunge(F pick, std::string* out) {
    for (size_t i = 0; i < msgs.size();) {
      std::vector<Msg*> live = Live();
      bool removed = false;
      for (size_t s = 0; s < live.size(); ++s) {
        if ((live[s]->flags.count("\\Deleted") || live[s]->unsynced_flags.count("\\Deleted")) &&
            pick(*live[s])) {
          absl::StrAppend(out, "* ", s + 1, " EXPUNGE\r\n");
          const uint32_t uid = live[s]->uid;
          msgs.erase(
              std::find_if(msgs.begin(), msgs.end(), [uid](const Msg& m) { return m.uid == uid; }));
          removed = true;
          break;
        }
      }
      if (!removed) break;
      (void)i;
    }
  }
};

class Host : public Pop3GatewayHost {
 public:
  std::string client;
  std::deque<std::string> backend;
  size_t backlog = 0;
  bool track_backlog = false;  // backlog = what the client has not drained
  size_t drained = 0;
  std::string finished;
  int finish_calls = 0;

  void ToClient(absl::string_view b) override { client.append(b.data(), b.size()); }
  void ToBackend(absl::string_view b) override { backend.emplace_back(b); }
  size_t ClientBacklog() const override {
    return track_backlog ? client.size() - drained : backlog;
  }
  void Finish(absl::string_view reason) override {
    finished = std::string(reason);
    ++finish_calls;
  }
};

// One gateway, its host and its fake backend. Backend answers are fed in
// pieces of `piece` bytes (0: whole).
struct Session {
  BufferPool pool;
  Buffer in{pool};
  Host host;
  FakeImap server;
  Pop3GatewayOptions options;
  std::unique_ptr<Pop3Gateway> gw;
  size_t piece = 0;
  std::vector<std::string> caps = {"IMAP4rev1", "UIDPLUS", "LITERAL+"};

  void Start() {
    server.uidplus = std::find(caps.begin(), caps.end(), "UIDPLUS") != caps.end();
    gw = std::make_unique<Pop3Gateway>(host, options);
    gw->Start(caps);
    Pump();
  }
  void Pump() {
    while (!host.backend.empty() && !gw->finished()) {
      const std::string line = host.backend.front();
      host.backend.pop_front();
      Feed(server.Answer(line));
    }
  }
  void Feed(absl::string_view answer) {
    if (piece == 0) {
      gw->OnBackendData(answer);
      return;
    }
    for (size_t i = 0; i < answer.size(); i += piece) gw->OnBackendData(answer.substr(i, piece));
  }
  // Sends client bytes and returns what the client got back.
  std::string Client(absl::string_view bytes) {
    host.client.clear();
    in.Append(bytes);
    gw->OnClientData(in);
    Pump();
    return host.client;
  }
  void AddMessage(uint32_t uid, std::string body) {
    server.msgs.push_back({uid, std::move(body), {}, false, {}});
  }
};

std::string Msg(int i) {
  return absl::StrCat("From: a@example.org\r\nSubject: message ", i,
                      "\r\n\r\nline one\r\n.dot line\r\nline three\r\n");
}

TEST(Pop3GatewayTest, DovecotFixturesByteForByte) {
  for (size_t piece : {0, 1, 7, 64}) {
    Session s;
    s.piece = piece;
    s.options.pop3_limits.error_budget = 100;
    s.server.select_untagged = std::string(kDovecotSelectUntagged);
    s.server.select_tagged = std::string(kDovecotSelectTagged);
    s.server.sizes_untagged = std::string(kDovecotFetchSizesUntagged);
    for (const DovecotMessage& m : kDovecotMessages) {
      s.AddMessage(m.uid, std::string(m.body));
      // RFC822.SIZE is what BODY[] returns (RFC 9051 section 2.3.4).
      ASSERT_THAT(std::string(kDovecotFetchSizesUntagged),
                  HasSubstr(absl::StrCat("UID ", m.uid, " RFC822.SIZE ", m.body.size(), ")")));
    }
    s.Start();
    EXPECT_EQ(s.host.client, kDovecotPop3LoggedIn);
    EXPECT_EQ(s.Client("STAT\r\n"), kDovecotStat);
    EXPECT_EQ(s.Client("LIST\r\n"), kDovecotList);
    EXPECT_EQ(s.Client("UIDL\r\n"), kDovecotUidl);
    for (const DovecotMessage& m : kDovecotMessages) {
      const size_t n = &m - kDovecotMessages + 1;
      SCOPED_TRACE(absl::StrCat(m.name, " piece ", piece));
      EXPECT_EQ(s.Client(absl::StrCat("LIST ", n, "\r\n")), m.list);
      EXPECT_EQ(s.Client(absl::StrCat("UIDL ", n, "\r\n")), m.uidl);
      std::string want_retr(m.retr);
      std::vector<std::string> want_top;
      for (const DovecotTop& t : m.top) want_top.emplace_back(t.answer);
      if (m.name == "dot-first") {
        // Dovecot leaves the first line unstuffed; RFC 1939 section 3 does
        // not, and neither do we (protocol/dot_stuffer.h).
        ASSERT_THAT(want_retr, HasSubstr(" octets\r\n.hidden"));
        absl::StrReplaceAll({{" octets\r\n.hidden", " octets\r\n..hidden"}}, &want_retr);
        for (std::string& t : want_top)
          absl::StrReplaceAll({{"+OK\r\n.hidden", "+OK\r\n..hidden"}}, &t);
      }
      EXPECT_EQ(s.Client(absl::StrCat("RETR ", n, "\r\n")), want_retr);
      for (size_t k = 0; k < want_top.size(); ++k) {
        EXPECT_EQ(s.Client(absl::StrCat("TOP ", n, " ", m.top[k].lines, "\r\n")), want_top[k])
            << "TOP " << n << " " << m.top[k].lines;
      }
    }
    for (const DovecotExchange& e : kDovecotMisc) {
      EXPECT_EQ(s.Client(absl::StrCat(e.command, "\r\n")), e.answer) << e.command;
    }
    EXPECT_EQ(s.Client("QUIT\r\n"), kDovecotQuit);
    EXPECT_EQ(s.host.finished, "client: quit");
    // RETR marked every message \Seen, but the RSET among the other
    // commands forgot that, as in Dovecot; nothing deleted.
    EXPECT_EQ(s.server.msgs.size(), std::size(kDovecotMessages));
    for (const FakeImap::Msg& m : s.server.msgs) EXPECT_TRUE(m.flags.empty()) << m.uid;
    EXPECT_EQ(s.server.commands.back(), "LOGOUT");
    EXPECT_FALSE(absl::StartsWith(s.server.commands[s.server.commands.size() - 2], "UID STORE"));
    EXPECT_EQ(s.gw->counters().retrieved, std::size(kDovecotMessages));
  }
}

TEST(Pop3GatewayTest, CapaAndUnknownCommands) {
  Session s;
  s.AddMessage(1, Msg(1));
  s.Start();
  EXPECT_EQ(s.Client("CAPA\r\n"),
            "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\n"
            "SASL PLAIN\r\nIMPLEMENTATION Postern\r\n.\r\n");
  EXPECT_EQ(s.Client("USER bob\r\n"), "-ERR Unknown command: USER\r\n");
  EXPECT_EQ(s.Client("XYZ\r\n"), "-ERR Unknown command: XYZ\r\n");
  EXPECT_EQ(s.Client("XYZZY\r\n"), "-ERR Unknown command\r\n");  // not a 3-4 char keyword
  EXPECT_EQ(s.Client("RETR 4294967296\r\n"), "-ERR Message number too large: 4294967296\r\n");
  EXPECT_EQ(s.Client("RETR -1\r\n"), "-ERR Invalid message number: -1\r\n");
  EXPECT_EQ(s.Client("LIST 1 2\r\n"), "-ERR Noise after message number:  2\r\n");
  EXPECT_EQ(s.Client("TOP 1 99999999999999999999999\r\n"),
            "-ERR Size too large: 99999999999999999999999\r\n");
  EXPECT_EQ(s.Client("TOP 1 2x\r\n"), "-ERR Noise after size: x\r\n");
  EXPECT_EQ(s.Client("NOOP\r\n"), "+OK\r\n");
  // No backend traffic for any of these.
  EXPECT_EQ(s.server.commands,
            (std::vector<std::string>{"SELECT INBOX", "FETCH 1:* (UID RFC822.SIZE)"}));
}

TEST(Pop3GatewayTest, ErrorBudgetEndsTheSession) {
  Session s;
  s.options.pop3_limits.error_budget = 2;
  s.AddMessage(1, Msg(1));
  s.Start();
  std::string out = s.Client("FOO\r\nFOO\r\nFOO\r\nSTAT\r\n");
  EXPECT_EQ(out,
            "-ERR Unknown command: FOO\r\n-ERR Unknown command: FOO\r\n"
            "-ERR Unknown command: FOO\r\n");
  EXPECT_EQ(s.host.finished, "client: too many invalid commands");
  EXPECT_EQ(s.server.commands.back(), "LOGOUT");
}

TEST(Pop3GatewayTest, PipelinedCommandsAnsweredInOrder) {
  for (size_t piece : {0, 1, 3}) {
    Session s;
    s.piece = piece;
    for (uint32_t u = 1; u <= 3; ++u) s.AddMessage(u * 10, Msg(u));
    s.Start();
    const std::string m1 = Msg(1);
    const std::string out = s.Client("STAT\r\nRETR 1\r\nDELE 2\r\nLIST\r\nTOP 3 1\r\nNOOP\r\n");
    const std::string want = absl::StrCat(
        "+OK 3 ", 3 * m1.size(), "\r\n", "+OK ", m1.size(), " octets\r\n",
        "From: a@example.org\r\nSubject: message 1\r\n\r\nline one\r\n..dot line\r\nline "
        "three\r\n.\r\n",
        "+OK Marked to be deleted.\r\n", "+OK 2 messages:\r\n1 ", m1.size(), "\r\n3 ", m1.size(),
        "\r\n.\r\n", "+OK\r\nFrom: a@example.org\r\nSubject: message 3\r\n\r\nline one\r\n.\r\n",
        "+OK\r\n");
    EXPECT_EQ(out, want) << piece;
  }
}

TEST(Pop3GatewayTest, PipelinedBytesArriveInPieces) {
  Session s;
  s.AddMessage(1, Msg(1));
  s.Start();
  std::string out;
  for (char c : std::string("STAT\r\nUIDL 1\r\nLIST 1\r\n")) out += s.Client(std::string(1, c));
  EXPECT_EQ(out, absl::StrCat("+OK 1 ", Msg(1).size(), "\r\n+OK 1 000000016b0eda96\r\n+OK 1 ",
                              Msg(1).size(), "\r\n"));
}

TEST(Pop3GatewayTest, ExpungedElsewhere) {
  Session s;
  s.AddMessage(1, Msg(1));
  s.AddMessage(2, Msg(2));
  s.Start();
  s.server.msgs[0].expunged_elsewhere = true;
  s.server.inject = "* 1 EXPUNGE\r\n* 2 EXISTS\r\n* 1 FETCH (FLAGS (\\Seen))\r\n";
  EXPECT_EQ(s.Client("RETR 1\r\n"), "-ERR Message 1 expunged.\r\n");
  EXPECT_EQ(s.Client("TOP 1 0\r\n"), "-ERR Message 1 expunged.\r\n");
  // Numbering and listings stay as they were at login.
  EXPECT_EQ(s.Client("STAT\r\n"), absl::StrCat("+OK 2 ", 2 * Msg(1).size(), "\r\n"));
  EXPECT_THAT(s.Client("RETR 2\r\n"), HasSubstr("Subject: message 2"));
  EXPECT_EQ(s.server.commands[2], "UID FETCH 1 (BODY.PEEK[])");
  EXPECT_EQ(s.server.commands[4], "UID FETCH 2 (BODY.PEEK[])");
}

TEST(Pop3GatewayTest, DeleQuitWithUidplus) {
  Session s;
  for (uint32_t u = 1; u <= 6; ++u) s.AddMessage(u, Msg(u));
  s.Start();
  s.server.msgs[5].flags.insert("\\Deleted");  // someone else's: must survive
  EXPECT_EQ(s.Client("DELE 2\r\nDELE 3\r\nDELE 5\r\nRETR 1\r\n").substr(0, 27),
            "+OK Marked to be deleted.\r\n");
  EXPECT_EQ(s.Client("DELE 2\r\n"), "-ERR Message is deleted.\r\n");
  EXPECT_EQ(s.Client("QUIT\r\n"), "+OK Logging out, messages deleted.\r\n");
  EXPECT_EQ(s.server.commands[3], "UID STORE 1 +FLAGS.SILENT (\\Seen)");
  EXPECT_EQ(s.server.commands[4], "UID STORE 2:3,5 +FLAGS.SILENT (\\Deleted)");
  EXPECT_EQ(s.server.commands[5], "UID EXPUNGE 2:3,5");
  EXPECT_EQ(s.server.commands[6], "LOGOUT");
  std::vector<uint32_t> left;
  for (const auto& m : s.server.msgs) left.push_back(m.uid);
  EXPECT_EQ(left, (std::vector<uint32_t>{1, 4, 6}));
  EXPECT_EQ(s.host.finished, "client: quit");
  EXPECT_EQ(s.gw->counters().deleted, 3u);
}

TEST(Pop3GatewayTest, DeleQuitWithoutUidplus) {
  Session s;
  s.caps = {"IMAP4rev1"};
  for (uint32_t u = 1; u <= 3; ++u) s.AddMessage(u, Msg(u));
  s.Start();
  EXPECT_EQ(s.Client("DELE 1\r\nDELE 3\r\nQUIT\r\n"),
            "+OK Marked to be deleted.\r\n+OK Marked to be deleted.\r\n"
            "+OK Logging out, messages deleted.\r\n");
  EXPECT_EQ(s.server.commands[2], "NOOP");
  EXPECT_EQ(s.server.commands[3], "UID SEARCH DELETED");
  EXPECT_EQ(s.server.commands[4], "UID STORE 1,3 +FLAGS.SILENT (\\Deleted)");
  EXPECT_EQ(s.server.commands[5], "EXPUNGE");
  ASSERT_EQ(s.server.msgs.size(), 1u);
  EXPECT_EQ(s.server.msgs[0].uid, 2u);
}

TEST(Pop3GatewayTest, WithoutUidplusOtherDeletedMessagesBlockTheExpunge) {
  Session s;
  s.caps = {"IMAP4rev1", "IMAP4rev2"};  // rev1 and rev2: rev1 until ENABLE
  for (uint32_t u = 1; u <= 3; ++u) s.AddMessage(u, Msg(u));
  s.Start();
  s.server.msgs[1].flags.insert("\\Deleted");
  EXPECT_EQ(s.Client("DELE 1\r\nQUIT\r\n"),
            "+OK Marked to be deleted.\r\n-ERR [SYS/TEMP] Deleted messages not removed: other "
            "messages in the mailbox are flagged \\Deleted.\r\n");
  EXPECT_EQ(s.server.commands[2], "NOOP");
  EXPECT_EQ(s.server.commands[3], "UID SEARCH DELETED");
  EXPECT_EQ(s.server.commands[4], "LOGOUT");
  EXPECT_EQ(s.server.msgs.size(), 3u);
  EXPECT_FALSE(s.server.msgs[0].flags.count("\\Deleted"));
}

TEST(Pop3GatewayTest, WithoutUidplusDeletedFlagSetElsewhereMidSessionBlocksTheExpunge) {
  // Another IMAP client flags message 2 \Deleted while the POP3 session
  // runs. Dovecot's SEARCH runs on the session's view before it syncs, and
  // its EXPUNGE then removes every \Deleted message: the gateway syncs
  // (NOOP) before it searches, so it sees the flag and expunges nothing
  // (tests/integration/test_gateway_update.py shows it with Dovecot).
  Session s;
  s.caps = {"IMAP4rev1"};
  for (uint32_t u = 1; u <= 3; ++u) s.AddMessage(u, Msg(u));
  s.Start();
  s.server.msgs[1].unsynced_flags.insert("\\Deleted");
  EXPECT_EQ(s.Client("DELE 1\r\nQUIT\r\n"),
            "+OK Marked to be deleted.\r\n-ERR [SYS/TEMP] Deleted messages not removed: other "
            "messages in the mailbox are flagged \\Deleted.\r\n");
  EXPECT_EQ(s.server.msgs.size(), 3u);
  EXPECT_FALSE(s.server.msgs[0].flags.count("\\Deleted"));
  EXPECT_TRUE(s.server.msgs[1].flags.count("\\Deleted"));
}

TEST(Pop3GatewayTest, WithoutUidplusFailedSyncDeletesNothing) {
  Session s;
  s.caps = {"IMAP4rev1"};
  for (uint32_t u = 1; u <= 2; ++u) s.AddMessage(u, Msg(u));
  s.Start();
  s.server.fail["NOOP"] = "NO Sync failed";
  EXPECT_EQ(s.Client("DELE 1\r\nQUIT\r\n"),
            "+OK Marked to be deleted.\r\n-ERR [SYS/TEMP] Some deleted messages were not "
            "removed.\r\n");
  EXPECT_EQ(s.server.commands.back(), "LOGOUT");
  EXPECT_EQ(s.server.msgs.size(), 2u);
  EXPECT_FALSE(s.server.msgs[0].flags.count("\\Deleted"));
}

TEST(Pop3GatewayTest, StoreFailureIsReported) {
  Session s;
  s.AddMessage(1, Msg(1));
  s.Start();
  s.server.fail["UID EXPUNGE"] = "NO Expunge failed";
  EXPECT_EQ(s.Client("DELE 1\r\nQUIT\r\n"),
            "+OK Marked to be deleted.\r\n-ERR [SYS/TEMP] Some deleted messages were not "
            "removed.\r\n");
}

TEST(Pop3GatewayTest, RsetForgetsMarks) {
  Session s;
  for (uint32_t u = 1; u <= 2; ++u) s.AddMessage(u, Msg(u));
  s.Start();
  s.Client("RETR 1\r\nDELE 1\r\nDELE 2\r\n");
  EXPECT_EQ(s.Client("STAT\r\n"), "+OK 0 0\r\n");
  EXPECT_EQ(s.Client("RSET\r\n"), "+OK\r\n");
  EXPECT_EQ(s.Client("STAT\r\n"), absl::StrCat("+OK 2 ", 2 * Msg(1).size(), "\r\n"));
  EXPECT_EQ(s.Client("QUIT\r\n"), "+OK Logging out.\r\n");
  EXPECT_EQ(s.server.commands.back(), "LOGOUT");
  EXPECT_EQ(s.server.commands.size(), 4u);  // SELECT, FETCH, UID FETCH, LOGOUT
  EXPECT_EQ(s.server.msgs.size(), 2u);
  EXPECT_TRUE(s.server.msgs[0].flags.empty());
}

TEST(Pop3GatewayTest, ClientGoneStoresSeenAndDeletesNothing) {
  Session s;
  for (uint32_t u = 1; u <= 3; ++u) s.AddMessage(u, Msg(u));
  s.Start();
  s.Client("RETR 2\r\nTOP 3 1\r\nDELE 1\r\nDELE 2\r\n");
  s.gw->ClientGone();
  s.Pump();
  EXPECT_EQ(s.server.commands[s.server.commands.size() - 2], "UID STORE 2 +FLAGS.SILENT (\\Seen)");
  EXPECT_EQ(s.server.commands.back(), "LOGOUT");
  EXPECT_EQ(s.server.msgs.size(), 3u);
  for (const auto& m : s.server.msgs) EXPECT_FALSE(m.flags.count("\\Deleted"));
  EXPECT_TRUE(s.server.ByUid(2)->flags.count("\\Seen"));
  EXPECT_FALSE(s.server.ByUid(3)->flags.count("\\Seen"));  // TOP does not mark
  EXPECT_EQ(s.host.finished, "client: gone");
  EXPECT_EQ(s.host.finish_calls, 1);
}

TEST(Pop3GatewayTest, ClientGoneDuringRetrWaitsForIt) {
  Session s;
  s.AddMessage(1, Msg(1));
  s.Start();
  s.in.Append("RETR 1\r\n");
  s.gw->OnClientData(s.in);  // the UID FETCH is sent, not yet answered
  s.gw->ClientGone();
  EXPECT_EQ(s.host.finish_calls, 0);
  s.host.client.clear();
  s.Pump();
  EXPECT_EQ(s.host.client, "");  // nothing more for a client that left
  EXPECT_EQ(s.server.commands.back(), "LOGOUT");
  EXPECT_EQ(s.host.finish_calls, 1);
}

TEST(Pop3GatewayTest, ShutdownWaitsForTheAnswerInProgress) {
  Session s;
  s.AddMessage(1, Msg(1));
  s.AddMessage(2, Msg(2));
  s.Start();
  s.host.client.clear();
  s.in.Append("RETR 1\r\nRETR 2\r\n");
  s.gw->OnClientData(s.in);  // RETR 1 is sent, not yet answered
  s.gw->Shutdown("-ERR Server shutting down.\r\n");
  EXPECT_EQ(s.host.client, "");
  s.Pump();
  // RETR 1 complete, then the notice; RETR 2 is never read.
  EXPECT_TRUE(absl::StartsWith(s.host.client, "+OK "));
  EXPECT_TRUE(absl::EndsWith(s.host.client, "\r\n.\r\n-ERR Server shutting down.\r\n"))
      << s.host.client;
  EXPECT_EQ(s.server.commands.back(), "LOGOUT");
  EXPECT_EQ(s.host.finished, "server shutdown");
  // RETR 1's \Seen is stored (as for a client that left), nothing deleted.
  EXPECT_TRUE(s.server.ByUid(1)->flags.count("\\Seen"));
  EXPECT_FALSE(s.server.ByUid(2)->flags.count("\\Seen"));

  Session idle;
  idle.AddMessage(1, Msg(1));
  idle.Start();
  idle.host.client.clear();
  idle.gw->Shutdown("-ERR Server shutting down.\r\n");
  idle.Pump();
  EXPECT_EQ(idle.host.client, "-ERR Server shutting down.\r\n");
  EXPECT_EQ(idle.host.finish_calls, 1);
}

TEST(Pop3GatewayTest, SeenOptions) {
  {
    Session s;
    s.options.seen = Pop3GatewayOptions::Seen::kImmediate;
    s.AddMessage(1, Msg(1));
    s.Start();
    s.Client("RETR 1\r\nQUIT\r\n");
    EXPECT_EQ(s.server.commands[2], "UID FETCH 1 (BODY[])");
    EXPECT_EQ(s.server.commands[3], "LOGOUT");
    EXPECT_TRUE(s.server.msgs[0].flags.count("\\Seen"));
  }
  {
    Session s;
    s.options.seen = Pop3GatewayOptions::Seen::kNever;
    s.AddMessage(1, Msg(1));
    s.Start();
    s.Client("RETR 1\r\nQUIT\r\n");
    EXPECT_EQ(s.server.commands[2], "UID FETCH 1 (BODY.PEEK[])");
    EXPECT_EQ(s.server.commands[3], "LOGOUT");
    EXPECT_TRUE(s.server.msgs[0].flags.empty());
  }
}

TEST(Pop3GatewayTest, ListingBackpressure) {
  Session s;
  s.options.listing_chunk = 100;
  s.options.max_reply_backlog = 50;
  for (uint32_t u = 1; u <= 100; ++u) s.AddMessage(u, "x\r\n");
  s.Start();
  // The backlog is what the client has not read yet.
  s.host.track_backlog = true;
  s.host.client.clear();
  s.in.Append("LIST\r\nSTAT\r\n");
  s.gw->OnClientData(s.in);
  const std::string first = s.host.client;
  EXPECT_TRUE(absl::StartsWith(first, "+OK 100 messages:\r\n1 3\r\n")) << first;
  EXPECT_LT(first.size(), 200u);
  EXPECT_FALSE(absl::EndsWith(first, ".\r\n"));
  // Nothing more while the client reads nothing, and STAT waits.
  s.gw->OnClientData(s.in);
  EXPECT_EQ(s.host.client, first);
  int steps = 0;
  while (!absl::EndsWith(s.host.client, "+OK 100 300\r\n") && steps < 100) {
    s.host.drained = s.host.client.size();
    s.gw->Resume(s.in);
    ++steps;
  }
  std::string want = "+OK 100 messages:\r\n";
  for (int i = 1; i <= 100; ++i) absl::StrAppend(&want, i, " 3\r\n");
  want += ".\r\n+OK 100 300\r\n";
  EXPECT_EQ(s.host.client, want);
  EXPECT_GE(steps, 4);
  // With room, a listing goes out whole.
  s.host.track_backlog = false;
  EXPECT_EQ(s.Client("UIDL\r\n").size(), 2100u);
}

TEST(Pop3GatewayTest, CommandsWaitWhileBacklogHigh) {
  Session s;
  s.AddMessage(1, Msg(1));
  s.Start();
  s.host.backlog = 10000;
  EXPECT_EQ(s.Client("STAT\r\n"), "");
  s.host.backlog = 0;
  s.host.client.clear();
  s.gw->Resume(s.in);
  EXPECT_EQ(s.host.client, absl::StrCat("+OK 1 ", Msg(1).size(), "\r\n"));
}

TEST(Pop3GatewayTest, HundredThousandMessages) {
  Session s;
  constexpr uint32_t kN = 100000;
  // The FETCH answer is generated directly (the fake server would be slow).
  std::string sizes;
  for (uint32_t i = 1; i <= kN; ++i) {
    absl::StrAppend(&sizes, "* ", i, " FETCH (UID ", i * 2, " RFC822.SIZE ", 1000 + i % 7, ")\r\n");
  }
  s.server.select_untagged = absl::StrCat("* ", kN, " EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n");
  s.server.select_tagged = "OK [READ-WRITE] done\r\n";
  s.server.sizes_untagged = sizes;
  s.piece = 65536;
  s.Start();
  EXPECT_EQ(s.host.client, "+OK Logged in.\r\n");
  EXPECT_EQ(s.gw->counters().messages, kN);
  EXPECT_EQ(Pop3Gateway::kBytesPerMessage, 16u);
  std::string stat = s.Client("STAT\r\n");
  uint64_t total = 0;
  for (uint32_t i = 1; i <= kN; ++i) total += 1000 + i % 7;
  EXPECT_EQ(stat, absl::StrCat("+OK ", kN, " ", total, "\r\n"));
  EXPECT_LE(s.gw->table_bytes(), size_t{kN} * Pop3Gateway::kBytesPerMessage);
  std::string uidl = s.Client("UIDL\r\n");
  EXPECT_TRUE(absl::StartsWith(uidl, "+OK\r\n1 0000000200000007\r\n"));
  EXPECT_TRUE(absl::EndsWith(uidl, absl::StrCat(kN, " 00030d4000000007\r\n.\r\n")));
  // DELE of every other message, QUIT: sets stay bounded per command.
  std::string dele;
  for (uint32_t i = 1; i <= kN; i += 2) absl::StrAppend(&dele, "DELE ", i, "\r\n");
  s.Client(dele);
  s.host.backend.clear();
  s.in.Append("QUIT\r\n");
  s.gw->OnClientData(s.in);
  size_t stores = 0;
  while (!s.host.backend.empty()) {
    std::string cmd = s.host.backend.front();
    s.host.backend.pop_front();
    EXPECT_LT(cmd.size(), 4100u);
    const std::string tag = cmd.substr(0, cmd.find(' '));
    if (absl::StrContains(cmd, "UID STORE")) ++stores;
    s.gw->OnBackendData(absl::StrCat(tag, " OK done\r\n"));
  }
  EXPECT_GT(stores, 10u);
  EXPECT_TRUE(s.gw->finished());
}

TEST(Pop3GatewayTest, SetupFailures) {
  {
    Session s;
    s.server.send_uidvalidity = false;
    s.AddMessage(1, Msg(1));
    s.Start();
    EXPECT_EQ(s.host.client, "-ERR [SYS/PERM] Mailbox has no UIDVALIDITY.\r\n");
    EXPECT_EQ(s.server.commands.back(), "LOGOUT");
    EXPECT_EQ(s.host.finished, "backend: no UIDVALIDITY");
  }
  {
    Session s;
    s.server.fail["SELECT"] = "NO [SERVERBUG] secret\r\n details";
    s.Start();
    EXPECT_EQ(s.host.client, "-ERR [SYS/TEMP] Couldn't open INBOX.\r\n");
  }
  {
    Session s;
    s.options.max_messages = 2;
    for (uint32_t u = 1; u <= 3; ++u) s.AddMessage(u, Msg(u));
    s.Start();
    EXPECT_EQ(s.host.client, "-ERR [SYS/TEMP] Too many messages in the mailbox.\r\n");
  }
  {
    Session s;  // empty mailbox: no FETCH 1:*
    s.Start();
    EXPECT_EQ(s.host.client, "+OK Logged in.\r\n");
    EXPECT_EQ(s.server.commands, std::vector<std::string>{"SELECT INBOX"});
    EXPECT_EQ(s.Client("LIST\r\nUIDL\r\nSTAT\r\n"),
              "+OK 0 messages:\r\n.\r\n+OK\r\n.\r\n+OK 0 0\r\n");
  }
}

TEST(Pop3GatewayTest, BrokenBackend) {
  {
    Session s;
    s.AddMessage(1, Msg(1));
    s.Start();
    s.in.Append("STAT\r\nRETR 1\r\n");
    s.host.client.clear();
    s.gw->OnClientData(s.in);
    s.gw->OnBackendData("* 1 FETCH (UID 1 BODY[] {5}\r\nab");
    s.gw->OnBackendData("cde garbage\r\n");
    // The +OK went out with part of the body; no terminator follows.
    EXPECT_TRUE(absl::StartsWith(s.host.client, "+OK 1 "));
    EXPECT_TRUE(absl::EndsWith(s.host.client, "octets\r\nabcde"));
    EXPECT_EQ(s.host.finished, "backend: malformed response: Invalid FETCH item");
  }
  {
    Session s;
    s.AddMessage(1, Msg(1));
    s.Start();
    s.in.Append("RETR 1\r\n");
    s.host.client.clear();
    s.gw->OnClientData(s.in);
    s.gw->OnBackendData("* BYE Shutting down\r\n");
    EXPECT_EQ(s.host.client, "-ERR [SYS/TEMP] Backend failure, try again later.\r\n");
    EXPECT_EQ(s.host.finished, "backend: BYE Shutting down");
    s.gw->OnBackendData("G3 OK late\r\n");
    EXPECT_EQ(s.host.finish_calls, 1);
  }
  {
    Session s;
    s.AddMessage(1, Msg(1));
    s.Start();
    s.gw->OnBackendData("G99 OK who asked\r\n");
    EXPECT_EQ(s.host.finished, "backend: unexpected tagged response G99");
  }
  {
    Session s;
    s.AddMessage(1, Msg(1));
    s.Start();
    s.in.Append("TOP 1 1\r\n");
    s.gw->OnClientData(s.in);
    s.gw->BackendGone();
    EXPECT_EQ(s.host.client,
              "+OK Logged in.\r\n-ERR [SYS/TEMP] Backend failure, try again later.\r\n");
    EXPECT_EQ(s.host.finished, "backend: connection closed");
  }
}

TEST(Pop3GatewayTest, TopFetchesTheTextInGrowingPieces) {
  Session s;
  s.options.top_chunk = 16;
  std::string body = "Subject: t\r\n\r\n";
  for (int i = 0; i < 20; ++i) absl::StrAppend(&body, "body line ", i, "\r\n");
  s.AddMessage(5, body);
  s.Start();
  const std::string out = s.Client("TOP 1 6\r\n");
  std::string want = "+OK\r\nSubject: t\r\n\r\n";
  for (int i = 0; i < 6; ++i) absl::StrAppend(&want, "body line ", i, "\r\n");
  EXPECT_EQ(out, want + ".\r\n");
  EXPECT_EQ(s.server.commands[2], "UID FETCH 5 (BODY.PEEK[HEADER])");
  EXPECT_EQ(s.server.commands[3], "UID FETCH 5 (BODY.PEEK[TEXT]<0.16>)");
  EXPECT_EQ(s.server.commands[4], "UID FETCH 5 (BODY.PEEK[TEXT]<16.32>)");
  EXPECT_EQ(s.server.commands[5], "UID FETCH 5 (BODY.PEEK[TEXT]<48.64>)");
  EXPECT_EQ(s.server.commands.size(), 6u);
  // TOP n 0 never asks for the text.
  s.Client("TOP 1 0\r\n");
  EXPECT_EQ(s.server.commands.back(), "UID FETCH 5 (BODY.PEEK[HEADER])");
}

TEST(Pop3GatewayTest, QuotedAndNilBodies) {
  Session s;
  s.AddMessage(1, Msg(1));
  s.AddMessage(2, Msg(2));
  s.Start();
  s.in.Append("RETR 1\r\n");
  s.host.client.clear();
  s.gw->OnClientData(s.in);
  s.gw->OnBackendData("* 1 FETCH (BODY[] \".a\\\"b\" UID 1)\r\nG3 OK done\r\n");
  EXPECT_EQ(s.host.client, absl::StrCat("+OK ", Msg(1).size(), " octets\r\n..a\"b\r\n.\r\n"));
  s.in.Append("RETR 2\r\n");
  s.host.client.clear();
  s.gw->OnClientData(s.in);
  s.gw->OnBackendData("* 2 FETCH (UID 2 BODY[] NIL)\r\nG4 OK done\r\n");
  EXPECT_EQ(s.host.client, "-ERR Message 2 expunged.\r\n");
}

TEST(Pop3GatewayTest, UidlFormats) {
  auto fmt = [](absl::string_view f, uint32_t uid, uint32_t v) {
    absl::StatusOr<UidlFormat> u = UidlFormat::Parse(f);
    EXPECT_TRUE(u.ok()) << f << ": " << u.status();
    return u.ok() ? u->Format(uid, v) : "";
  };
  EXPECT_EQ(fmt("%08Xu%08Xv", 1, 0x5F1E2D3C), "000000015f1e2d3c");
  EXPECT_EQ(fmt("%08XUu%08XUv", 1, 0x5F1E2D3C), "000000015F1E2D3C");
  EXPECT_EQ(fmt("%u.%v", 12, 34), "12.34");
  EXPECT_EQ(fmt("%{uid}-%{uidvalidity}", 12, 34), "12-34");
  EXPECT_EQ(fmt("%v-%04u%%", 1, 2), "2-0001%");
  EXPECT_EQ(fmt("%Xu", 255, 1), "ff");
  EXPECT_EQ(fmt("x%3Ru", 1234, 1), "x432");  // truncation without "0"
  for (absl::string_view bad :
       {"%v", "%g", "%m%u", "%f", "%{guid}", "%xu", "%Hu", "%u%", "%{uid", "a b%u", "%0100u", "%2u",
        // offsets and widths that make UIDLs repeat
        "%1.2u", "%-1.u"}) {
    EXPECT_FALSE(UidlFormat::Parse(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace postern
