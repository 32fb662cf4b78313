// Frame checksum candidates (design: "XXH3 or CRC32C"): bytes/s of each over frame-sized
// payloads, to pick the relay's per-frame checksum and running digest by measurement.
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>
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

}  // namespace
