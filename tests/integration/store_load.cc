// A separate process that drives a store, so tests can check behaviour across
// several Corral processes writing at once. Prints one JSON line of results.
//
//   store_load cas   --dsn D --name N --threads T --iterations I
//       read-modify-write increments of spec.counter on Model default/N.
//   store_load write --dsn D --prefix P --count C
//       creates C Models named P-0..P-(C-1) in namespace "load".
//   store_load churn --dsn D --prefix P --count C --keys K --seed S
//       C random creates, updates and deletes of Models P-0..P-(K-1) in
//       namespace "churn" (errors such as AlreadyExists are part of the mix).
#include <prometheus/registry.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <random>
#include <thread>

#include "common/clock.h"
#include "common/logging.h"
#include "store/postgres_store.h"

using namespace corral;

int main(int argc, char** argv) {
  CLI::App app{"store load generator for tests"};
  std::string dsn, name = "counter", prefix = "w";
  int threads = 8, iterations = 100, count = 1000;
  app.add_option("--dsn", dsn)->required();
  CLI::App* cas = app.add_subcommand("cas");
  cas->add_option("--name", name);
  cas->add_option("--threads", threads);
  cas->add_option("--iterations", iterations);
  CLI::App* write = app.add_subcommand("write");
  write->add_option("--prefix", prefix);
  write->add_option("--count", count);
  int keys = 20;
  unsigned seed = 1;
  CLI::App* churn = app.add_subcommand("churn");
  churn->add_option("--prefix", prefix);
  churn->add_option("--count", count);
  churn->add_option("--keys", keys);
  churn->add_option("--seed", seed);
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  (void)common::SetupLogging("warn");

  prometheus::Registry registry;
  common::RealClock clock;
  const auto kinds = store::KindRegistry::Default();
  store::PostgresStoreOptions o;
  o.pool.dsn = dsn;
  o.pool.application_name = "corral-store-load";
  o.pool.min_size = 1;
  o.pool.max_size = std::max(threads, 2);
  o.compaction.enabled = false;
  store::PostgresStore st(o, kinds, clock, registry);
  if (auto s = st.Start(); !s.ok()) {
    std::cerr << "start: " << s.ToString() << "\n";
    return 1;
  }

  if (churn->parsed()) {
    std::mt19937 rng(seed);
    int64_t writes = 0, other = 0;
    for (int i = 0; i < count; ++i) {
      const std::string name = prefix + "-" + std::to_string(rng() % keys);
      const store::ObjectKey key{"Model", "churn", name};
      common::Status s;
      switch (rng() % 3) {
        case 0: {
          nlohmann::json obj = {{"apiVersion", "corral.dev/v1alpha1"},
                                {"kind", "Model"},
                                {"metadata", {{"name", name}, {"namespace", "churn"}}},
                                {"spec", {{"i", i}}}};
          s = st.Create(obj).status();
          break;
        }
        case 1: {
          auto cur = st.Get(key);
          if (!cur.ok()) {
            s = cur.status();
            break;
          }
          nlohmann::json next = cur->body;
          next["spec"]["i"] = i;
          s = st.Update(next).status();
          break;
        }
        default: s = st.Delete(key).status();
      }
      const auto c = s.code();
      if (s.ok()) {
        ++writes;
      } else if (c != common::Code::kAlreadyExists && c != common::Code::kNotFound &&
                 c != common::Code::kConflict) {
        ++other;
        std::cerr << "churn: " << s.ToString() << "\n";
      }
    }
    std::cout << nlohmann::json{{"writes", writes}, {"other", other}}.dump() << std::endl;
    return other == 0 ? 0 : 1;
  }

  if (cas->parsed()) {
    std::atomic<int64_t> ok{0}, conflicts{0}, other{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (int i = 0; i < iterations; ++i) {
          auto cur = st.Get({"Model", "default", name});
          if (!cur.ok()) {
            ++other;
            std::cerr << "get: " << cur.status().ToString() << "\n";
            continue;
          }
          nlohmann::json next = cur->body;
          next["spec"]["counter"] = next["spec"].value("counter", int64_t{0}) + 1;
          auto r = st.Update(next);
          if (r.ok()) {
            ++ok;
          } else if (r.status().code() == common::Code::kConflict) {
            ++conflicts;
          } else {
            ++other;
            std::cerr << "update: " << r.status().ToString() << "\n";
          }
        }
      });
    }
    for (auto& t : pool) t.join();
    std::cout << nlohmann::json{{"ok", ok.load()},
                                {"conflicts", conflicts.load()},
                                {"other", other.load()}}
                     .dump()
              << std::endl;
    return 0;
  }

  int64_t ok = 0, errors = 0;
  for (int i = 0; i < count; ++i) {
    nlohmann::json obj = {
        {"apiVersion", "corral.dev/v1alpha1"},
        {"kind", "Model"},
        {"metadata", {{"name", prefix + "-" + std::to_string(i)}, {"namespace", "load"}}},
        {"spec", {{"engine", "sim"}, {"i", i}}}};
    auto r = st.Create(obj);
    if (r.ok()) {
      ++ok;
    } else {
      ++errors;
      std::cerr << "create: " << r.status().ToString() << "\n";
    }
  }
  std::cout << nlohmann::json{{"ok", ok}, {"errors", errors}}.dump() << std::endl;
  return errors == 0 ? 0 : 1;
}
