// libFuzzer target: ImapResponseStream must give the same events (and the
// same error) whether the input comes whole or one byte at a time, and never
// crash or read out of bounds.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "protocol/imap_response_stream.h"

namespace {

using postern::ImapBodySection;
using postern::ImapResponseStream;
using postern::ImapStatusResponse;

class Recorder : public postern::ImapResponseHandler {
 public:
  std::vector<std::string> events;
  void OnTagged(const ImapStatusResponse& r) override {
    events.push_back(absl::StrCat("T", r.tag, "|", r.code, "|", r.text));
  }
  void OnUntaggedStatus(const ImapStatusResponse& r) override {
    events.push_back(absl::StrCat("U", postern::ImapStatusName(r.status), "|", r.code, "|",
                                  r.code_number.value_or(0), "|", r.text));
  }
  void OnContinuation(absl::string_view t) override { events.push_back(absl::StrCat("+", t)); }
  void OnNumeric(absl::string_view k, uint32_t n) override {
    events.push_back(absl::StrCat("N", k, n));
  }
  void OnCapability(absl::string_view c) override { events.push_back(absl::StrCat("C", c)); }
  void OnEnabled(absl::string_view c) override { events.push_back(absl::StrCat("E", c)); }
  void OnFlags(absl::string_view f) override { events.push_back(absl::StrCat("F", f)); }
  void OnSearchNumber(uint32_t n) override { events.push_back(absl::StrCat("S", n)); }
  void OnSearchEnd() override { events.push_back("S."); }
  void OnOtherUntagged(absl::string_view k) override { events.push_back(absl::StrCat("O", k)); }
  void OnFetchStart(uint32_t seq) override { events.push_back(absl::StrCat("f", seq)); }
  void OnFetchUid(uint32_t uid) override { events.push_back(absl::StrCat("u", uid)); }
  void OnFetchSize(uint64_t s) override { events.push_back(absl::StrCat("z", s)); }
  void OnFetchFlags(absl::string_view f) override { events.push_back(absl::StrCat("l", f)); }
  void OnFetchInternalDate(absl::string_view d) override { events.push_back(absl::StrCat("d", d)); }
  void OnBodyStart(const ImapBodySection& s) override {
    events.push_back(absl::StrCat("b", s.item, "[", s.section, "]", s.origin.value_or(0), "/",
                                  s.size, s.nil, s.literal));
    body_.clear();
    body_size_ = s.size;
    in_body_ = true;
  }
  void OnBodyData(absl::string_view d) override {
    if (!in_body_ || d.empty()) abort();
    body_.append(d.data(), d.size());
    if (body_.size() > body_size_) abort();  // never more than announced
  }
  void OnBodyEnd() override {
    if (!in_body_ || body_.size() != body_size_) abort();
    in_body_ = false;
    events.push_back(absl::StrCat("B", body_));
  }
  void OnFetchOther(absl::string_view i) override { events.push_back(absl::StrCat("o", i)); }
  void OnFetchEnd() override { events.push_back("f."); }

 private:
  std::string body_;
  uint64_t body_size_ = 0;
  bool in_body_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view in(reinterpret_cast<const char*>(data), size);
  postern::ImapResponseLimits limits;
  limits.max_line = 4096;
  limits.max_depth = 16;
  limits.max_literal = 1 << 20;

  Recorder whole;
  ImapResponseStream a(whole, limits);
  const absl::Status sa = a.Feed(in);

  Recorder bytes;
  ImapResponseStream b(bytes, limits);
  absl::Status sb;
  for (size_t i = 0; i < in.size() && sb.ok(); ++i) sb = b.Feed(in.substr(i, 1));

  if (sa.ok() != sb.ok() || sa.message() != sb.message()) abort();
  if (whole.events != bytes.events) abort();
  if (a.at_response_start() != b.at_response_start()) abort();
  return 0;
}
