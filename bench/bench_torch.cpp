// bench_torch.cpp - the libtorch C++ peers of bench_train and bench_serve
// (no Python in the loop: the fairest peer for a C library). Built only when
// CMake finds Torch (Debian's libtorch-dev). The same models, data shapes,
// step and request as the C benches, the same JSON fields with
// "impl":"libtorch":
//   train: 784-256-256-10 at batch 64 and 784-1024-1024-10 at batch 256,
//          forward + cross-entropy + zero_grad + backward + Adam or SGD step,
//          intra-op threads from --threads (at::set_num_threads); best window
//          of >= 5 steps and ~0.3 s. OpenBLAS's thread count is fixed when it
//          loads: run it with OPENBLAS_NUM_THREADS set (run_sched.sh tries
//          every split of the cores) and the line reports it.
//   serve: K std::threads (1, 2, 4) each answering requests of batch 1 and
//          64 (forward, softmax, the result read back) under InferenceMode on
//          one shared model, each thread's intra-op pool at 1 thread (the
//          best setting for K >= 1 request threads on 2 cores, measured);
//          requests/s, p50, p99.
// Usage: bench_torch [train|serve|all] [--seconds S] [--threads 1,2] (--help)
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <getopt.h>
#include <string>
#include <thread>
#include <vector>

static double now() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

struct MLP : torch::nn::Module {
    torch::nn::Linear l1{nullptr}, l2{nullptr}, l3{nullptr};
    MLP(int64_t a, int64_t b, int64_t c, int64_t d) {
        l1 = register_module("l1", torch::nn::Linear(a, b));
        l2 = register_module("l2", torch::nn::Linear(b, c));
        l3 = register_module("l3", torch::nn::Linear(c, d));
    }
    torch::Tensor forward(torch::Tensor x) {
        return l3->forward(torch::relu(l2->forward(torch::relu(l1->forward(x)))));
    }
};

static void train(int64_t h, int64_t batch, bool sgd, int threads) {
    at::set_num_threads(threads);
    torch::manual_seed(1);
    MLP m(784, h, h, 10);
    auto x = torch::randn({batch, 784});
    auto y = torch::arange(batch, torch::kLong).mul(7).add(3).remainder(10);
    std::unique_ptr<torch::optim::Optimizer> opt;
    if (sgd) opt.reset(new torch::optim::SGD(m.parameters(), torch::optim::SGDOptions(1e-2)));
    else opt.reset(new torch::optim::Adam(m.parameters(), torch::optim::AdamOptions(1e-3)));
    auto step = [&] {
        auto loss = torch::nn::functional::cross_entropy(m.forward(x), y);
        opt->zero_grad();
        loss.backward();
        opt->step();
        return loss.item<float>();
    };
    double t_warm = now() + 0.2;
    for (int i = 0; i < 5 || now() < t_warm; i++) step();
    double best = 1e30;
    for (int w = 0; w < 5; w++) {
        int steps = 0;
        double t0 = now(), t_end = t0 + 0.3;
        do {
            step();
            steps++;
        } while (steps < 5 || now() < t_end);
        best = std::min(best, (now() - t0) / steps);
    }
    std::printf("{\"bench\":\"train\",\"impl\":\"libtorch\",\"model\":\"784-%lld-%lld-10\","
                "\"batch\":%lld,\"optim\":\"%s\",\"torch_threads\":%d,\"blas_threads\":\"%s\","
                "\"ms_per_step\":%.4f,\"samples_per_s\":%.1f}\n",
                (long long)h, (long long)h, (long long)batch, sgd ? "sgd" : "adam", threads,
                std::getenv("OPENBLAS_NUM_THREADS") ? std::getenv("OPENBLAS_NUM_THREADS") : "",
                best * 1e3, batch / best);
    std::fflush(stdout);
}

