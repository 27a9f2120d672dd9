#include "api/gc.h"

#include <spdlog/spdlog.h>

#include "common/clock.h"

#include <set>
#include <unordered_map>

namespace corral::api {

using common::Code;
using common::Result;
using nlohmann::json;

GarbageCollector::GarbageCollector(GarbageCollectorOptions options, store::ObjectStore& store,
                                   const store::KindRegistry& kinds, prometheus::Registry& registry)
    : options_(options),
      store_(store),
      kinds_(kinds),
      deleted_(prometheus::BuildCounter()
                   .Name("corral_gc_deleted_objects_total")
                   .Help("Objects deleted by the garbage collector (owners gone or foreground)")
                   .Register(registry)
                   .Add({})),
      orphaned_(prometheus::BuildCounter()
                    .Name("corral_gc_orphaned_objects_total")
                    .Help("Dependents whose ownerReference was removed (Orphan policy)")
                    .Register(registry)
                    .Add({})),
      passes_failed_(prometheus::BuildCounter()
                         .Name("corral_gc_pass_failures_total")
                         .Help("Garbage-collection passes that stopped on a store error")
                         .Register(registry)
                         .Add({})) {}

GarbageCollector::~GarbageCollector() { Stop(); }

void GarbageCollector::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void GarbageCollector::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void GarbageCollector::Wake() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void GarbageCollector::Loop() {
  while (true) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, options_.interval, [this] { return wake_ || stopping_; });
      if (stopping_) return;
      if (wake_) {
        // Let a burst of deletes settle into one pass.
        cv_.wait_for(lock, options_.debounce, [this] { return stopping_; });
        if (stopping_) return;
      }
      wake_ = false;
    }
    // Repeat while passes make progress (a chain of owners unwinds in a few).
    for (int i = 0; i < 16; ++i) {
      auto changed = RunOnce();
      if (!changed.ok()) {
        passes_failed_.Increment();
        spdlog::warn("gc: pass failed: {}", changed.status().ToString());
        break;
      }
      if (*changed == 0) break;
    }
  }
}

namespace {

const json& Meta(const json& o) {
  static const json kEmpty = json::object();
  auto it = o.find("metadata");
  return it != o.end() && it->is_object() ? *it : kEmpty;
}

bool HasFinalizer(const json& o, const std::string& f) {
  const json& m = Meta(o);
  auto it = m.find("finalizers");
  if (it == m.end() || !it->is_array()) return false;
  for (const auto& x : *it) {
    if (x == f) return true;
  }
  return false;
}

}  // namespace

