// A differential fuzzer for Buffer and BufferPool against std::string (after
// Envoy's test/common/buffer/buffer_fuzz.cc). Two buffers and three pools of
// tiny slabs; the input is a program of operations, each applied to a
// buffer and to its reference string.
// Input: [slab size of each pool: 3][max free of each pool: 3] then
// operations: [op][target] and the operands each op reads.
//
// After every operation: contents and sizes equal the references; the
// readable runs (Peek, ForEachSlice, Front) are non-empty and cover the
// contents in order; and the pools' in_use() equals the number of slabs the
// buffers hold, i.e. no buffer keeps an empty slab. At the end, with the
// buffers gone, every pool's in_use() is 0.

#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "protocol/buffer.h"
#include "tests/fuzz/fuzz_util.h"

namespace postern::fuzz {
namespace {

constexpr size_t kPools = 3;
constexpr size_t kBuffers = 2;
constexpr size_t kMaxOps = 1024;
constexpr size_t kMaxSize = 1 << 14;  // keeps one run's work bounded

// Readable runs of `b`, checked against its reference; returns how many.
size_t CheckSlices(const Buffer& b, const std::string& ref) {
  size_t count = 0;
  size_t offset = 0;
  b.ForEachSlice([&](absl::string_view s) {
    POSTERN_FUZZ_CHECK(!s.empty());
    POSTERN_FUZZ_CHECK(absl::string_view(ref).substr(offset, s.size()) == s);
    offset += s.size();
    ++count;
  });
  POSTERN_FUZZ_CHECK(offset == ref.size());
  const absl::string_view front = b.Front();
  POSTERN_FUZZ_CHECK(front.empty() == ref.empty());
  POSTERN_FUZZ_CHECK(absl::string_view(ref).substr(0, front.size()) == front);
  return count;
}

void Check(const std::array<std::unique_ptr<Buffer>, kBuffers>& bufs,
           const std::array<std::string, kBuffers>& refs,
           const std::array<std::unique_ptr<BufferPool>, kPools>& pools) {
  size_t slabs = 0;
  for (size_t i = 0; i < kBuffers; ++i) {
    POSTERN_FUZZ_CHECK(bufs[i]->size() == refs[i].size());
    POSTERN_FUZZ_CHECK(bufs[i]->empty() == refs[i].empty());
    slabs += CheckSlices(*bufs[i], refs[i]);
  }
  size_t in_use = 0;
  for (const auto& pool : pools) in_use += pool->in_use();
  POSTERN_FUZZ_CHECK(in_use == slabs);
}

void Run(const uint8_t* bytes, size_t size) {
  FuzzInput in(bytes, size);
  std::array<size_t, kPools> slab_sizes;
  for (size_t& slab_size : slab_sizes) {
    // Mostly 1..64 bytes, so that every operation crosses slab boundaries.
    const uint8_t choice = in.Byte();
    slab_size = choice < 240 ? 1 + choice % 64 : size_t{1} << (choice % 8 + 7);
  }
  std::array<std::unique_ptr<BufferPool>, kPools> pools;
  for (size_t i = 0; i < kPools; ++i) {
    pools[i] = std::make_unique<BufferPool>(slab_sizes[i], /*max_free=*/in.Byte() % 5);
  }
  {
    std::array<std::unique_ptr<Buffer>, kBuffers> bufs;
    std::array<std::string, kBuffers> refs;
    for (size_t i = 0; i < kBuffers; ++i) bufs[i] = std::make_unique<Buffer>(*pools[i]);
    std::string scratch;
    for (size_t op_count = 0; !in.empty() && op_count < kMaxOps; ++op_count) {
      const uint8_t op = in.Byte();
      const size_t t = in.Byte() % kBuffers;  // the target buffer
      Buffer& b = *bufs[t];
      std::string& ref = refs[t];
      Buffer& other = *bufs[1 - t];
      std::string& other_ref = refs[1 - t];
      switch (op % 16) {
        case 0: {  // Append
          const absl::string_view data = in.Bytes(in.Byte());
          if (ref.size() + data.size() > kMaxSize) break;
          b.Append(data);
          ref.append(data.data(), data.size());
          break;
        }
        case 1: {  // Reserve + Commit of part of the span (0 too)
          if (ref.size() > kMaxSize) break;
          const absl::Span<char> span = b.Reserve();
          POSTERN_FUZZ_CHECK(!span.empty());
          const size_t n = in.Range(0, 300) % (span.size() + 1);
          for (size_t i = 0; i < n; ++i) span[i] = static_cast<char>('a' + (ref.size() + i) % 26);
          ref.append(span.data(), n);
          b.Commit(n);
          break;
        }
        case 2: {  // Drain
          const size_t n = in.Range(0, 1000) % (ref.size() + 1);
          b.Drain(n);
          ref.erase(0, n);
          break;
        }
        case 3:  // MoveFrom the other buffer
          if (ref.size() + other_ref.size() > kMaxSize) break;
          b.MoveFrom(other);
          ref += other_ref;
          other_ref.clear();
          POSTERN_FUZZ_CHECK(other.empty());
          break;
        case 4:  // MoveFrom itself: nothing happens
          b.MoveFrom(b);
          break;
        case 5:  // Clear
          b.Clear();
          ref.clear();
          break;
        case 6: {  // Peek into at most `max` iovecs
          const size_t max = in.Byte() % 9;
          std::array<struct iovec, 8> iov{};
          const size_t n = b.Peek(iov.data(), max);
          POSTERN_FUZZ_CHECK(n <= max);
          POSTERN_FUZZ_CHECK((n == 0) == (ref.empty() || max == 0));
          size_t offset = 0;
          for (size_t i = 0; i < n; ++i) {
            const absl::string_view s(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
            POSTERN_FUZZ_CHECK(!s.empty());
            POSTERN_FUZZ_CHECK(absl::string_view(ref).substr(offset, s.size()) == s);
            offset += s.size();
          }
          break;
        }
        case 7: {  // Find
          const char c = static_cast<char>(in.Byte());
          const size_t offset = in.Range(0, 1100);
          const size_t want = offset > ref.size() ? std::string::npos : ref.find(c, offset);
          const size_t got = b.Find(c, offset);
          POSTERN_FUZZ_CHECK(got == (want == std::string::npos ? Buffer::npos : want));
          break;
        }
        case 8: {  // CopyOut
          const size_t offset = in.Range(0, 1100) % (ref.size() + 1);
          const size_t n = in.Range(0, 1100) % (ref.size() - offset + 1);
          scratch.assign(n, '\0');
          b.CopyOut(offset, n, scratch.data());
          POSTERN_FUZZ_CHECK(scratch == ref.substr(offset, n));
          break;
        }
        case 9:  // ToString
          POSTERN_FUZZ_CHECK(b.ToString() == ref);
          break;
        case 10: {  // set_pool: later reservations come from another pool
          BufferPool& pool = *pools[in.Byte() % kPools];
          b.set_pool(pool);
          POSTERN_FUZZ_CHECK(&b.pool() == &pool);
          break;
        }
        case 11: {  // move assignment from the other buffer (which is left empty)
          BufferPool& other_pool = other.pool();
          b = std::move(other);
          ref = std::move(other_ref);
          other_ref.clear();
          POSTERN_FUZZ_CHECK(&b.pool() == &other_pool);
          POSTERN_FUZZ_CHECK(other.empty());
          break;
        }
        case 12: {  // move construction, then back
          Buffer moved(std::move(b));
          POSTERN_FUZZ_CHECK(b.empty());
          POSTERN_FUZZ_CHECK(moved.size() == ref.size());
          bufs[t] = std::make_unique<Buffer>(std::move(moved));
          break;
        }
        case 13:  // the pool trims its cache
          pools[in.Byte() % kPools]->Trim(in.Byte() % 3);
          break;
        case 14: {  // a read-like pattern: Reserve, Commit everything, again and again
          const size_t rounds = in.Byte() % 4;
          for (size_t r = 0; r < rounds && ref.size() <= kMaxSize; ++r) {
            const absl::Span<char> span = b.Reserve();
            const size_t n = std::min<size_t>(span.size(), 512);
            for (size_t i = 0; i < n; ++i) span[i] = static_cast<char>(r + i);
            ref.append(span.data(), n);
            b.Commit(n);
          }
          break;
        }
        case 15: {  // Drain exactly up to a Find hit (how lines are consumed)
          const size_t hit = b.Find(static_cast<char>(in.Byte()));
          if (hit != Buffer::npos) {
            b.Drain(hit + 1);
            ref.erase(0, hit + 1);
          }
          break;
        }
      }
      Check(bufs, refs, pools);
    }
  }
  for (const auto& pool : pools) POSTERN_FUZZ_CHECK(pool->in_use() == 0);
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  postern::fuzz::Run(data, size);
  return 0;
}