static void serve(int K, int64_t batch, double seconds, double *base) {
    at::set_num_threads(1);
    torch::manual_seed(1);
    MLP m(784, 256, 256, 10);
    std::vector<std::vector<double>> lat(K);
    std::atomic<int> ready{0};
    std::vector<std::thread> th;
    for (int k = 0; k < K; k++)
        th.emplace_back([&, k] {
            at::set_num_threads(1);
            c10::InferenceMode guard;
            auto x = torch::randn({batch, 784});
            float sink = 0;
            auto req = [&] {
                auto p = torch::softmax(m.forward(x), 1).contiguous();
                sink += p.data_ptr<float>()[0];
            };
            for (int i = 0; i < 200; i++) req();
            ready++;
            while (ready.load() < K) {
            }
            double t_end = now() + seconds;
            for (;;) {
                double t0 = now();
                req();
                double t1 = now();
                lat[k].push_back(t1 - t0);
                if (t1 >= t_end) break;
            }
            if (sink != sink) std::fprintf(stderr, "NaN\n");
        });
    for (auto &t : th) t.join();
    std::vector<double> all;
    double span = 0;
    for (auto &l : lat) {
        double s = 0;
        for (double v : l) s += v;
        span = std::max(span, s);
        all.insert(all.end(), l.begin(), l.end());
    }
    std::sort(all.begin(), all.end());
    double rps = all.size() / span;
    if (K == 1) *base = rps;
    std::printf("{\"bench\":\"serve\",\"impl\":\"libtorch\",\"model\":\"784-256-256-10\","
                "\"batch\":%lld,\"request_threads\":%d,\"requests_per_s\":%.0f,\"p50_us\":%.1f,"
                "\"p99_us\":%.1f,\"speedup_vs_1\":%.3f}\n",
                (long long)batch, K, rps, all[all.size() / 2] * 1e6,
                all[(size_t)(0.99 * (all.size() - 1))] * 1e6, *base > 0 ? rps / *base : 0.0);
    std::fflush(stdout);
}

static void usage(FILE *f) {
    std::fprintf(f,
                 "usage: bench_torch [train|serve|all] [options]   (--opt VALUE or --opt=VALUE)\n"
                 "  train|serve|all   what to run (default all)\n"
                 "  --seconds S       serving time per point, > 0 (default 1)\n"
                 "  --threads LIST    training intra-op threads, comma-separated (default 1,2)\n"
                 "  -h, --help        this text\n");
}

// A comma-separated list of thread counts >= 1, or false.
static bool parse_threads(const char *s, std::vector<int> *out) {
    out->clear();
    while (*s) {
        char *end;
        long v = std::strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096 || (*end && *end != ',')) return false;
        out->push_back((int)v);
        s = *end ? end + 1 : end;
    }
    return !out->empty();
}

int main(int argc, char **argv) {
    double seconds = 1.0;
    std::vector<int> threads = {1, 2};
    static const struct option longs[] = {{"seconds", required_argument, nullptr, 's'},
                                          {"threads", required_argument, nullptr, 't'},
                                          {"help", no_argument, nullptr, 'h'},
                                          {nullptr, 0, nullptr, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, nullptr)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 's': {
            char *end;
            seconds = std::strtod(optarg, &end);
            if (*end || end == optarg || !(seconds > 0)) {
                std::fprintf(stderr, "bench_torch: --seconds needs a number > 0, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        }
        case 't':
            if (!parse_threads(optarg, &threads)) {
                std::fprintf(stderr, "bench_torch: --threads needs a list like 1,2, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        default: usage(stderr); return 2;
        }
    }
    std::string what = optind < argc ? argv[optind++] : "all";
    if ((what != "train" && what != "serve" && what != "all") || optind < argc) {
        usage(stderr);
        return 2;
    }
    if (what != "serve")
        for (int cfg = 0; cfg < 2; cfg++)
            for (int sgd = 0; sgd <= 1; sgd++)
                for (int t : threads) train(cfg ? 1024 : 256, cfg ? 256 : 64, sgd, t);
    if (what != "train")
        for (int64_t b : {1, 64}) {
            double base = 0;
            for (int K : {1, 2, 4}) serve(K, b, seconds, &base);
        }
    return 0;
}
