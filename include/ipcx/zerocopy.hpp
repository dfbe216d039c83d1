// Zero-copy publish/subscribe in shared memory (docs/shm.md, "Zero-copy publish/subscribe").
//
//   auto pub = ipcx::shm::ZeroCopyPublisher::create("camera", {.max_payload = 1 << 20}).value();
//   auto loan = pub.loan(frame_size).value();        // a chunk of shared memory
//   fill(loan.data());                               // written in place
//   pub.publish(std::move(loan));                    // no copy: subscribers get the chunk
//
//   auto sub = ipcx::shm::ZeroCopySubscriber::open("camera").value();
//   auto s = sub.take(std::chrono::seconds(1)).value();  // a read-only view of the chunk
//   use(s.data());                                   // the chunk returns to the pool when every
//                                                    // subscriber has dropped its Sample
//
// A topic is a file /dev/shm/ipcx-<uid>-<topic> where publishers and subscribers take slots
// (each slot is a lock the kernel drops when its process dies), and one data file per
// publisher, /dev/shm/ipcx-<uid>-<topic>@<random token>, holding its pool of chunks. Subscribers map a
// publisher's chunks read-only. No daemon: whoever comes first creates the topic, the last one
// out removes it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>
#include <ipcx/semantics.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx::shm {

struct TopicLimits {
  // Fixed by whoever creates the topic; later openers get the topic's own.
  std::size_t max_publishers = 8;     // 1 .. 64
  std::size_t max_subscribers = 256;  // 1 .. 4096
};

struct ZeroCopyPublisherOptions {
  std::size_t max_payload = 64 * 1024;  // bytes a loan may have (1 B .. 1 GiB)
  std::size_t chunks = 64;              // the pool: samples in flight, queued, held and kept
  std::size_t history = 0;              // latest samples kept for subscribers that join later
  // How long publish() waits for a subscriber opened with Overflow::block to make room.
  Timeout block_timeout = std::chrono::seconds(1);
  TopicLimits topic;
};

struct ZeroCopySubscriberOptions {
  // How far this subscriber may fall behind a publisher. drop_oldest (the default): beyond it,
  // its oldest samples are dropped (counted in dropped()); also bounded by what the publisher's
  // pool still holds. block: publishers wait for it (up to their block_timeout, then
  // Errc::timeout) and keep its queued samples' chunks; a queue at least the publisher's pool
  // (less its history) cannot be honoured and is cut to that.
  std::size_t queue = 16;
  Overflow overflow = Overflow::drop_oldest;  // drop_oldest or block
  std::size_t history = 0;   // at join, up to this many of each publisher's kept samples
  std::size_t max_held = 16; // Samples this subscriber may hold at once
  TopicLimits topic;
};

namespace detail {
struct ZcTopic;
struct ZcPublisherState;
struct ZcSource;
struct ZcSubscriberState;
}  // namespace detail

// A chunk loaned by a publisher: write into data(), then publish() it. Dropped unpublished,
// the chunk goes back to the pool.
class Loan {
 public:
  Loan() noexcept = default;
  Loan(Loan&& o) noexcept;
  Loan& operator=(Loan&& o) noexcept;
  ~Loan();
  std::span<std::byte> data() const noexcept { return {data_, size_}; }
  std::size_t size() const noexcept { return size_; }
  explicit operator bool() const noexcept { return data_ != nullptr; }

 private:
  friend class ZeroCopyPublisher;
  detail::ZcPublisherState* pub_ = nullptr;
  std::uint64_t chunk_ = 0;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// A published sample as a subscriber sees it: read-only bytes in the publisher's chunk, valid
// until the Sample is destroyed (or released).
class Sample {
 public:
  // A Sample keeps what it needs (the publisher's mapping, this subscriber's slot) alive by
  // itself: it stays valid after its subscriber is closed.
  Sample() noexcept = default;
  Sample(Sample&& o) noexcept;
  Sample& operator=(Sample&& o) noexcept;
  ~Sample();
  std::span<const std::byte> data() const noexcept { return {data_, size_}; }
  std::uint64_t sequence() const noexcept { return seq_; }  // per publisher, from 1
  std::size_t publisher() const noexcept { return slot_; }  // the publisher's slot in the topic
  void release() noexcept;
  explicit operator bool() const noexcept { return data_ != nullptr; }

