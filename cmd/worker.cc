// `corral worker`: the data-plane agent on each machine of the fleet.
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

#include "cmd/commands.h"
#include "common/clock.h"
#include "common/logging.h"
#include "worker/agent.h"
#include "worker/inference_api.h"
#include "worker/kube_client.h"
#include "worker/sim_engine.h"
#ifdef CORRAL_HAVE_LLAMACPP
#include "worker/llamacpp_engine.h"
#endif

namespace corral::cmd {

namespace {

struct WorkerFlags {
  std::string server = "https://127.0.0.1:6443";
  std::string token_file;
  std::string ca_file;
  bool insecure_skip_verify = false;
  std::string name;
  std::string listen = "127.0.0.1:8081";
  std::string advertise_address;
  std::string cache_dir;
  std::vector<std::string> labels;
  int gpus = -1;
  int64_t gpu_memory_bytes = 0;
  int lease_seconds = 15;
  int drain_grace_seconds = 60;
  std::string log_level = "info";
};

int RunWorker(const WorkerFlags& f) {
  if (auto s = common::SetupLogging(f.log_level); !s.ok()) {
    std::fprintf(stderr, "corral worker: %s\n", s.message().c_str());
    return 2;
  }
  BlockShutdownSignals();
  std::ifstream in(f.token_file);
  std::string token;
  std::getline(in, token);
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) {
    spdlog::error("corral worker: no token in --token-file {}", f.token_file);
    return 2;
  }
  worker::WorkerOptions wo;
  wo.name = f.name;
  wo.endpoint = "http://" + (f.advertise_address.empty() ? f.listen : f.advertise_address);
  for (const auto& l : f.labels) {
    const auto eq = l.find('=');
    if (eq == std::string::npos) {
      spdlog::error("corral worker: --label {}: expected KEY=VALUE", l);
      return 2;
    }
    wo.labels[l.substr(0, eq)] = l.substr(eq + 1);
  }
  wo.cache_dir = f.cache_dir;
  wo.gpus = f.gpus;
  wo.gpu_memory_bytes = f.gpu_memory_bytes;
  wo.lease_duration = std::chrono::seconds(f.lease_seconds);
  wo.lease_renew = std::chrono::seconds(std::max(1, f.lease_seconds / 3));
  wo.drain_grace = std::chrono::seconds(f.drain_grace_seconds);

  common::RealClock clock;
  prometheus::Registry registry;
  worker::KubeClient client({f.server, token, f.ca_file, f.insecure_skip_verify});
  worker::SimScheduler scheduler(clock);
  std::vector<std::pair<std::string, std::string>> versions = {{"sim", CORRAL_VERSION}};
#ifdef CORRAL_HAVE_LLAMACPP
  versions.emplace_back("llamacpp", worker::LlamaCppEngine(clock).version());
#endif
  auto engines = [&scheduler, &clock,
                  &f](const std::string& name) -> common::Result<std::unique_ptr<worker::Engine>> {
    if (name == "sim") return std::unique_ptr<worker::Engine>(new worker::SimEngine(scheduler));
#ifdef CORRAL_HAVE_LLAMACPP
    if (name == "llamacpp") {
      worker::LlamaCppOptions lo;
      lo.cache_dir = f.cache_dir;
      return std::unique_ptr<worker::Engine>(new worker::LlamaCppEngine(clock, lo));
    }
#else
    (void)clock;
    (void)f;
#endif
    return common::NotFound("this worker was built without the " + name + " engine");
  };
  worker::Agent agent(wo, client, engines, versions, clock, registry);
  worker::InferenceServerOptions io;
  io.listen = f.listen;
  worker::InferenceServer server(io, agent.table(), clock, registry);
  if (auto s = server.Start(); !s.ok()) {
    spdlog::error("{}", s.ToString());
    return 1;
  }
  if (auto s = agent.Start(); !s.ok()) {
    spdlog::error("corral worker: {}", s.ToString());
    server.Stop();
    return 1;
  }
  spdlog::info("corral worker ready name={} endpoint={} server={}", wo.name, wo.endpoint, f.server);
  const int sig = WaitForShutdown();
  spdlog::info("corral worker: signal {} received, draining", sig);
  agent.Stop();
  server.Stop();
  return 0;
}

}  // namespace

Runner RegisterWorker(CLI::App& app) {
  auto f = std::make_shared<WorkerFlags>();
  CLI::App* sub = app.add_subcommand("worker", "Run the data-plane agent on this machine");
  sub->add_option("--server", f->server, "API server URL")->capture_default_str();
  sub->add_option("--token-file", f->token_file, "File holding this node's bearer token")
      ->required();
  sub->add_option("--ca-file", f->ca_file,
                  "CA certificate (PEM) of the API server (its data dir's tls/ca.crt)");
  sub->add_flag("--insecure-skip-tls-verify", f->insecure_skip_verify,
                "Do not verify the server's certificate (development only)");
  sub->add_option("--name", f->name, "Node name (the node token's user)")->required();
  sub->add_option("--listen", f->listen, "HOST:PORT of the OpenAI/Ollama endpoints")
      ->capture_default_str();
  sub->add_option("--advertise-address", f->advertise_address,
                  "HOST:PORT others use to reach the endpoints (default: --listen)");
  sub->add_option("--cache-dir", f->cache_dir, "Directory of local model files (*.gguf)");
  sub->add_option("--label", f->labels, "Node label KEY=VALUE (repeatable)");
  sub->add_option("--gpus", f->gpus, "GPUs to report (-1: detect with nvidia-smi)")
      ->capture_default_str();
  sub->add_option("--gpu-memory-bytes", f->gpu_memory_bytes, "Memory per GPU with --gpus");
  sub->add_option("--lease-seconds", f->lease_seconds, "Lease duration (renewed every third of it)")
      ->check(CLI::Range(3, 3600))
      ->capture_default_str();
  sub->add_option("--drain-grace-seconds", f->drain_grace_seconds,
                  "Longest wait for in-flight requests when a replica is removed")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  sub->add_option("--log-level", f->log_level, "trace|debug|info|warn|error")
      ->capture_default_str();
  return [f] { return RunWorker(*f); };
}

}  // namespace corral::cmd
