#pragma once

// One client session: the pre-login dialogue (ImapSession / Pop3Session),
// the backend login, then the relay. The relay runs no protocol code: bytes
// read from one side move (slab by slab, no copy) to the other side's writer,
// with watermarks for backpressure (ARCHITECTURE.md, "The way one session
// travels").

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "protocol/line_splitter.h"
#include "proxy/backend_login.h"
#include "proxy/config.h"
#include "proxy/connection.h"
#include "proxy/pipe_pool.h"
#include "proxy/uv_handle.h"

namespace postern {

class Worker;

class Session : public ConnectionHandler {
 public:
  static std::unique_ptr<Session> Create(Worker& worker, const ListenerConfig& listener,
                                         ConnectionPtr client);

  // The client's address as accept(2) gave it ("ip:port"), before Start()
  // (otherwise Start() asks the socket).
  void set_client_address(std::string a) { client_address_ = std::move(a); }
  // Greets the client and starts reading.
  void Start();
  // The server is going down: tell the client and end.
  void Shutdown();
  // Ends the session when its login or idle timeout has passed.
  void CheckTimeout(uint64_t now_ms);

  // ConnectionHandler
  void OnData(Connection& c) override;
  void OnDrained(Connection& c) override;
  void OnEnd(Connection& c, absl::string_view reason) override;
  // Raw mode: the plaintext relay splices (see StartRelay).
  void OnReadable(Connection& c) override;
  void OnWritable(Connection& c) override;

 protected:
  enum class State { kPreLogin, kAuthenticating, kRelay, kEnded };
  enum class SaslMech { kNone, kPlain, kLogin };

  Session(Worker& worker, const ListenerConfig& listener, ConnectionPtr client);

  // --- the protocol front (pre-login) ---
  virtual std::string Greeting() = 0;
  // Parses and handles what the client sent; false when it needs more bytes
  // (or must stop: state changed, session ended).
  virtual bool ProcessCommand() = 0;
  virtual void ReplyLoginOk(const LoginOutcome& o) = 0;
  virtual void ReplyLoginFailed(const LoginOutcome& o) = 0;
  virtual void ReplyUnavailable() = 0;
  virtual void ReplyAuthCanceled() = 0;
  virtual void ReplyAuthBad(absl::string_view why) = 0;
  virtual void ReplyTooManyFailures() = 0;
  virtual std::string TimeoutNotice() = 0;
  virtual std::string ShutdownNotice() = 0;
  virtual std::string LoginIdArgs() { return ""; }
  // The relay starts: free what only the pre-login dialogue needed.
  virtual void ReleaseFront() {}

  // LOGIN/USER/AUTH allowed now: over TLS, or the listener allows plaintext.
  bool AuthAllowed() const;
  bool CanStartTls() const;
  // Answers "OK/+OK begin TLS" (already written by the caller), then drops
  // every byte the client sent after the command (RFC 2595 section 3.1:
  // never act on bytes pipelined before the handshake, CVE-2011-0411) and
  // switches the client connection to TLS.
  void StartTls();

  // PLAIN or LOGIN (any case), else kNone.
  static SaslMech ParseSaslMech(absl::string_view name);
  // Starts a SASL exchange (IMAP AUTHENTICATE, POP3 AUTH). `ir` is the
  // initial response when `has_ir` ("=" stands for an empty one,
  // RFC 4959 section 3 / RFC 5034 section 4).
  void StartSasl(SaslMech mech, bool has_ir, absl::string_view ir);
  // Pass-through login with these credentials.
  void BeginLogin(std::string user, std::string password, std::string authzid = "");

  void Send(absl::string_view text) { client_->Write(text); }
  // Counts a protocol error; false (and the session ended) when the budget is spent.
  bool SpendError();
  void End(absl::string_view reason);
  bool ended() const { return state_ == State::kEnded; }

  Buffer& input() { return client_->input(); }
  const std::string& client_address() const { return client_address_; }  // "ip:port", "[v6]:port"
  absl::string_view client_ip() const;                                   // without brackets
  absl::string_view client_port() const;                                 // "" when unknown

  Worker& worker_;
  const ListenerConfig& listener_;
  std::shared_ptr<const Config> config_;  // the snapshot this session started with
  State state_ = State::kPreLogin;
  std::string user_;

 private:
  void ProcessInput();
  bool ProcessSaslLine();
  void OnRouted(size_t backend);
  void OnLoginDone(LoginOutcome outcome, ConnectionPtr backend);
  void StartRelay();
  void RelayFrom(Connection& from, Connection& to);
  // One direction of a spliced relay: the pipe lent while bytes are in it.
  struct SpliceDir {
    Pipe pipe;
    size_t pending = 0;  // bytes in the pipe, not yet taken by the receiver
  };
  struct Splice {
    SpliceDir up;    // client -> backend
    SpliceDir down;  // backend -> client
  };
  // Empties the pipe into the receiver: true when it is empty (the caller
  // gives it back), false when the receiver is full (the pipe keeps the
  // rest) or broken (the session may have ended then).
  bool SpliceOut(Connection& from, Connection& to, SpliceDir& d);
  // Moves what a pipe still holds into the receiver's write queue.
  void Spill(SpliceDir& d, Connection& to);
  // Both directions, and the relay leaves raw mode (buffered from here on).
  void SpillAll();
  void ArmTimer();
  void LogEnd(absl::string_view reason);
  const std::string& backend_name() const;

  ConnectionPtr client_;
  ConnectionPtr backend_;
  std::unique_ptr<BackendLogin> login_;
  // When the current timeout (login or idle) expires, in loop time; 0: none.
  // The worker checks every session once a second: one timer per worker
  // instead of one per session (memory), and no timer-heap update per read.
  uint64_t deadline_ms_ = 0;
  // Set exactly while a SASL exchange waits for the client's response lines.
  struct SaslState {
    SaslState(SaslMech m, size_t max_line) : mech(m), lines(max_line) {}
    SaslMech mech;
    LineSplitter lines;
    std::string user;  // LOGIN mechanism: the user name, waiting for the password
  };
  std::unique_ptr<SaslState> sasl_;
  // Both sides plaintext: the relay moves bytes with splice(2).
  std::unique_ptr<Splice> splice_;
  uint32_t errors_ = 0;
  uint32_t auth_failures_ = 0;
  std::string client_address_;
  const std::string* backend_name_ = nullptr;  // in config_
  std::chrono::steady_clock::time_point started_;
  uint64_t generation_ = 0;  // invalidates callbacks of an abandoned login
};

}  // namespace postern
