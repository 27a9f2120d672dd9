#pragma once
// Garbage collection of owned objects, as Kubernetes' garbage collector does
// it for ownerReferences:
//   - Background: once every owner of an object is gone, the object is deleted
//     (and, in turn, its own dependents);
//   - Foreground: an owner carrying the `foregroundDeletion` finalizer (set by
//     a delete with propagationPolicy=Foreground) has its dependents deleted
//     first, and its finalizer removed when none is left;
//   - Orphan: an owner carrying the `orphan` finalizer has its reference
//     removed from every dependent, then the finalizer.
// Level-based: each pass reads the whole current state (no event is trusted),
// so a missed wake-up is repaired by the next periodic pass. The controller
// issue moves this onto informer caches; the semantics stay.
//
// Thread-safety: Start/Stop from one thread; Wake() from any.
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/status.h"
#include "store/kinds.h"
#include "store/object_store.h"

namespace corral::api {

struct GarbageCollectorOptions {
  std::chrono::milliseconds interval{5000};  // periodic full pass
  std::chrono::milliseconds debounce{200};   // after a Wake()
};

class GarbageCollector {
 public:
  GarbageCollector(GarbageCollectorOptions options, store::ObjectStore& store,
                   const store::KindRegistry& kinds, prometheus::Registry& registry);
  ~GarbageCollector();

  void Start();
  void Stop();
  // Ask for a pass soon (after a delete).
  void Wake();
  // One pass now; returns how many objects it changed or deleted.
  common::Result<int> RunOnce();

 private:
  void Loop();

  GarbageCollectorOptions options_;
  store::ObjectStore& store_;
  const store::KindRegistry& kinds_;
  prometheus::Counter& deleted_;
  prometheus::Counter& orphaned_;
  prometheus::Counter& passes_failed_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;      // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace corral::api
