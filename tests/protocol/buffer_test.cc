#include "protocol/buffer.h"

#include <sys/uio.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Slices(const Buffer& b) {
  std::vector<std::string> out;
  b.ForEachSlice([&](absl::string_view v) { out.emplace_back(v); });
  return out;
}

size_t SliceCount(const Buffer& b) {
  size_t n = 0;
  b.ForEachSlice([&](absl::string_view) { ++n; });
  return n;
}

TEST(BufferTest, AppendSpansSlabs) {
  BufferPool pool(4);
  Buffer b(pool);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.Front(), "");
  b.Append("abcdefghij");
  EXPECT_EQ(b.size(), 10u);
  EXPECT_EQ(pool.in_use(), 3u);
  EXPECT_THAT(Slices(b), ElementsAre("abcd", "efgh", "ij"));
  EXPECT_EQ(b.Front(), "abcd");
  EXPECT_EQ(b.ToString(), "abcdefghij");
  b.Append("kl");  // fills the last slab
  EXPECT_EQ(pool.in_use(), 3u);
  b.Append("m");
  EXPECT_EQ(pool.in_use(), 4u);
  EXPECT_THAT(Slices(b), ElementsAre("abcd", "efgh", "ijkl", "m"));
}

TEST(BufferTest, PeekFillsIovecsInOrder) {
  BufferPool pool(4);
  Buffer b(pool);
  b.Append("abcdefghij");
  iovec iov[2];
  ASSERT_EQ(b.Peek(iov, 2), 2u);
  EXPECT_EQ(absl::string_view(static_cast<char*>(iov[0].iov_base), iov[0].iov_len), "abcd");
  EXPECT_EQ(absl::string_view(static_cast<char*>(iov[1].iov_base), iov[1].iov_len), "efgh");
  iovec all[8];
  EXPECT_EQ(b.Peek(all, 8), 3u);
}

TEST(BufferTest, ReserveCommit) {
  BufferPool pool(8);
  Buffer b(pool);
  absl::Span<char> span = b.Reserve();
  ASSERT_EQ(span.size(), 8u);
  std::memcpy(span.data(), "abc", 3);
  b.Commit(3);
  EXPECT_EQ(b.ToString(), "abc");
  span = b.Reserve();  // the rest of the same slab
  ASSERT_EQ(span.size(), 5u);
  std::memcpy(span.data(), "defgh", 5);
  b.Commit(5);
  EXPECT_EQ(pool.in_use(), 1u);
  span = b.Reserve();  // a full slab: a fresh one
  EXPECT_EQ(span.size(), 8u);
  EXPECT_EQ(pool.in_use(), 2u);
  b.Commit(0);  // nothing read: the fresh slab goes straight back
  EXPECT_EQ(pool.in_use(), 1u);
  EXPECT_EQ(b.ToString(), "abcdefgh");
  EXPECT_THAT(Slices(b), ElementsAre("abcdefgh"));
}

TEST(BufferTest, CommitZeroOnEmptyBufferReleases) {
  BufferPool pool(8);
  Buffer b(pool);
  b.Reserve();
  EXPECT_EQ(pool.in_use(), 1u);
  b.Commit(0);
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.Front(), "");
  // And the buffer still works afterwards.
  b.Append("x");
  EXPECT_EQ(b.ToString(), "x");
}

TEST(BufferTest, DrainReturnsSlabs) {
  BufferPool pool(4);
  Buffer b(pool);
  b.Append("abcdefghij");
  b.Drain(2);
  EXPECT_EQ(b.Front(), "cd");
  EXPECT_EQ(pool.in_use(), 3u);
  b.Drain(2);  // exactly at a slab boundary
  EXPECT_EQ(pool.in_use(), 2u);
  EXPECT_EQ(b.Front(), "efgh");
  b.Drain(5);  // across a boundary
  EXPECT_EQ(pool.in_use(), 1u);
  EXPECT_EQ(b.ToString(), "j");
  b.Drain(0);
  EXPECT_EQ(b.size(), 1u);
  b.Drain(1);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.free_count(), 3u);
}

TEST(BufferTest, PoolKeepsAtMostMaxFree) {
  BufferPool pool(4, 2);
  {
    Buffer b(pool);
    b.Append("abcdefghijklmnop");  // 4 slabs
    EXPECT_EQ(pool.in_use(), 4u);
  }
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.free_count(), 2u);
  Buffer b(pool);
  b.Append("abcdefgh");  // reuses the two kept slabs
  EXPECT_EQ(pool.free_count(), 0u);
  EXPECT_EQ(pool.in_use(), 2u);
}

TEST(BufferTest, MoveFromTakesSlabsWithoutCopying) {
  BufferPool pool(4);
  Buffer a(pool);
  Buffer b(pool);
  a.Append("ab");
  b.Append("cdefgh");
  const char* b_front = b.Front().data();
  a.MoveFrom(b);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.Front(), "");
  EXPECT_EQ(a.size(), 8u);
  EXPECT_EQ(a.ToString(), "abcdefgh");
  EXPECT_THAT(Slices(a), ElementsAre("ab", "cdef", "gh"));
  // The moved slab is the very same memory.
  std::vector<const char*> starts;
  a.ForEachSlice([&](absl::string_view v) { starts.push_back(v.data()); });
  EXPECT_EQ(starts[1], b_front);
  EXPECT_EQ(pool.in_use(), 3u);
  // Appending goes into the (moved) last slab, which has room.
  a.Append("ij");
  EXPECT_THAT(Slices(a), ElementsAre("ab", "cdef", "ghij"));
  // Into an empty buffer, and from an empty one.
  Buffer c(pool);
  c.MoveFrom(a);
  EXPECT_EQ(c.ToString(), "abcdefghij");
  c.MoveFrom(b);
  EXPECT_EQ(c.size(), 10u);
  c.Clear();
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(BufferTest, MoveConstructAndAssign) {
  BufferPool pool(4);
  Buffer a(pool);
  a.Append("abcdef");
  Buffer b(std::move(a));
  EXPECT_EQ(b.ToString(), "abcdef");
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  Buffer c(pool);
  c.Append("zz");
  c = std::move(b);
  EXPECT_EQ(c.ToString(), "abcdef");
  EXPECT_EQ(pool.in_use(), 2u);  // c's old slab went back
}

