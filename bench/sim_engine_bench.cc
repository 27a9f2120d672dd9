// How many simulated replicas (sim engines) one process sustains on one core
// at real time, and the memory of an idle one.
//
// Every replica runs a full decode batch (--sequences streams that never
// finish during the run) on one shared SimScheduler, on a RealClock, with the
// process pinned to one CPU. For N = 25, 50, 100, ... replicas it counts the
// tokens delivered to the callbacks over --seconds of wall time and divides
// by what the timing model says N replicas produce in that time (N x
// sequences / step seconds). The ratio stays 1.0 while the core keeps up and
// falls when it cannot; the run stops at the first N below --target.
//
// RSS per idle replica: VmRSS before and after creating and loading --idle
// engines with no requests, divided by --idle.
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "worker/sim_engine.h"

namespace {

using corral::worker::GenerateEvent;
using corral::worker::GenerateRequest;
using corral::worker::ModelSpec;
using corral::worker::SimEngine;
using corral::worker::SimEngineOptions;
using corral::worker::SimScheduler;

int64_t RssBytes() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      int64_t kib = 0;
      in >> kib;
      return kib * 1024;
    }
    std::getline(in, key);
  }
  return 0;
}

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sim engine: replicas sustained on one core at real time, RSS per idle replica"};
  double seconds = 2.0, warmup = 0.5, step_ms = 20, per_seq_ms = 0.5, target = 0.95;
  int sequences = 8, max_replicas = 12800, idle = 1000, cpu = -1;
  app.add_option("--seconds", seconds, "measured wall time per replica count");
  app.add_option("--warmup", warmup, "wall time before measuring");
  app.add_option("--sequences", sequences, "concurrent streams per replica (its batch)");
  app.add_option("--step-ms", step_ms, "decodeStepSeconds, in ms");
  app.add_option("--per-seq-ms", per_seq_ms, "decodeStepSecondsPerSequence, in ms");
  app.add_option("--max-replicas", max_replicas, "stop doubling here");
  app.add_option("--target", target, "the achieved/modelled ratio that counts as sustained");
  app.add_option("--idle", idle, "idle replicas for the RSS figure");
  app.add_option("--cpu", cpu, "CPU to pin to (-1: the first one allowed)");
  CLI11_PARSE(app, argc, argv);

  // One core for the whole process (the scheduler thread inherits it).
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu < 0) {
    cpu_set_t allowed;
    sched_getaffinity(0, sizeof allowed, &allowed);
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &allowed)) {
        cpu = c;
        break;
      }
    }
  }
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) std::perror("sched_setaffinity");

  corral::common::RealClock clock;
  nlohmann::json sim = {{"loadSeconds", 0},
                        {"prefillSecondsPerToken", 0.0001},
                        {"decodeStepSeconds", step_ms / 1000},
                        {"decodeStepSecondsPerSequence", per_seq_ms / 1000},
                        {"decodeStepSecondsPerContextToken", 0},
                        {"maxSequences", sequences}};
  ModelSpec spec;
  spec.name = "bench";
  spec.engine = "sim";
  spec.source = "sim://bench";
  spec.context_length = 1 << 17;
  spec.sim = sim;
  SimEngineOptions options;
  options.eos_probability = 0;
  std::atomic<bool> no_cancel{false};

  // --- RSS per idle replica ---------------------------------------------
  {
    SimScheduler scheduler(clock);
    std::vector<std::unique_ptr<SimEngine>> engines;
    engines.reserve(idle);
    const int64_t before = RssBytes();
    for (int i = 0; i < idle; ++i) {
      engines.push_back(std::make_unique<SimEngine>(scheduler, options));
      if (!engines.back()->Load(spec, nullptr, no_cancel).ok()) return 1;
    }
    const int64_t after = RssBytes();
    std::printf("idle replicas: %d, RSS %.1f MiB -> %.1f MiB: %.1f KiB per idle replica\n", idle,
                before / 1048576.0, after / 1048576.0,
                static_cast<double>(after - before) / idle / 1024.0);
  }

  // --- replicas sustained at real time ----------------------------------
  const auto model = corral::worker::SimTimingModel::FromSpec(spec);
  const double step_s = model->StepSeconds(0, sequences, 0);
  const double per_replica = sequences / step_s;
  std::printf("pinned to CPU %d; each replica: %d streams, step %.2f ms, modelled %.0f tokens/s\n",
              cpu, sequences, step_s * 1000, per_replica);
  std::printf("%9s %14s %14s %7s %6s\n", "replicas", "modelled tok/s", "achieved tok/s", "ratio",
              "cpu");
  int sustained = 0;
  for (int n = 25; n <= max_replicas; n *= 2) {
    std::atomic<int64_t> tokens{0};
    double ratio = 0;
    {
      SimScheduler scheduler(clock);
      std::vector<std::unique_ptr<SimEngine>> engines;
      std::vector<std::shared_ptr<corral::worker::Generation>> gens;
      for (int i = 0; i < n; ++i) {
        engines.push_back(std::make_unique<SimEngine>(scheduler, options));
        if (!engines.back()->Load(spec, nullptr, no_cancel).ok()) return 1;
      }
      // Spread the replicas' step phases over one step, as unsynchronised
      // replicas would be.
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; ++i) {
        std::this_thread::sleep_until(t0 + std::chrono::duration<double>(step_s * i / n));
        for (int s = 0; s < sequences; ++s) {
          GenerateRequest r;
          r.prompt = "bench " + std::to_string(s);
          r.sampling.max_tokens = 100000;
          auto g = engines[i]->Submit(std::move(r), [&tokens](const GenerateEvent& e) {
            if (!e.done) tokens.fetch_add(1, std::memory_order_relaxed);
          });
          if (!g.ok()) {
            std::fprintf(stderr, "submit: %s\n", g.status().ToString().c_str());
            return 1;
          }
          gens.push_back(*g);
        }
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(warmup));
      const int64_t tok0 = tokens.load();
      const double cpu0 = CpuSeconds();
      const auto w0 = std::chrono::steady_clock::now();
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      const int64_t tok1 = tokens.load();
      const double cpu1 = CpuSeconds();
      const double wall =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
      const double achieved = static_cast<double>(tok1 - tok0) / wall;
      const double modelled = per_replica * n;
      ratio = achieved / modelled;
      std::printf("%9d %14.0f %14.0f %7.3f %5.0f%%\n", n, modelled, achieved, ratio,
                  100 * (cpu1 - cpu0) / wall);
      std::fflush(stdout);
      engines.clear();  // Unload: cancels the streams
    }
    if (ratio < target) break;
    sustained = n;
  }
  std::printf("sustained at ratio >= %.2f on one core: %d replicas (%d concurrent streams)\n",
              target, sustained, sustained * sequences);
  return 0;
}
