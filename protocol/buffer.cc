#include "protocol/buffer.h"

#include <cassert>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace postern {

BufferPool::BufferPool(size_t slab_size, size_t max_free)
    : slab_size_(slab_size), max_free_(max_free) {
  assert(slab_size > 0 && slab_size <= UINT32_MAX);
}

BufferPool::~BufferPool() {
  // Every buffer of this pool must be gone by now (they belong to the same
  // worker and die before it).
  assert(in_use_ == 0);
  while (free_ != nullptr) {
    Slab* s = free_;
    free_ = s->next;
    s->~Slab();
    std::free(s);
  }
}

Slab* BufferPool::Acquire() {
  Slab* s = free_;
  if (s != nullptr) {
    free_ = s->next;
    --free_count_;
  } else {
    void* mem = std::malloc(sizeof(Slab) + slab_size_);
    if (mem == nullptr) throw std::bad_alloc();
    s = new (mem) Slab();
    s->capacity = static_cast<uint32_t>(slab_size_);
  }
  s->next = nullptr;
  s->owner = this;
  s->begin = 0;
  s->end = 0;
  ++in_use_;
  return s;
}

void BufferPool::Trim(size_t keep) {
  while (free_count_ > keep) {
    Slab* s = free_;
    free_ = s->next;
    --free_count_;
    s->~Slab();
    std::free(s);
  }
}

void BufferPool::Release(Slab* slab) {
  --in_use_;
  if (free_count_ >= max_free_) {
    slab->~Slab();
    std::free(slab);
    return;
  }
  slab->next = free_;
  free_ = slab;
  ++free_count_;
}

Buffer::Buffer(Buffer&& other) noexcept
    : pool_(other.pool_), head_(other.head_), tail_(other.tail_), size_(other.size_) {
  other.head_ = other.tail_ = nullptr;
  other.size_ = 0;
}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Clear();
    pool_ = other.pool_;
    head_ = std::exchange(other.head_, nullptr);
    tail_ = std::exchange(other.tail_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

absl::Span<char> Buffer::Reserve() {
  if (tail_ == nullptr || tail_->writable() == 0) {
    Slab* s = pool_->Acquire();
    if (tail_ == nullptr) {
      head_ = tail_ = s;
    } else {
      tail_->next = s;
      tail_ = s;
    }
  }
  return absl::Span<char>(tail_->data() + tail_->end, tail_->writable());
}

void Buffer::Commit(size_t n) {
  if (n == 0 && tail_ == nullptr) return;
  assert(tail_ != nullptr && n <= tail_->writable());
  tail_->end += static_cast<uint32_t>(n);
  size_ += n;
  // A reservation that brought nothing must not leave an empty slab behind.
  if (tail_->readable() == 0) {
    if (head_ == tail_) {
      head_->owner->Release(head_);
      head_ = tail_ = nullptr;
    } else {
      // The empty tail stays only until the next Reserve; drop it now so the
      // invariant "no empty slab" holds.
      Slab* prev = head_;
      while (prev->next != tail_) prev = prev->next;
      tail_->owner->Release(tail_);
      prev->next = nullptr;
      tail_ = prev;
    }
  }
}

void Buffer::Append(absl::string_view bytes) {
  while (!bytes.empty()) {
    absl::Span<char> space = Reserve();
    size_t n = std::min(space.size(), bytes.size());
    std::memcpy(space.data(), bytes.data(), n);
    Commit(n);
    bytes.remove_prefix(n);
  }
}

absl::string_view Buffer::Front() const {
  if (head_ == nullptr) return {};
  return absl::string_view(head_->data() + head_->begin, head_->readable());
}

size_t Buffer::Peek(struct iovec* iov, size_t max) const {
  size_t i = 0;
  for (const Slab* s = head_; s != nullptr && i < max; s = s->next) {
    if (s->readable() == 0) continue;
    iov[i].iov_base = const_cast<char*>(s->data() + s->begin);
    iov[i].iov_len = s->readable();
    ++i;
  }
  return i;
}

void Buffer::PopHead() {
  Slab* s = head_;
  head_ = s->next;
  if (head_ == nullptr) tail_ = nullptr;
  s->owner->Release(s);
}

void Buffer::Drain(size_t n) {
  assert(n <= size_);
  size_ -= n;
  while (n > 0) {
    size_t r = head_->readable();
    if (n < r) {
      head_->begin += static_cast<uint32_t>(n);
      return;
    }
    n -= r;
    PopHead();
  }
  // Drop a head that became empty exactly at a slab boundary.
  while (head_ != nullptr && head_->readable() == 0) PopHead();
}

void Buffer::MoveFrom(Buffer& other) {
  if (&other == this || other.head_ == nullptr) return;
  if (tail_ == nullptr) {
    head_ = other.head_;
  } else {
    tail_->next = other.head_;
  }
  tail_ = other.tail_;
  size_ += other.size_;
  other.head_ = other.tail_ = nullptr;
  other.size_ = 0;
}

void Buffer::Clear() {
  while (head_ != nullptr) PopHead();
  size_ = 0;
}

void Buffer::CopyOut(size_t offset, size_t n, char* dst) const {
  assert(offset + n <= size_);
  for (const Slab* s = head_; s != nullptr && n > 0; s = s->next) {
    size_t r = s->readable();
    if (offset >= r) {
      offset -= r;
      continue;
    }
    size_t take = std::min(r - offset, n);
    std::memcpy(dst, s->data() + s->begin + offset, take);
    dst += take;
    n -= take;
    offset = 0;
  }
}

size_t Buffer::Find(char c, size_t offset) const {
  size_t base = 0;
  for (const Slab* s = head_; s != nullptr; s = s->next) {
    size_t r = s->readable();
    if (offset < base + r) {
      size_t start = offset > base ? offset - base : 0;
      const char* p = s->data() + s->begin;
      const void* hit = std::memchr(p + start, c, r - start);
      if (hit != nullptr) return base + (static_cast<const char*>(hit) - p);
    }
    base += r;
  }
  return npos;
}

std::string Buffer::ToString() const {
  std::string out;
  out.reserve(size_);
  ForEachSlice([&](absl::string_view v) { out.append(v.data(), v.size()); });
  return out;
}

}  // namespace postern