TEST(BufferTest, FindAcrossSlabs) {
  BufferPool pool(4);
  Buffer b(pool);
  b.Append("ab\ncdefg\nh");
  b.Drain(1);  // "b\ncd" "efg\n" "h" with a partly drained head
  EXPECT_EQ(b.Find('\n'), 1u);
  EXPECT_EQ(b.Find('\n', 1), 1u);
  EXPECT_EQ(b.Find('\n', 2), 7u);
  EXPECT_EQ(b.Find('h', 3), 8u);
  EXPECT_EQ(b.Find('b'), 0u);
  EXPECT_EQ(b.Find('b', 1), Buffer::npos);
  EXPECT_EQ(b.Find('z'), Buffer::npos);
  EXPECT_EQ(b.Find('h', 9), Buffer::npos);
  EXPECT_EQ(b.Find('h', 100), Buffer::npos);
  Buffer empty(pool);
  EXPECT_EQ(empty.Find('a'), Buffer::npos);
}

TEST(BufferTest, CopyOutAcrossSlabs) {
  BufferPool pool(4);
  Buffer b(pool);
  b.Append("0123456789");
  b.Drain(1);
  char out[16] = {};
  b.CopyOut(2, 6, out);
  EXPECT_EQ(absl::string_view(out, 6), "345678");
  b.CopyOut(0, 9, out);
  EXPECT_EQ(absl::string_view(out, 9), "123456789");
  b.CopyOut(9, 0, out);
}

// Random operations on two buffers, mirrored on two std::strings: contents,
// sizes, Find and CopyOut must always agree, and the pool must hold exactly
// the slabs the buffers show (no empty slab is ever kept).
TEST(BufferTest, DifferentialAgainstString) {
  for (size_t slab : {1, 3, 16, 4096}) {
    std::mt19937 rng(static_cast<uint32_t>(slab));
    BufferPool pool(slab, 4);
    Buffer bufs[2] = {Buffer(pool), Buffer(pool)};
    std::string refs[2];
    auto rnd = [&](size_t lo, size_t hi) {
      return std::uniform_int_distribution<size_t>(lo, hi)(rng);
    };
    for (int step = 0; step < 20000; ++step) {
      const size_t i = rnd(0, 1);
      Buffer& b = bufs[i];
      std::string& r = refs[i];
      switch (rnd(0, 7)) {
        case 0: {  // Append
          std::string s(rnd(0, 40), '\0');
          for (char& c : s) c = static_cast<char>('a' + rnd(0, 5));
          b.Append(s);
          r += s;
          break;
        }
        case 1: {  // Reserve + partial Commit
          absl::Span<char> span = b.Reserve();
          ASSERT_GT(span.size(), 0u);
          const size_t n = rnd(0, span.size());
          for (size_t k = 0; k < n; ++k) span[k] = static_cast<char>('a' + rnd(0, 5));
          r.append(span.data(), n);
          b.Commit(n);
          break;
        }
        case 2: {  // Drain
          const size_t n = rnd(0, r.size());
          b.Drain(n);
          r.erase(0, n);
          break;
        }
        case 3: {  // MoveFrom the other buffer
          b.MoveFrom(bufs[1 - i]);
          r += refs[1 - i];
          refs[1 - i].clear();
          break;
        }
        case 4: {  // Find
          const char c = static_cast<char>('a' + rnd(0, 6));
          const size_t off = rnd(0, r.size() + 2);
          const size_t want = off >= r.size() ? std::string::npos : r.find(c, off);
          ASSERT_EQ(b.Find(c, off), want == std::string::npos ? Buffer::npos : want);
          break;
        }
        case 5: {  // CopyOut
          const size_t off = rnd(0, r.size());
          const size_t n = rnd(0, r.size() - off);
          std::string out(n, '\0');
          b.CopyOut(off, n, out.data());
          ASSERT_EQ(out, r.substr(off, n));
          break;
        }
        case 6: {  // Front is the first slice
          if (r.empty()) {
            ASSERT_EQ(b.Front(), "");
          } else {
            ASSERT_FALSE(b.Front().empty());
            ASSERT_EQ(b.Front(), r.substr(0, b.Front().size()));
          }
          break;
        }
        case 7:
          if (rnd(0, 20) == 0) {
            b.Clear();
            r.clear();
          }
          break;
      }
      ASSERT_EQ(b.size(), r.size());
      ASSERT_EQ(b.empty(), r.empty());
      ASSERT_EQ(pool.in_use(), SliceCount(bufs[0]) + SliceCount(bufs[1]))
          << "slab " << slab << " step " << step;
      if (step % 64 == 0) {
        ASSERT_EQ(bufs[0].ToString(), refs[0]);
        ASSERT_EQ(bufs[1].ToString(), refs[1]);
      }
    }
    bufs[0].Clear();
    bufs[1].Clear();
    EXPECT_EQ(pool.in_use(), 0u);
  }
}

}  // namespace
}  // namespace postern
