// The data plane in one process: a source, a relay and a leaf, each on its own thread, joined
// by TCP connections on loopback; the relay's and the leaf's sinks are pipes read by threads
// of the test, which can stop reading for a while (a slow disk, a stalled `--exec` command).
// Checks every byte each sink got against the source, in both relay modes, with and without
// a session key, and that a corrupted frame never reaches a sink.
#include <kaclone/relay.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <kaclone/auth.hpp>

namespace kaclone {
namespace {

// A connected pair of TCP sockets on 127.0.0.1: [0] the parent's end, [1] the child's.
std::array<unique_fd, 2> tcp_pair() {
    unique_fd listener{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listener.get(), 1), 0);
    EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    unique_fd child{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    EXPECT_EQ(::connect(child.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    unique_fd parent{::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC)};
    EXPECT_TRUE(parent);
    return {std::move(parent), std::move(child)};
}

// `bytes` of a fixed pseudo-random pattern in a memfd (the source) and in memory (to compare).
struct source_data {
    unique_fd fd;
    std::vector<std::byte> bytes;
};
source_data make_source(std::size_t n) {
    source_data s{unique_fd{::memfd_create("relay-test-source", MFD_CLOEXEC)}, std::vector<std::byte>(n)};
    std::uint64_t x = 0x9e3779b97f4a7c15ull;
    for (std::size_t i = 0; i < n; ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        s.bytes[i] = static_cast<std::byte>(x >> 56);
    }
    for (std::size_t done = 0; done < n;) {
        const ssize_t w = ::write(s.fd.get(), s.bytes.data() + done, n - done);
        EXPECT_GT(w, 0);
        if (w <= 0) break;
        done += static_cast<std::size_t>(w);
    }
    EXPECT_EQ(::lseek(s.fd.get(), 0, SEEK_SET), 0);
    return s;
}

// A pipe sink and the thread that reads it to EOF. Once `stall_at` bytes are read it stops
// reading until `resume()` is true (checked every millisecond, for at most 30 s).
class pipe_reader {
public:
    pipe_reader(std::size_t stall_at, std::function<bool()> resume) {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
        read_.reset(fds[0]);
        write_.reset(fds[1]);
        thread_ = std::thread([this, stall_at, resume = std::move(resume)] {
            std::vector<std::byte> chunk(256 << 10);
            bool stalled = false;
            for (;;) {
                if (!stalled && got_.size() >= stall_at) {
                    stalled = true;
                    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
                    while (!resume() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(1));
                    resumed_ = resume();
                }
                const std::size_t want = stalled ? chunk.size() : std::min(chunk.size(), stall_at - got_.size());
                const ssize_t n = ::read(read_.get(), chunk.data(), want);
                if (n <= 0) break;
                got_.insert(got_.end(), chunk.begin(), chunk.begin() + n);
            }
        });
    }
    ~pipe_reader() { finish(); }
    int sink_fd() const noexcept { return write_.get(); }
    // Closes the write end (the data plane returned) and waits for the reader.
    const std::vector<std::byte>& finish() {
        write_.reset();
        if (thread_.joinable()) thread_.join();
        return got_;
    }
    bool resumed() const noexcept { return resumed_; }

private:
    unique_fd read_, write_;
    std::vector<std::byte> got_;
    bool resumed_ = false;
    std::thread thread_;
};

// Index of the first byte where `got` differs from the start of `want` (got.size() if none).
std::size_t first_difference(const std::vector<std::byte>& got, const std::vector<std::byte>& want) {
    const std::size_t n = std::min(got.size(), want.size());
    return static_cast<std::size_t>(std::mismatch(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(n), want.begin()).first - got.begin());
}

struct node {
    relay_stats stats;
    std::unique_ptr<relay_control> control = *relay_control::create();
    result<relay_result> outcome = error{std::make_error_code(std::errc::operation_in_progress), "not run"};
    std::thread thread;
};

// source -> relay (node 1) -> leaf (node 2). Each sink reader stalls at its `stall_at` until
// its node holds `backlog` wire bytes it has not stored (so its ring, not only its pipes, has
// taken the difference), then reads on.
struct chain_run {
    relay_config config;
    std::size_t bytes = 40u << 20;
    std::size_t relay_stall_at = ~std::size_t{0}, leaf_stall_at = ~std::size_t{0};
    // More than a pipe sink's stage holds (a quarter of --buffer): some of it was only in the
    // ring.
    std::uint64_t backlog = 12u << 20;

    source_data source;
    node nodes[3];
    std::vector<std::byte> got[3];
    bool resumed[3] = {};

    void run() {
        source = make_source(bytes);
        auto backlog_at = [this](int i) {
            return [this, i] {
                const auto& s = nodes[i].stats;
                return s.intake_wire_bytes.load() >= s.stored_bytes.load() + backlog;
            };
        };
        pipe_reader relay_sink{relay_stall_at, backlog_at(1)}, leaf_sink{leaf_stall_at, backlog_at(2)};
        auto a = tcp_pair(), b = tcp_pair();
        const std::uint32_t to_relay[] = {1}, to_leaf[] = {2};
        nodes[0].control->attach_child({1, a[0].get(), 0, 0, false});
        nodes[1].control->attach_parent(a[1].get());
        nodes[1].control->attach_child({2, b[0].get(), 0, 0, false});
        nodes[2].control->attach_parent(b[1].get());
        // A node that fails stops the others: nobody here replaces a lost child.
        auto on_thread = [this](int i, auto body) {
            nodes[i].thread = std::thread([this, i, body] {
                nodes[i].outcome = body(nodes[i]);
                if (!nodes[i].outcome)
                    for (auto& n : nodes) n.control->stop();
            });
        };
        on_thread(0, [&](node& n) { return run_source(source.fd.get(), to_relay, config, n.stats, *n.control); });
        on_thread(1, [&](node& n) { return run_relay(to_leaf, {relay_sink.sink_fd(), sink_kind::sequential}, config, n.stats, *n.control); });
        on_thread(2, [&](node& n) { return run_relay({}, {leaf_sink.sink_fd(), sink_kind::sequential}, config, n.stats, *n.control); });
        for (auto& n : nodes) n.thread.join();
        got[1] = relay_sink.finish();
        got[2] = leaf_sink.finish();
        resumed[1] = relay_sink.resumed();
        resumed[2] = leaf_sink.resumed();
    }

    void expect_every_sink_has_the_source() {
        ASSERT_TRUE(nodes[0].outcome) << nodes[0].outcome.error().message();
        for (int i : {1, 2}) {
            ASSERT_TRUE(nodes[i].outcome) << "node " << i << ": " << nodes[i].outcome.error().message();
            EXPECT_EQ(nodes[i].outcome->bytes, bytes) << "node " << i;
            EXPECT_EQ(nodes[i].outcome->digest, nodes[0].outcome->digest) << "node " << i;
            EXPECT_EQ(got[i].size(), bytes) << "node " << i << "'s sink";
            EXPECT_EQ(first_difference(got[i], source.bytes), got[i].size()) << "node " << i << "'s sink differs from the source there";
        }
    }
};

struct mode_and_key {
    relay_mode mode;
    bool keyed;
};
std::string name_of(const ::testing::TestParamInfo<mode_and_key>& p) {
    return std::string(p.param.mode == relay_mode::splice ? "Splice" : "Zerocopy") + (p.param.keyed ? "Keyed" : "Open");
}

class RelayChain : public ::testing::TestWithParam<mode_and_key> {
protected:
    void SetUp() override {
        run_.config.mode = GetParam().mode;
        run_.config.buffer_bytes = 32u << 20;
        if (GetParam().keyed) {
            auth::session_key key;
            key.bytes.fill(std::byte{0x42});
            signer_.emplace(key, auth::nonce{std::byte{7}});
            run_.config.signer = &*signer_;
        }
    }
    std::optional<auth::frame_signer> signer_;
    chain_run run_;
};

TEST_P(RelayChain, EverySinkGetsTheSourceBytes) {
    run_.bytes = (40u << 20) + 12345;  // a short last frame
    run_.run();
    run_.expect_every_sink_has_the_source();
    for (int i : {1, 2}) {
        const std::uint64_t spliced = run_.nodes[i].stats.sink_spliced_bytes.load();
        if (GetParam().mode == relay_mode::splice) EXPECT_GT(spliced, 0u) << "node " << i << " never spliced to its sink";
        else EXPECT_EQ(spliced, 0u) << "node " << i;
    }
}

// Both sinks stop reading for a while: their pipes fill, then their rings hold the rest, and
// what was held is written from the ring before the pipes carry on.
TEST_P(RelayChain, SinksThatStallGetEveryByteInOrder) {
    run_.relay_stall_at = 5u << 20;
    run_.leaf_stall_at = (17u << 20) + 999;
    run_.run();
    EXPECT_TRUE(run_.resumed[1]) << "node 1 never held " << run_.backlog << " bytes more than it stored";
    EXPECT_TRUE(run_.resumed[2]) << "node 2 never held " << run_.backlog << " bytes more than it stored";
    run_.expect_every_sink_has_the_source();
    if (GetParam().mode == relay_mode::splice)
        for (int i : {1, 2}) {  // both ways to the sink were taken
            const std::uint64_t spliced = run_.nodes[i].stats.sink_spliced_bytes.load();
            EXPECT_GT(spliced, 0u) << "node " << i;
            EXPECT_LT(spliced, run_.bytes) << "node " << i << ": nothing was written from the ring";
        }
}

// A byte flipped after the source computed its frame's checksum: node 1 refuses that frame
// and stops, and no sink gets a byte of it (only frames before it, maybe not all of them).
TEST_P(RelayChain, CorruptFrameNeverReachesASink) {
    const std::uint64_t flip = (9u << 20) + 4321;  // in the 10th frame of 1 MiB
    run_.config.fault_flip_byte = flip;
    run_.run();
    ASSERT_FALSE(run_.nodes[1].outcome);
    EXPECT_EQ(run_.nodes[1].outcome.error().message(), "stream 0 at offset 9437184: checksum mismatch");
    for (int i : {1, 2}) {
        EXPECT_LE(run_.got[i].size(), 9u << 20) << "node " << i << "'s sink";
        EXPECT_EQ(first_difference(run_.got[i], run_.source.bytes), run_.got[i].size()) << "node " << i << "'s sink";
    }
}

// A child that stops reading (frozen, or failed with its socket still open) while the
// source is stopped: the source still returns, and resets that connection rather than wait
// forever for the kernel to free bytes the child will never acknowledge (zerocopy mode).
TEST_P(RelayChain, StopReturnsWhileAChildReadsNothing) {
    auto source = make_source(40u << 20);
    auto link = tcp_pair();
    node n;
    const std::uint32_t to_child[] = {1};
    n.control->attach_child({1, link[0].get(), 0, 0, false});
    n.thread = std::thread([&] { n.outcome = run_source(source.fd.get(), to_child, run_.config, n.stats, *n.control); });
    // Until the ring is full: the child's socket holds all it takes, the rest waits.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (n.stats.held_since_ns.load() == 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_NE(n.stats.held_since_ns.load(), 0u) << "the source never filled its ring";
    n.control->stop();
    n.thread.join();
    ASSERT_FALSE(n.outcome);
    EXPECT_EQ(n.outcome.error().message(), "data plane stopped: Operation canceled");
    // What the child had queued it can still read; then, where its bytes were held for
    // SEND_ZC, the reset.
    std::vector<std::byte> chunk(1 << 20);
    ssize_t got = 0;
    while ((got = ::read(link[1].get(), chunk.data(), chunk.size())) > 0) {}
    if (GetParam().mode == relay_mode::zerocopy) EXPECT_EQ(got < 0 ? errno : 0, ECONNRESET);
    else EXPECT_EQ(got, 0) << "splice mode ends the connection with end of stream";
}

INSTANTIATE_TEST_SUITE_P(Modes, RelayChain,
                         ::testing::Values(mode_and_key{relay_mode::splice, false}, mode_and_key{relay_mode::splice, true},
                                           mode_and_key{relay_mode::zerocopy, false}, mode_and_key{relay_mode::zerocopy, true}),
                         name_of);

}  // namespace
}  // namespace kaclone
