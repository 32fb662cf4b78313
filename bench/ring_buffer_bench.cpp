// ring_buffer costs: one chunk in (writable, copy, commit) and out again (readable, copy,
// consume) per iteration, with one reader or two (the relay's sink and child); chunks just short
// of the ring so that nearly every one wraps through the mirrored mapping; and a plain memcpy
// of the same size as the yardstick. Figures in bytes/s of stream bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include <kaclone/ring_buffer.hpp>

namespace {

using kaclone::ring_buffer;

constexpr std::size_t ring_bytes = 16 << 20;

std::vector<std::byte> random_payload(std::size_t bytes) {
    std::vector<std::byte> data(bytes);
    std::mt19937_64 rng{42};
    for (auto& b : data) b = static_cast<std::byte>(rng());
    return data;
}

// Writes the whole ring once (and consumes it) so the timed loop does not pay its page faults.
void prefault(ring_buffer& ring, std::size_t readers) {
    while (ring.write_position() < ring.capacity()) {
        const auto w = ring.writable(ring.capacity());
        std::memset(w.data(), 0, w.size());
        ring.commit(w.size());
        for (std::size_t r = 0; r < readers; ++r) ring.consume(r, w.size());
    }
}

// One chunk through the ring: producer copies it in, every reader copies it out.
bool round_trip(ring_buffer& ring, const std::vector<std::byte>& in, std::vector<std::vector<std::byte>>& out) {
    const auto w = ring.writable(in.size());
    if (w.size() < in.size()) return false;
    std::memcpy(w.data(), in.data(), in.size());
    ring.commit(in.size());
    for (std::size_t r = 0; r < out.size(); ++r) {
        const auto readable = ring.readable(r);
        if (readable.size() < in.size()) return false;
        std::memcpy(out[r].data(), readable.data(), in.size());
        ring.consume(r, in.size());
    }
    return true;
}

bool all_equal(const std::vector<std::byte>& in, const std::vector<std::vector<std::byte>>& out) {
    for (const auto& o : out)
        if (o != in) return false;
    return true;
}

// Args: chunk bytes, readers. A 16 MiB ring with the relay's low watermark (a quarter).
void BM_RingRoundTrip(benchmark::State& state) {
    const auto chunk = static_cast<std::size_t>(state.range(0));
    const auto readers = static_cast<std::size_t>(state.range(1));
    auto ring = ring_buffer::create(ring_bytes, readers, ring_bytes / 4);
    if (!ring) return state.SkipWithError("ring_buffer::create failed");
    prefault(*ring, readers);
    const auto in = random_payload(chunk);
    std::vector<std::vector<std::byte>> out(readers, std::vector<std::byte>(chunk));
    for (auto _ : state) {
        if (!round_trip(*ring, in, out)) return state.SkipWithError("ring refused a chunk");
        benchmark::DoNotOptimize(out.front().data());
        benchmark::ClobberMemory();
    }
    if (!all_equal(in, out)) return state.SkipWithError("bytes changed in the ring");
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(chunk));
}
BENCHMARK(BM_RingRoundTrip)->ArgsProduct({benchmark::CreateRange(4 << 10, 4 << 20, 4), {1, 2}});

// Wrap-around heavy: Arg is the ring's capacity and each chunk is 40 bytes (one frame header)
// short of it, so the write position moves back 40 bytes modulo the capacity each time and
// nearly every chunk straddles the end of the ring: its contiguous span runs on into the
// mirrored second mapping. `wrapped` is the fraction of chunks that did.
void BM_RingWrapAround(benchmark::State& state) {
    auto ring = ring_buffer::create(static_cast<std::size_t>(state.range(0)), 1, 0);
    if (!ring) return state.SkipWithError("ring_buffer::create failed");
    prefault(*ring, 1);
    const std::size_t chunk = ring->capacity() - 40;
    const auto in = random_payload(chunk);
    std::vector<std::vector<std::byte>> out(1, std::vector<std::byte>(chunk));
    std::int64_t wrapped = 0;
    for (auto _ : state) {
        wrapped += ring->write_position() % ring->capacity() + chunk > ring->capacity();
        if (!round_trip(*ring, in, out)) return state.SkipWithError("ring refused a chunk");
        benchmark::DoNotOptimize(out.front().data());
        benchmark::ClobberMemory();
    }
    if (!all_equal(in, out)) return state.SkipWithError("bytes changed in the ring");
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(chunk));
    state.counters["wrapped"] = static_cast<double>(wrapped) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_RingWrapAround)->RangeMultiplier(4)->Range(4 << 10, 4 << 20);

// One memcpy of the chunk: a round trip with one reader is two of these.
void BM_Memcpy(benchmark::State& state) {
    const auto chunk = static_cast<std::size_t>(state.range(0));
    const auto in = random_payload(chunk);
    std::vector<std::byte> out(chunk);
    for (auto _ : state) {
        std::memcpy(out.data(), in.data(), chunk);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(chunk));
}
BENCHMARK(BM_Memcpy)->RangeMultiplier(4)->Range(4 << 10, 4 << 20);

}  // namespace
