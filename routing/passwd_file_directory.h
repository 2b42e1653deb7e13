#pragma once

// Directories that answer from Postern itself:
//  - PassthroughDirectory: accepts every login unchecked; the backend
//    decides with the client's own credentials (the default).
//  - PasswdFileDirectory: Dovecot's passwd-file (routing/passwd_file.h).
//    The file is an immutable snapshot shared by all workers through a
//    PasswdFileSource, re-read when it changes or on SIGHUP (a broken file
//    keeps the old snapshot and the log says why, with its line). Slow
//    hashes (crypt, argon2) are checked on the libuv thread pool, never on
//    a worker loop.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <uv.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "routing/directory.h"
#include "routing/passwd_file.h"
#include "routing/router.h"

namespace postern {

class PassthroughDirectory final : public Directory {
 public:
  explicit PassthroughDirectory(Poster post) : post_(std::move(post)) {}
  std::unique_ptr<Lookup> Start(const DirectoryRequest& request, Done done) override;
  bool ChecksSecrets() const override { return false; }
  std::string Name() const override { return "passthrough"; }

 private:
  Poster post_;
};

// The current snapshot of one passwd-file, shared by the workers.
// Thread-safe.
class PasswdFileSource {
 public:
  // Loads the file now: an error (file, line, key) refuses the start.
  static absl::StatusOr<std::shared_ptr<PasswdFileSource>> Open(std::string name, std::string path,
                                                                PasswdFileOptions options);

  std::shared_ptr<const PasswdFile> Current() const;
  // Reads the file again; on error keeps the current snapshot and returns
  // the error (naming the file and line). Blocking: call it off the
  // workers' loops (the server runs it on the thread pool).
  absl::Status Reload();
  // The file's modification time and size changed since the last load.
  bool Changed() const;

  const std::string& name() const { return name_; }
  const std::string& path() const { return path_; }
  // Bumped by every successful load (the answer cache keys on it, so a
  // reloaded file is never answered from the cache).
  uint64_t generation() const { return generation_.load(); }

 private:
  PasswdFileSource(std::string name, std::string path, PasswdFileOptions options)
      : name_(std::move(name)), path_(std::move(path)), options_(std::move(options)) {}

  const std::string name_;
  const std::string path_;
  const PasswdFileOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<const PasswdFile> current_;
  int64_t mtime_ns_ = 0;
  int64_t size_ = -1;
  std::atomic<uint64_t> generation_{0};
};

class PasswdFileDirectory final : public Directory {
 public:
  // `loop`: the worker's loop (the thread pool reports back to it).
  // `timeout`: how long a slow hash may wait and run on the thread pool
  // before the lookup is answered kUnavailable (directories[].timeout).
  PasswdFileDirectory(std::shared_ptr<PasswdFileSource> source, uv_loop_t* loop, Poster post,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(5'000));
  std::unique_ptr<Lookup> Start(const DirectoryRequest& request, Done done) override;
  bool ChecksSecrets() const override { return true; }
  std::string Name() const override { return "passwd-file:" + source_->name(); }
  uint64_t Generation() const override { return source_->generation(); }

  // The answer for `entry` once its password matched (or did not), for a
  // login over `protocol` ("imap" | "pop3": the code of a nologin reason).
  // The entry whose hash an unknown user's password is checked against
  // (timing), or null.
  static const PasswdEntry* Decoy(const PasswdFile& file);
  static DirectoryAnswer Answer(const PasswdEntry& entry, bool matched, absl::string_view protocol);

 private:
  std::shared_ptr<PasswdFileSource> source_;
  uv_loop_t* loop_;
  Poster post_;
  std::chrono::milliseconds timeout_;
};

}  // namespace postern