 private:
  friend class ZeroCopySubscriber;
  std::shared_ptr<detail::ZcSource> src_;
  std::uint64_t chunk_ = 0;
  std::uint64_t seq_ = 0;
  std::size_t slot_ = 0;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

class ZeroCopyPublisher {
 public:
  ZeroCopyPublisher() noexcept;
  ZeroCopyPublisher(ZeroCopyPublisher&&) noexcept;
  ZeroCopyPublisher& operator=(ZeroCopyPublisher&&) noexcept;
  ~ZeroCopyPublisher();

  // Opens the topic (creating it if needed) and takes a publisher slot. Errors:
  // invalid_argument (name: 1 to 190 bytes, no NUL, no '@'; options out of range),
  // resource_exhausted (every publisher slot held by a live publisher; /dev/shm full), protocol
  // (the name holds something else), permission_denied.
  static Result<ZeroCopyPublisher> create(std::string_view topic, ZeroCopyPublisherOptions options = {});

  // A chunk of `size` bytes (up to max_payload) to write in place. Never waits. Errors:
  // too_large, resource_exhausted (every chunk is loaned, kept as history, or held by a
  // subscriber: subscribers hold too much, or the pool is too small for this rate).
  Result<Loan> loan(std::size_t size);
  // Publishes a loan of this publisher (its size, or `size` bytes of it if smaller); returns
  // the sample's sequence number (a loan of 0 bytes is a sample of 0 bytes). Never waits, unless
  // a subscriber opened with Overflow::block has `queue` samples of ours untaken: then up to
  // block_timeout. Errors: invalid_argument (not this publisher's loan, or a moved-from one), timeout (a blocking subscriber stayed full; the loan
  // is still the caller's, unpublished).
  Result<std::uint64_t> publish(Loan&& loan);
  Result<std::uint64_t> publish(Loan&& loan, std::size_t size);
  // loan() + copy + publish().
  Result<std::uint64_t> publish_copy(std::span<const std::byte> bytes);

  std::uint64_t published() const noexcept;  // the latest sequence number
  std::size_t subscribers() const noexcept;  // subscribers open now, in live processes (what is published now reaches them)
  std::size_t slot() const noexcept;
  std::size_t max_payload() const noexcept;
  void close() noexcept;

 private:
  std::unique_ptr<detail::ZcPublisherState> s_;
};

class ZeroCopySubscriber {
 public:
  ZeroCopySubscriber() noexcept;
  ZeroCopySubscriber(ZeroCopySubscriber&&) noexcept;
  ZeroCopySubscriber& operator=(ZeroCopySubscriber&&) noexcept;
  ~ZeroCopySubscriber();

  // Opens the topic (creating it if needed) and takes a subscriber slot. Samples published
  // from then on are this subscriber's (and, with `history`, the latest ones kept). Errors: as
  // ZeroCopyPublisher::create; resource_exhausted when every subscriber slot is held.
  static Result<ZeroCopySubscriber> open(std::string_view topic, ZeroCopySubscriberOptions options = {});

  // The next sample, from any publisher (each publisher's in order), waiting up to `timeout`
  // (spinning briefly, then sleeping). Errors: timeout (nothing within it; immediate:
  // would_block), resource_exhausted (this subscriber holds max_held Samples: release one),
  // protocol (a publisher's memory is corrupt: that publisher is dropped, the others go on).
  Result<Sample> take(Timeout timeout = Timeout::zero());
  std::uint64_t dropped() const noexcept;    // samples missed (the queue overflowed, or the pool reused them)
  std::size_t held() const noexcept;         // Samples alive now
  std::size_t publishers() const noexcept;   // live publishers (the kernel's answer: their slot locks)
  void close() noexcept;                     // Samples still alive stay valid until destroyed

