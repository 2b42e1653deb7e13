#pragma once

// Buffers as chains of fixed-size slabs taken from a per-worker pool.
//
// A Buffer never holds an empty slab: as soon as its bytes are drained (or a
// reservation is committed with nothing in it) the slab goes back to the
// pool, so an idle session holds no buffer memory at all. Slabs move between
// buffers without copying (MoveFrom), which is how the relay hands bytes read
// from one side to the writer of the other.
//
// Not thread-safe: a pool and its buffers belong to one worker loop.

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace postern {

class BufferPool;

// One block of bytes. [begin, end) is readable; [end, capacity) is writable.
struct Slab {
  Slab* next = nullptr;         // the next slab of a Buffer, or of the pool's free list
  BufferPool* owner = nullptr;  // where it goes back when drained
  uint32_t begin = 0;
  uint32_t end = 0;
  uint32_t capacity = 0;
  char* data() { return reinterpret_cast<char*>(this + 1); }
  const char* data() const { return reinterpret_cast<const char*>(this + 1); }
  size_t readable() const { return end - begin; }
  size_t writable() const { return capacity - end; }
};

class BufferPool {
 public:
  static constexpr size_t kDefaultSlabSize = 16 * 1024;

  // `slab_size` bytes of payload per slab; at most `max_free` slabs are kept
  // for reuse, the rest are freed.
  explicit BufferPool(size_t slab_size = kDefaultSlabSize, size_t max_free = 64);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  size_t slab_size() const { return slab_size_; }
  size_t in_use() const { return in_use_; }  // slabs held by buffers
  size_t free_count() const { return free_count_; }

  Slab* Acquire();
  void Release(Slab* slab);
  // Frees cached free slabs until at most `keep` remain (the worker trims
  // the cache when load drops, so a burst does not pin memory).
  void Trim(size_t keep);

 private:
  size_t slab_size_;
  size_t max_free_;
  size_t in_use_ = 0;
  size_t free_count_ = 0;
  Slab* free_ = nullptr;
};

class Buffer {
 public:
  explicit Buffer(BufferPool& pool) : pool_(&pool) {}
  ~Buffer() { Clear(); }
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  BufferPool& pool() const { return *pool_; }
  // Where future reservations come from (the relay reads into large slabs,
  // the pre-login dialogue into small ones). Slabs already held keep theirs.
  void set_pool(BufferPool& pool) { pool_ = &pool; }

  // Writable space at the tail: the rest of the last slab, or a fresh slab
  // when the last one is full (never empty). Follow with Commit(n), n <= the
  // span's size; Commit(0) on an empty buffer gives the slab back.
  absl::Span<char> Reserve();
  void Commit(size_t n);

  // Copies bytes in at the tail (for small writes: protocol lines).
  void Append(absl::string_view bytes);

  // The first contiguous readable run (empty view when the buffer is empty).
  absl::string_view Front() const;
  // Fills up to `max` iovecs with the readable runs, in order; returns how
  // many were filled.
  size_t Peek(struct iovec* iov, size_t max) const;
  // Calls f(absl::string_view) for each readable run in order.
  template <typename F>
  void ForEachSlice(F&& f) const {
    for (const Slab* s = head_; s != nullptr; s = s->next) {
      if (s->readable() > 0) f(absl::string_view(s->data() + s->begin, s->readable()));
    }
  }

  // Removes n <= size() bytes from the front; emptied slabs go back to the pool.
  void Drain(size_t n);
  // Moves every byte of `other` to the end of this buffer without copying
  // (slabs change buffer; each still goes back to the pool it came from);
  // `other` is left empty.
  void MoveFrom(Buffer& other);
  // Drains everything.
  void Clear();

  // Copies n bytes starting at `offset` into dst.
  void CopyOut(size_t offset, size_t n, char* dst) const;
  // Offset of the first byte equal to c at or after `offset`, or npos.
  size_t Find(char c, size_t offset = 0) const;
  std::string ToString() const;

  static constexpr size_t npos = static_cast<size_t>(-1);

 private:
  void PopHead();

  BufferPool* pool_;
  Slab* head_ = nullptr;
  Slab* tail_ = nullptr;
  size_t size_ = 0;
};

}  // namespace postern
