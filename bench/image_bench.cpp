// The image module against GNU tar on the same tree and filesystem: creating a stream of a tree
// (write_tree vs `tar --create`) and extracting one (extract_tree vs `tar -x`), in bytes/s of
// file data. The tree: KACLONE_BENCH_FILES small files (default 100000, 0.5 to 4 KiB, 200 per
// directory) and three 32 MiB files, made once in KACLONE_BENCH_DIR (default TMPDIR or /tmp);
// both sides write their stream through a pipe to a reader that drops it (GNU tar skips
// reading file data when its archive is /dev/null). Besides the wall time, `cpu_s` is the CPU
// time (user + system) of the timed part: kaclone's own process (its reader thread included),
// or tar's and its pipe reader's as waited-for children. On a shared, busy machine the wall
// time swings with the neighbours; the CPU time much less.
#include <kaclone/image.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <kaclone/unique_fd.hpp>

extern char** environ;

namespace {

namespace fs = std::filesystem;

struct bench_tree {
    fs::path base;    // holds tree/, stream.tar and the extraction targets
    fs::path tree;
    fs::path stream;  // write_tree's stream of `tree`, the input of both extractions
    std::uint64_t data_bytes = 0;
};

// Runs `sh -c command`; true when it exited 0.
bool shell(const std::string& command) {
    pid_t pid = 0;
    const char* argv[] = {"sh", "-c", command.c_str(), nullptr};
    if (::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ) != 0) return false;
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {}
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// User + system CPU seconds of this process (`who` RUSAGE_SELF) or of its waited-for children
// (RUSAGE_CHILDREN) so far.
double cpu_seconds(int who) {
    rusage usage{};
    ::getrusage(who, &usage);
    const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Adds the CPU time of the timed part of one iteration to `total` (see cpu_seconds).
class cpu_timer {
public:
    cpu_timer(int who, double& total) : who_(who), total_(total), start_(cpu_seconds(who)) {}
    ~cpu_timer() { total_ += cpu_seconds(who_) - start_; }
    cpu_timer(const cpu_timer&) = delete;
    cpu_timer& operator=(const cpu_timer&) = delete;

private:
    int who_;
    double& total_;
    double start_;
};

void set_counters(benchmark::State& state, std::uint64_t data_bytes, double cpu_s) {
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(data_bytes));
    state.counters["cpu_s"] = benchmark::Counter(cpu_s / static_cast<double>(state.iterations()));
}

const bench_tree& tree() {
    static const bench_tree made = [] {
        bench_tree t;
        const char* dir = std::getenv("KACLONE_BENCH_DIR");
        t.base = fs::path(dir != nullptr ? dir : fs::temp_directory_path().string()) / "kaclone-image-bench";
        t.tree = t.base / "tree";
        t.stream = t.base / "stream.tar";
        fs::remove_all(t.base);
        fs::create_directories(t.tree);
        const char* count = std::getenv("KACLONE_BENCH_FILES");
        const long files = count != nullptr ? std::atol(count) : 100000;
        std::mt19937 gen(6);
        std::string data(32 << 20, '\0');
        for (auto& c : data) c = static_cast<char>(gen());
        for (long i = 0; i < files; ++i) {
            const auto d = t.tree / ("d" + std::to_string(i / 2000)) / ("e" + std::to_string(i / 200));
            if (i % 200 == 0) fs::create_directories(d);
            const std::size_t n = 512 + static_cast<std::size_t>(gen() % 3584);
            std::ofstream(d / ("f" + std::to_string(i)), std::ios::binary).write(data.data() + i % 4096, static_cast<std::streamsize>(n));
            t.data_bytes += n;
        }
        for (int i = 0; i < 3; ++i) {
            std::ofstream(t.tree / ("big" + std::to_string(i)), std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
            t.data_bytes += data.size();
        }
        kaclone::unique_fd out{::open(t.stream.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
        kaclone::image::write_stats stats;
        if (!kaclone::image::write_tree(t.tree, {}, out.get(), stats)) std::abort();
        return t;
    }();
    static const struct remove_at_exit {
        fs::path path;
        ~remove_at_exit() {
            std::error_code ec;
            fs::remove_all(path, ec);
        }
    } cleanup{made.base};
    return made;
}

void BM_WriteTree(benchmark::State& state) {
    const auto& t = tree();
    double cpu_s = 0;
    for (auto _ : state) {
        const cpu_timer timer{RUSAGE_SELF, cpu_s};
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) std::abort();
        kaclone::unique_fd read_end{fds[0]}, write_end{fds[1]};
        std::thread reader([fd = read_end.get()] {
            static std::vector<char> sink(1 << 16);
            while (::read(fd, sink.data(), sink.size()) > 0) {}
        });
        kaclone::image::write_stats stats;
        auto r = kaclone::image::write_tree(t.tree, {}, write_end.get(), stats);
        write_end.reset();
        reader.join();
        if (!r) state.SkipWithError(r.error().message().c_str());
    }
    set_counters(state, t.data_bytes, cpu_s);
}

void BM_GnuTarCreate(benchmark::State& state) {
    const auto& t = tree();
    double cpu_s = 0;
    for (auto _ : state) {
        const cpu_timer timer{RUSAGE_CHILDREN, cpu_s};
        if (!shell("tar --create --one-file-system --sparse --xattrs --acls --numeric-owner -C '" + t.tree.string() +
                   "' -f - . | cat >/dev/null"))
            state.SkipWithError("tar --create failed");
    }
    set_counters(state, t.data_bytes, cpu_s);
}

void BM_ExtractTree(benchmark::State& state) {
    const auto& t = tree();
    const auto target = t.base / "out-kaclone";
    double cpu_s = 0;
    for (auto _ : state) {
        state.PauseTiming();
        fs::remove_all(target);
        fs::create_directory(target);
        ::sync();  // the previous run's writeback is not this run's cost
        kaclone::unique_fd in{::open(t.stream.c_str(), O_RDONLY | O_CLOEXEC)};
        state.ResumeTiming();
        const cpu_timer timer{RUSAGE_SELF, cpu_s};
        kaclone::image::extract_stats stats;
        if (auto r = kaclone::image::extract_tree(in.get(), target, {}, stats); !r) state.SkipWithError(r.error().message().c_str());
    }
    fs::remove_all(target);
    set_counters(state, t.data_bytes, cpu_s);
}

void BM_GnuTarExtract(benchmark::State& state) {
    const auto& t = tree();
    const auto target = t.base / "out-tar";
    double cpu_s = 0;
    for (auto _ : state) {
        state.PauseTiming();
        fs::remove_all(target);
        fs::create_directory(target);
        ::sync();  // the previous run's writeback is not this run's cost
        state.ResumeTiming();
        const cpu_timer timer{RUSAGE_CHILDREN, cpu_s};
        if (!shell("tar -x --pax-option=delete=hdrcharset --xattrs --acls -p --numeric-owner -C '" + target.string() + "' -f '" +
                   t.stream.string() + "'"))
            state.SkipWithError("tar -x failed");
    }
    fs::remove_all(target);
    set_counters(state, t.data_bytes, cpu_s);
}

// Three runs each; compare the medians (a busy neighbour shows as spread). Run with
// --benchmark_enable_random_interleaving=true so that a neighbour hits both sides alike.
BENCHMARK(BM_WriteTree)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(3);
BENCHMARK(BM_GnuTarCreate)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(3);
BENCHMARK(BM_ExtractTree)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(3);
BENCHMARK(BM_GnuTarExtract)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(3);

}  // namespace
