// Frame checksum candidates (design: "XXH3 or CRC32C"): bytes/s of each over frame-sized
// payloads, to pick the relay's per-frame checksum and running digest by measurement.
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <benchmark/benchmark.h>
#include <kaclone/protocol.hpp>
#include <xxhash.h>

namespace {

std::vector<std::byte> random_payload(std::size_t bytes) {
    std::vector<std::byte> data(bytes);
    std::mt19937_64 rng{42};
    for (auto& b : data) b = static_cast<std::byte>(rng());
    return data;
}

void BM_Xxh3_64(benchmark::State& state) {
    const auto data = random_payload(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) benchmark::DoNotOptimize(XXH3_64bits(data.data(), data.size()));
    state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Xxh3_64)->RangeMultiplier(4)->Range(4 << 10, 4 << 20);

// The same hash as payload_checksum() computes it: through libxxhash's run-time dispatch (AVX2
// or AVX-512 where the CPU has them); XXH3_64bits itself is built for SSE2.
void BM_PayloadChecksum(benchmark::State& state) {
    const auto data = random_payload(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) benchmark::DoNotOptimize(kaclone::protocol::payload_checksum(data));
    state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_PayloadChecksum)->RangeMultiplier(4)->Range(4 << 10, 4 << 20);

void BM_Xxh3_128(benchmark::State& state) {
    const auto data = random_payload(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) benchmark::DoNotOptimize(XXH3_128bits(data.data(), data.size()));
    state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Xxh3_128)->RangeMultiplier(4)->Range(4 << 10, 4 << 20);

// A running digest of a whole stream, fed one frame at a time (what every node keeps).
void BM_Xxh3_128Streaming(benchmark::State& state) {
    const auto data = random_payload(static_cast<std::size_t>(state.range(0)));
    XXH3_state_t* digest = XXH3_createState();
    XXH3_128bits_reset(digest);
    for (auto _ : state) XXH3_128bits_update(digest, data.data(), data.size());
    benchmark::DoNotOptimize(XXH3_128bits_digest(digest));
    XXH3_freeState(digest);
    state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Xxh3_128Streaming)->RangeMultiplier(4)->Range(64 << 10, 4 << 20);

// What a relay node does with received bytes in splice mode: read them from a pipe into its
// 64 MiB ring and verify the frame's checksum. Arg 0: the frame hashed whole once it is in
// (1 MiB, the default frame); arg 1: hashed in 128 KiB parts right after each read
// (protocol::payload_hasher). Compare with BM_Xxh3_64 to see what the plain (SSE2) entry point
// costs against the run-time dispatched one that payload_checksum() and payload_hasher use.
void BM_PipeIntake(benchmark::State& state) {
    constexpr std::size_t ring_bytes = 64u << 20, frame = 1u << 20, part = 128u << 10;
    const auto source = random_payload(part);
    std::vector<std::byte> ring(ring_bytes);
    int p[2];
    if (::pipe(p) != 0 || ::fcntl(p[1], F_SETPIPE_SZ, static_cast<int>(part)) < 0) return state.SkipWithError("pipe");
    kaclone::protocol::payload_hasher hasher;
    std::size_t pos = 0;
    std::uint64_t sum = 0;
    for (auto _ : state) {
        for (std::size_t got = 0; got < frame; got += part) {
            if (::write(p[1], source.data(), part) != static_cast<ssize_t>(part) ||
                ::read(p[0], ring.data() + pos + got, part) != static_cast<ssize_t>(part))
                return state.SkipWithError("pipe i/o");
            if (state.range(0) == 1) hasher.add(std::span{ring}.subspan(pos + got, part));
        }
        if (state.range(0) == 1) {
            sum ^= hasher.checksum();
            hasher.reset();
        } else {
            sum ^= kaclone::protocol::payload_checksum(std::span{ring}.subspan(pos, frame));
        }
        pos = (pos + frame) % ring_bytes;
    }
    benchmark::DoNotOptimize(sum);
    ::close(p[0]);
    ::close(p[1]);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame));
}
BENCHMARK(BM_PipeIntake)->Arg(0)->Arg(1);

}  // namespace