Result<int> GarbageCollector::RunOnce() {
  struct Item {
    const store::KindInfo* kind;
    json body;
  };
  std::vector<Item> all;
  std::unordered_map<std::string, size_t> by_uid;
  for (const auto& k : kinds_.kinds()) {
    store::ListOptions lo;
    lo.kind = k.kind;
    auto list = store_.List(lo);
    if (!list.ok()) return list.status();
    for (auto& o : list->items) {
      const std::string uid = Meta(o.body).value("uid", "");
      all.push_back({&k, std::move(o.body)});
      if (!uid.empty()) by_uid[uid] = all.size() - 1;
    }
  }
  // Dependents of each owner uid.
  std::unordered_map<std::string, std::vector<size_t>> dependents;
  for (size_t i = 0; i < all.size(); ++i) {
    const json& m = Meta(all[i].body);
    if (auto refs = m.find("ownerReferences"); refs != m.end() && refs->is_array()) {
      for (const auto& r : *refs) {
        if (r.is_object() && r.value("uid", json()).is_string()) {
          dependents[r["uid"].get<std::string>()].push_back(i);
        }
      }
    }
  }
  int changed = 0;
  auto key_of = [](const Item& it) {
    const json& m = Meta(it.body);
    return store::ObjectKey{it.kind->kind, it.kind->namespaced ? m.value("namespace", "") : "",
                            m.value("name", "")};
  };
  auto delete_item = [&](const Item& it) -> common::Status {
    const json& m = Meta(it.body);
    if (m.contains("deletionTimestamp")) return common::Status::Ok();  // already on its way
    auto fins = m.value("finalizers", json::array());
    if (!fins.empty()) {
      json next = it.body;
      next["metadata"]["deletionTimestamp"] =
          common::FormatRfc3339(std::chrono::system_clock::now());
      auto w = store_.Update(next);
      if (!w.ok() && w.status().code() != Code::kNotFound && w.status().code() != Code::kConflict) {
        return w.status();
      }
      ++changed;
      return common::Status::Ok();
    }
    store::DeleteOptions d;
    d.uid = m.value("uid", "");
    auto gone = store_.Delete(key_of(it), d);
    if (!gone.ok() && gone.status().code() != Code::kNotFound &&
        gone.status().code() != Code::kConflict &&
        gone.status().code() != Code::kFailedPrecondition) {
      return gone.status();
    }
    if (gone.ok()) {
      deleted_.Increment();
      ++changed;
      spdlog::info("gc: deleted {} (owner gone)", key_of(it).ToString());
    }
    return common::Status::Ok();
  };
  // Removes `finalizer` from an owner; deletes it when none is left.
  auto finish_owner = [&](const Item& it, const std::string& finalizer) -> common::Status {
    json next = it.body;
    json fins = json::array();
    for (const auto& f : Meta(it.body).value("finalizers", json::array())) {
      if (f != finalizer) fins.push_back(f);
    }
    next["metadata"]["finalizers"] = fins;
    auto w = store_.Update(next);
    if (!w.ok()) {
      return w.status().code() == Code::kConflict || w.status().code() == Code::kNotFound
                 ? common::Status::Ok()
                 : w.status();
    }
    ++changed;
    if (fins.empty()) {
      store::DeleteOptions d;
      d.uid = Meta(it.body).value("uid", "");
      auto gone = store_.Delete(key_of(it), d);
      if (!gone.ok() && gone.status().code() != Code::kNotFound) return gone.status();
    }
    return common::Status::Ok();
  };

  // Only an unavailable store ends a pass; anything else about one object is
  // logged and the pass goes on (one odd object must not stall collection).
  auto check = [&](const common::Status& st, const Item& it) -> bool {
    if (st.ok()) return true;
    if (st.code() == Code::kUnavailable) return false;
    spdlog::warn("gc: {}: {}", key_of(it).ToString(), st.ToString());
    return true;
  };
#define CORRAL_GC_STEP(expr, item)           \
  do {                                       \
    const common::Status gc_st_ = (expr);    \
    if (!check(gc_st_, item)) return gc_st_; \
  } while (0)

  for (size_t i = 0; i < all.size(); ++i) {
    const Item& it = all[i];
    const json& m = Meta(it.body);
    const std::string uid = m.value("uid", "");
    // Owners being deleted.
    if (m.contains("deletionTimestamp")) {
      auto deps = dependents.find(uid);
      const bool has_deps = deps != dependents.end() && !deps->second.empty();
      if (HasFinalizer(it.body, "orphan")) {
        if (has_deps) {
          for (size_t d : deps->second) {
            json next = all[d].body;
            json refs = json::array();
            for (const auto& r : Meta(all[d].body)["ownerReferences"]) {
              if (r.value("uid", "") != uid) refs.push_back(r);
            }
            if (refs.empty())
              next["metadata"].erase("ownerReferences");
            else
              next["metadata"]["ownerReferences"] = refs;
            auto w = store_.Update(next);
            if (!w.ok() && w.status().code() != Code::kConflict &&
                w.status().code() != Code::kNotFound) {
              CORRAL_GC_STEP(w.status(), all[d]);
            }
            if (w.ok()) {
              orphaned_.Increment();
              ++changed;
            }
          }
        } else {
          CORRAL_GC_STEP(finish_owner(it, "orphan"), it);
        }
        continue;
      }
      if (HasFinalizer(it.body, "foregroundDeletion")) {
        if (has_deps) {
          for (size_t d : deps->second) CORRAL_GC_STEP(delete_item(all[d]), all[d]);
        } else {
          CORRAL_GC_STEP(finish_owner(it, "foregroundDeletion"), it);
        }
      }
      continue;
    }
    // Dependents whose every owner is gone (verified by a live read: the
    // snapshot may predate an owner created since).
    auto refs = m.find("ownerReferences");
    if (refs == m.end() || !refs->is_array() || refs->empty()) continue;
    // Like Kubernetes' collector, an owner that cannot be verified (a kind or
    // API version Corral does not serve, or a reference that cannot name an
    // object, such as a namespaced owner of a cluster-scoped dependent)
    // keeps the dependent: deleting on doubt would lose data.
    bool any_owner = false;
    for (const auto& r : *refs) {
      if (!r.is_object()) {
        any_owner = true;
        break;
      }
      const std::string ouid =
          r.value("uid", json()).is_string() ? r["uid"].get<std::string>() : "";
      if (by_uid.count(ouid)) {
        any_owner = true;
        break;
      }
      const std::string okind =
          r.value("kind", json()).is_string() ? r["kind"].get<std::string>() : "";
      const std::string oname =
          r.value("name", json()).is_string() ? r["name"].get<std::string>() : "";
      const std::string oav =
          r.value("apiVersion", json()).is_string() ? r["apiVersion"].get<std::string>() : "";
      const auto* ok = kinds_.Find(okind);
      if (!ok || ok->ApiVersion() != oav || oname.empty() || ouid.empty() ||
          (ok->namespaced && !it.kind->namespaced)) {
        any_owner = true;
        break;
      }
      auto live = store_.Get({ok->kind, ok->namespaced ? m.value("namespace", "") : "", oname});
      if (live.ok() && Meta(live->body).value("uid", "") == ouid) {
        any_owner = true;
        break;
      }
      if (!live.ok() && live.status().code() != Code::kNotFound) {
        if (live.status().code() == Code::kUnavailable) return live.status();
        any_owner = true;  // cannot tell: keep it
        break;
      }
    }
    if (!any_owner) CORRAL_GC_STEP(delete_item(it), it);
  }
#undef CORRAL_GC_STEP
  return changed;
}

}  // namespace corral::api