 private:
  std::unique_ptr<detail::ZcSubscriberState> s_;
};

}  // namespace ipcx::shm

namespace ipcx::shm {

// Typed zero-copy: a T written in place, read in place. T must mean the same bytes in every
// process (trivially copyable, no pointers) and be aligned to at most 64 (a chunk's payload is).
template <class T>
concept ZeroCopyValue = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && alignof(T) <= 64;

template <ZeroCopyValue T>
class TypedLoan {
 public:
  TypedLoan() = default;
  explicit TypedLoan(Loan l) : l_(std::move(l)) {}
  T& operator*() const noexcept { return *reinterpret_cast<T*>(l_.data().data()); }
  T* operator->() const noexcept { return reinterpret_cast<T*>(l_.data().data()); }
  Loan& untyped() noexcept { return l_; }

 private:
  Loan l_;
};

template <ZeroCopyValue T>
class TypedSample {
 public:
  TypedSample() = default;
  explicit TypedSample(Sample s) : s_(std::move(s)) {}
  const T& operator*() const noexcept { return *reinterpret_cast<const T*>(s_.data().data()); }
  const T* operator->() const noexcept { return reinterpret_cast<const T*>(s_.data().data()); }
  std::uint64_t sequence() const noexcept { return s_.sequence(); }
  void release() noexcept { s_.release(); }

 private:
  Sample s_;
};

template <ZeroCopyValue T>
class TypedPublisher {
 public:
  // max_payload is sizeof(T) whatever `options` says.
  static Result<TypedPublisher> create(std::string_view topic, ZeroCopyPublisherOptions options = {}) {
    options.max_payload = sizeof(T);
    auto p = ZeroCopyPublisher::create(topic, options);
    if (!p) return std::unexpected(std::move(p.error()));
    return TypedPublisher(std::move(*p));
  }
  // A chunk holding an uninitialised T (trivially copyable: assign it, or write its fields).
  Result<TypedLoan<T>> loan() {
    auto l = p_.loan(sizeof(T));
    if (!l) return std::unexpected(std::move(l.error()));
    return TypedLoan<T>(std::move(*l));
  }
  Result<std::uint64_t> publish(TypedLoan<T>&& l) { return p_.publish(std::move(l.untyped())); }
  Result<std::uint64_t> publish(const T& value) {
    return p_.publish_copy(std::as_bytes(std::span(&value, 1)));
  }
  ZeroCopyPublisher& untyped() noexcept { return p_; }

 private:
  explicit TypedPublisher(ZeroCopyPublisher p) : p_(std::move(p)) {}
  ZeroCopyPublisher p_;
};

template <ZeroCopyValue T>
class TypedSubscriber {
 public:
  static Result<TypedSubscriber> open(std::string_view topic, ZeroCopySubscriberOptions options = {}) {
    auto s = ZeroCopySubscriber::open(topic, options);
    if (!s) return std::unexpected(std::move(s.error()));
    return TypedSubscriber(std::move(*s));
  }
  // As ZeroCopySubscriber::take; a sample of another size than T is Errc::type_mismatch (and
  // is dropped).
  Result<TypedSample<T>> take(Timeout timeout = Timeout::zero()) {
    auto s = s_.take(timeout);
    if (!s) return std::unexpected(std::move(s.error()));
    if (s->data().size() != sizeof(T))
      return fail(Errc::type_mismatch, "take",
                  "a sample of " + std::to_string(s->data().size()) + " bytes, this type has " + std::to_string(sizeof(T)));
    return TypedSample<T>(std::move(*s));
  }
  ZeroCopySubscriber& untyped() noexcept { return s_; }

 private:
  explicit TypedSubscriber(ZeroCopySubscriber s) : s_(std::move(s)) {}
  ZeroCopySubscriber s_;
};

}  // namespace ipcx::shm
