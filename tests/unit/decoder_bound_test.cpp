// The stream decoder's memory is bounded by what the peer actually sent, not by what its header
// claims; and the buffers' accounting against a shared budget covers every byte they hold.
#include <algorithm>
#include <cstring>
#include <memory>

#include <gtest/gtest.h>

#include "wire/budget.hpp"
#include "wire/frame.hpp"

namespace {

using ipcx::wire::StreamDecoder;
constexpr std::size_t KiB = 1024, MiB = 1024 * KiB;

void feed(StreamDecoder& d, std::span<const std::byte> bytes) {
  auto space = d.prepare(bytes.size());
  ASSERT_GE(space.size(), bytes.size());
  std::memcpy(space.data(), bytes.data(), bytes.size());
  d.commit(bytes.size());
}

}  // namespace

// A header announcing 64 MiB followed by 2 MiB of payload: after every 64 KiB read the buffer
// holds at most twice what arrived (or the initial 64 KiB), never the announced size.
TEST(DecoderBound, AnnouncedLengthIsNotAllocatedUpFront) {
  StreamDecoder d(64 * MiB);
  auto header = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .length = 64 * MiB});
  feed(d, header);
  std::size_t fed = header.size();
  auto none = d.next();
  ASSERT_TRUE(none.has_value()) << none.error().message();
  EXPECT_FALSE(none->has_value());
  EXPECT_LE(d.allocated(), 64 * KiB);

  std::vector<std::byte> chunk(64 * KiB, std::byte{0x5a});
  while (fed < header.size() + 2 * MiB) {
    feed(d, chunk);
    fed += chunk.size();
    auto r = d.next();
    ASSERT_TRUE(r.has_value()) << r.error().message();
    ASSERT_FALSE(r->has_value()) << "the frame cannot be complete yet";
    ASSERT_LE(d.allocated(), std::max(64 * KiB, 2 * fed)) << "after " << fed << " bytes";
  }
  EXPECT_EQ(d.pending(), fed);
  EXPECT_LE(d.allocated(), 4 * MiB + 256 * KiB) << "not the announced 64 MiB";
  // Giving back memory keeps the partial frame.
  d.trim();
  EXPECT_EQ(d.pending(), fed);
  EXPECT_GE(d.allocated(), fed);
}

TEST(DecoderBound, TrimFreesEverythingWhenNothingIsPending) {
  StreamDecoder d;
  std::vector<std::byte> payload(300 * KiB, std::byte{1});
  auto header = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .length = static_cast<std::uint32_t>(payload.size())});
  feed(d, header);
  for (std::size_t off = 0; off < payload.size(); off += 64 * KiB) {
    (void)d.next();
    feed(d, std::span(payload).subspan(off, std::min(64 * KiB, payload.size() - off)));
  }
  auto f = d.next();
  ASSERT_TRUE(f.has_value() && f->has_value());
  EXPECT_EQ((*f)->payload.size(), payload.size());
  EXPECT_GT(d.allocated(), 0u);
  EXPECT_EQ(d.pending(), 0u);
  d.trim();
  EXPECT_EQ(d.allocated(), 0u);
  // Still usable afterwards.
  auto small = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .length = 0});
  feed(d, small);
  auto g = d.next();
  ASSERT_TRUE(g.has_value() && g->has_value());
  EXPECT_EQ((*g)->payload.size(), 0u);
}

// The decoder charged to a budget: growth past the budget is refused (prepare returns nothing)
// rather than allocated, and the charge follows the allocation exactly.
TEST(DecoderBound, BudgetRefusesGrowthAndTracksTheAllocation) {
  auto budget = std::make_shared<ipcx::wire::MemoryBudget>(1 * MiB);
  StreamDecoder d(64 * MiB);
  d.set_budget(budget);
  auto header = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .length = 8 * MiB});
  feed(d, header);
  (void)d.next();
  std::vector<std::byte> chunk(64 * KiB, std::byte{2});
  std::size_t fed = header.size();
  for (int i = 0; i < 64; ++i) {
    auto space = d.prepare(chunk.size());
    if (space.empty()) break;
    std::memcpy(space.data(), chunk.data(), chunk.size());
    d.commit(chunk.size());
    fed += chunk.size();
    (void)d.next();
    ASSERT_EQ(budget->used(), d.allocated());
    ASSERT_LE(budget->used(), budget->limit());
  }
  EXPECT_LT(fed, 2 * MiB) << "the budget must have stopped the growth";
  EXPECT_LE(budget->peak(), budget->limit());
  d.trim();
  EXPECT_EQ(budget->used(), d.allocated());
}

// While a buffer grows, the old and the new allocation exist together (the bytes are copied
// from one to the other): the budget must count both, or a server's memory_limit is exceeded
// by the old buffer's size without memory_peak showing it.
TEST(DecoderBound, ReallocationChargesBothBuffersDuringTheCopy) {
  auto budget = std::make_shared<ipcx::wire::MemoryBudget>(1 * MiB);
  ipcx::wire::Buffer b;
  b.charge().attach(budget);
  ASSERT_TRUE(b.reallocate(512 * KiB, 0, 0));
  const bool grew = b.reallocate(1 * MiB, 0, 512 * KiB);  // 1.5 MiB exist during the copy
  EXPECT_TRUE(!grew || budget->peak() >= 1 * MiB + 512 * KiB)
      << "grew to 1 MiB with a 512 KiB buffer still allocated, yet the budget's peak is " << budget->peak()
      << " (limit " << budget->limit() << ")";
  b.release();
  EXPECT_EQ(budget->used(), 0u);
}
