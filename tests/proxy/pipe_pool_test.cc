// PipePool: pipes are lent, cached up to a bound, and closed beyond it.

#include "proxy/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace postern {
namespace {

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

TEST(PipePoolTest, LendsNonBlockingPipesWithTheAskedCapacity) {
  PipePool pool(256 * 1024, 2);
  Pipe p;
  ASSERT_TRUE(pool.Get(&p));
  ASSERT_TRUE(p.valid());
  EXPECT_TRUE(fcntl(p.r, F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(fcntl(p.w, F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(fcntl(p.r, F_GETFD) & FD_CLOEXEC);
  // The kernel may refuse more than /proc/sys/fs/pipe-max-size; it says what it gave.
  EXPECT_EQ(static_cast<int>(p.capacity), fcntl(p.w, F_GETPIPE_SZ));
  EXPECT_GE(p.capacity, 64u * 1024);
  char buf[4] = {};
  EXPECT_EQ(-1, read(p.r, buf, sizeof(buf)));  // empty, and never blocks
  pool.Put(&p);
  EXPECT_FALSE(p.valid());
}

TEST(PipePoolTest, CachesUpToItsBoundAndClosesTheRest) {
  PipePool pool(64 * 1024, 2);
  Pipe a, b, c;
  ASSERT_TRUE(pool.Get(&a));
  ASSERT_TRUE(pool.Get(&b));
  ASSERT_TRUE(pool.Get(&c));
  int br = b.r;
  int cr = c.r;
  pool.Put(&a);
  pool.Put(&b);
  pool.Put(&c);  // over the bound: closed
  EXPECT_EQ(2u, pool.free_count());
  EXPECT_FALSE(IsOpen(cr));
  Pipe again;
  ASSERT_TRUE(pool.Get(&again));  // from the cache
  EXPECT_EQ(br, again.r);         // the last one given back
  EXPECT_EQ(1u, pool.free_count());
  PipePool::Discard(&again);
  EXPECT_FALSE(again.valid());
}

TEST(PipePoolTest, DiscardClosesBothEnds) {
  PipePool pool;
  Pipe p;
  ASSERT_TRUE(pool.Get(&p));
  int r = p.r, w = p.w;
  ASSERT_EQ(3, write(p.w, "abc", 3));
  PipePool::Discard(&p);
  EXPECT_FALSE(IsOpen(r));
  EXPECT_FALSE(IsOpen(w));
}

}  // namespace
}  // namespace postern
