// The corral.dev/v1alpha1 schema (and the core/v1 Event and
// coordination.k8s.io/v1 Lease that Corral serves): the one source of truth
// from which validation, defaulting, pruning, the OpenAPI documents, `kubectl
// explain` and docs/api.md's field tables are derived.
//
// Each literal is one JSON document. kDefinitions holds shared pieces (object
// metadata, conditions, references); a schema node {"$ref": "Name", ...}
// stands for a copy of definitions[Name] with the node's other keys
// (description, default) laid over it. The refs are resolved once at load
// (schema.cc), so everything downstream sees plain structural schemas.
//
// Each resource document carries what discovery and the store need (plural,
// singular, short names, categories, scope, field-selector fields,
// subresources) beside its schema, so kinds are declared in one place.
//
// Changing a field here changes the API: update docs/api.md too (a unit test
// fails when a field path is missing there).
#include <string_view>
#include <vector>

namespace corral::api::schema_data {

namespace {

constexpr std::string_view kDefinitions = R"json({
  "ApiVersion": {
    "type": "string",
    "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
  },
  "Kind": {
    "type": "string",
    "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
  },
  "Time": {
    "type": "string",
    "format": "date-time",
    "description": "An RFC 3339 time, e.g. 2026-01-02T15:04:05Z."
  },
  "OwnerReference": {
    "type": "object",
    "description": "OwnerReference contains enough information to let you identify an owning object. An owning object must be in the same namespace as the dependent, or be cluster-scoped, so there is no namespace field.",
    "required": ["apiVersion", "kind", "name", "uid"],
    "x-kubernetes-map-type": "atomic",
    "properties": {
      "apiVersion": {"type": "string", "description": "API version of the referent."},
      "kind": {"type": "string", "description": "Kind of the referent."},
      "name": {"type": "string", "description": "Name of the referent."},
      "uid": {"type": "string", "description": "UID of the referent."},
      "controller": {"type": "boolean", "description": "If true, this reference points to the managing controller."},
      "blockOwnerDeletion": {"type": "boolean", "description": "If true, and the owner has the \"foregroundDeletion\" finalizer, the owner cannot be deleted from the key-value store until this reference is removed."}
    }
  },
  "ManagedFieldsEntry": {
    "type": "object",
    "description": "ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the resource that the fieldset applies to.",
    "properties": {
      "manager": {"type": "string", "description": "Manager is an identifier of the workflow managing these fields."},
      "operation": {"type": "string", "description": "Operation is the type of operation which lead to this ManagedFieldsEntry being created. The only valid values for this field are 'Apply' and 'Update'."},
      "apiVersion": {"type": "string", "description": "APIVersion defines the version of this resource that this field set applies to."},
      "time": {"$ref": "Time", "description": "Time is the timestamp of when the ManagedFields entry was added."},
      "fieldsType": {"type": "string", "description": "FieldsType is the discriminator for the different fields format and version. There is currently only one possible value: \"FieldsV1\"."},
      "fieldsV1": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": "FieldsV1 holds the first JSON version format as described in the \"FieldsV1\" type."},
      "subresource": {"type": "string", "description": "Subresource is the name of the subresource used to update that object, or empty string if the object was updated through the main resource."}
    }
  },
  "ObjectMeta": {
    "type": "object",
    "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    "properties": {
      "name": {"type": "string", "description": "Name must be unique within a namespace (an RFC 1123 subdomain). Cannot be updated."},
      "generateName": {"type": "string", "description": "An optional prefix, used by the server to generate a unique name ONLY IF the Name field has not been provided."},
      "namespace": {"type": "string", "description": "Namespace defines the space within which each name must be unique. Empty for cluster-scoped kinds (Node). Taken from the request path; a different value in the body is rejected."},
      "selfLink": {"type": "string", "description": "Deprecated; not set by Corral."},
      "uid": {"type": "string", "description": "UID is the unique in time and space value for this object, set by the server on creation. Read-only."},
      "resourceVersion": {"type": "string", "description": "An opaque value that represents the internal version of this object, used for optimistic concurrency (an update with a stale value is rejected with 409 Conflict) and watches. Read-only."},
      "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state: 1 on create, +1 on every change outside metadata and status. Read-only."},
      "creationTimestamp": {"$ref": "Time", "nullable": true, "description": "When the server created the object (RFC 3339, UTC). Read-only."},
      "deletionTimestamp": {"$ref": "Time", "nullable": true, "description": "Set by the server when deletion was requested while finalizers remain; the object goes away once metadata.finalizers is empty. Read-only."},
      "deletionGracePeriodSeconds": {"type": "integer", "format": "int64", "nullable": true, "description": "Number of seconds allowed for this object to gracefully terminate before it is removed. Read-only."},
      "labels": {"type": "object", "nullable": true, "additionalProperties": {"type": "string"}, "description": "Map of string keys and values that can be used to organize and categorize (scope and select) objects: label selectors, node selectors."},
      "annotations": {"type": "object", "nullable": true, "additionalProperties": {"type": "string"}, "description": "Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata."},
      "ownerReferences": {"type": "array", "nullable": true, "items": {"$ref": "OwnerReference"}, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"], "description": "List of objects depended by this object. If ALL objects in the list have been deleted, this object will be garbage collected (Replicas are owned by their ModelDeployment)."},
      "finalizers": {"type": "array", "nullable": true, "items": {"type": "string"}, "x-kubernetes-list-type": "set", "description": "Must be empty before the object is deleted from the store. Each entry is an identifier for the responsible component that will remove the entry from the list."},
      "managedFields": {"type": "array", "nullable": true, "items": {"$ref": "ManagedFieldsEntry"}, "x-kubernetes-list-type": "atomic", "description": "Maps workflow-id and version to the set of fields that are managed by that workflow (server-side apply field ownership)."}
    }
  },
  "Condition": {
    "type": "object",
    "description": "One aspect of the object's current state, as Kubernetes conditions (metav1.Condition).",
    "required": ["type", "status"],
    "properties": {
      "type": {"type": "string", "minLength": 1, "maxLength": 316, "description": "Type of condition in CamelCase, e.g. Ready, Available, Progressing, ScalingLimited."},
      "status": {"type": "string", "enum": ["True", "False", "Unknown"], "description": "Status of the condition: True, False or Unknown."},
      "reason": {"type": "string", "maxLength": 1024, "description": "A programmatic identifier (CamelCase) for the reason of the condition's last transition."},
      "message": {"type": "string", "maxLength": 32768, "description": "A human readable message with details about the transition."},
      "lastTransitionTime": {"$ref": "Time", "description": "Last time the condition transitioned from one status to another."},
      "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0, "description": "The metadata.generation the condition was set based upon."}
    }
  },
  "Conditions": {
    "type": "array",
    "description": "Current state of the object, one entry per condition type.",
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
    "items": {"$ref": "Condition"}
  },
  "LocalObjectReference": {
    "type": "object",
    "description": "A reference to an object in the same namespace.",
    "required": ["name"],
    "x-kubernetes-map-type": "atomic",
    "properties": {
      "name": {"type": "string", "minLength": 1, "maxLength": 253, "description": "Name of the referent."}
    }
  },
  "ObjectReference": {
    "type": "object",
    "description": "A reference to any object (core/v1 ObjectReference).",
    "x-kubernetes-map-type": "atomic",
    "properties": {
      "kind": {"type": "string", "description": "Kind of the referent, e.g. ModelDeployment."},
      "namespace": {"type": "string", "description": "Namespace of the referent."},
      "name": {"type": "string", "description": "Name of the referent."},
      "uid": {"type": "string", "description": "UID of the referent."},
      "apiVersion": {"type": "string", "description": "API version of the referent."},
      "resourceVersion": {"type": "string", "description": "Specific resourceVersion to which this reference is made, if any."},
      "fieldPath": {"type": "string", "description": "If referring to a piece of an object instead of an entire object, a JSON path to it, e.g. spec.autoscaling."}
    }
  },
  "Gpu": {
    "type": "object",
    "description": "One GPU of a node.",
    "required": ["model", "memoryBytes"],
    "properties": {
      "model": {"type": "string", "description": "GPU model name as the driver reports it, e.g. NVIDIA H100 80GB HBM3."},
      "memoryBytes": {"type": "integer", "format": "int64", "minimum": 0, "description": "GPU memory in bytes."},
      "uuid": {"type": "string", "description": "Stable identifier of the device (nvidia-smi's GPU UUID), when known."}
    }
  },
  "NodeResources": {
    "type": "object",
    "description": "An amount of node resources.",
    "properties": {
      "cpu": {"type": "number", "minimum": 0, "description": "CPU cores (fractions allowed)."},
      "memoryBytes": {"type": "integer", "format": "int64", "minimum": 0, "description": "Main memory in bytes."},
      "gpus": {"type": "array", "items": {"$ref": "Gpu"}, "x-kubernetes-list-type": "atomic", "description": "The GPUs, one entry per device."}
    }
  },
  "Toleration": {
    "type": "object",
    "description": "Allows placement on nodes with a matching taint (core/v1 Toleration semantics).",
    "properties": {
      "key": {"type": "string", "description": "Taint key the toleration applies to; empty matches all keys (with operator Exists)."},
      "operator": {"type": "string", "enum": ["Exists", "Equal"], "default": "Equal", "description": "Exists matches any value; Equal matches value."},
      "value": {"type": "string", "description": "Taint value the toleration matches when operator is Equal."},
      "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"], "description": "Taint effect to match; empty matches all effects."}
    }
  },
  "ScalingPolicy": {
    "type": "object",
    "description": "A single rate policy for one scaling direction (as HPAScalingPolicy).",
    "required": ["type", "value", "periodSeconds"],
    "properties": {
      "type": {"type": "string", "enum": ["Pods", "Percent"], "description": "Pods: change by at most value replicas per period; Percent: by at most value percent of the current replicas per period."},
      "value": {"type": "integer", "format": "int32", "minimum": 1, "description": "The amount of change permitted by the policy; must be greater than zero."},
      "periodSeconds": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 1800, "description": "The window of time for which the policy holds (1 to 1800 seconds)."}
    }
  }
})json";

constexpr std::string_view kNode = R"json({
  "kind": "Node", "listKind": "NodeList", "group": "corral.dev", "version": "v1alpha1",
  "plural": "nodes", "singular": "node", "shortNames": ["cnode"], "categories": ["corral"],
  "namespaced": false, "selectableFields": ["spec.unschedulable"], "subresources": ["status"],
  "schema": {
    "type": "object",
    "description": "A worker machine of the fleet. Registered and kept alive by `corral worker`; its labels (metadata.labels) are what placement.nodeSelector matches.",
    "properties": {
      "apiVersion": {"$ref": "ApiVersion"},
      "kind": {"$ref": "Kind"},
      "metadata": {"$ref": "ObjectMeta"},
      "spec": {
        "type": "object",
        "default": {},
        "description": "Desired state of the node, set by operators.",
        "properties": {
          "unschedulable": {"type": "boolean", "default": false, "description": "When true, no new replica is placed on this node (cordon); running replicas stay."},
          "taints": {
            "type": "array",
            "x-kubernetes-list-type": "atomic",
            "description": "Taints keep replicas off this node unless their deployment tolerates them.",
            "items": {
              "type": "object",
              "description": "A taint on a node.",
              "required": ["key", "effect"],
              "properties": {
                "key": {"type": "string", "minLength": 1, "description": "The taint key."},
                "value": {"type": "string", "description": "The taint value."},
                "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"], "description": "NoSchedule: never place untolerating replicas; PreferNoSchedule: avoid it; NoExecute: also evict untolerating replicas already here."},
                "timeAdded": {"$ref": "Time", "description": "When the taint was added (NoExecute taints)."}
              }
            }
          }
        }
      },
      "status": {
        "type": "object",
        "description": "Observed state of the node, reported by its worker.",
        "properties": {
          "capacity": {"$ref": "NodeResources", "description": "Total resources of the machine."},
          "allocatable": {"$ref": "NodeResources", "description": "Resources available to replicas (capacity minus what the worker reserves). The scheduler places against this."},
          "conditions": {"$ref": "Conditions", "description": "Ready (True while the node's lease is renewed; False/Unknown when it lapsed) and other node conditions."},
          "address": {"type": "string", "description": "Base URL of the worker's HTTP API as other components reach it, e.g. http://10.0.0.5:8081."},
          "engines": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "description": "Inference engines this worker can run.",
            "items": {
              "type": "object",
              "description": "One supported engine.",
              "required": ["name"],
              "properties": {
                "name": {"type": "string", "description": "Engine name as in Model spec.engine: sim or llamacpp."},
                "version": {"type": "string", "description": "Engine version, e.g. the llama.cpp build tag."}
              }
            }
          },
          "cachedModels": {
            "type": "array",
            "x-kubernetes-list-type": "atomic",
            "description": "Model files already in the worker's local cache: placing a replica of one of these here needs no download (a warm start).",
            "items": {
              "type": "object",
              "description": "One cached model file.",
              "required": ["source"],
              "properties": {
                "source": {"type": "string", "description": "The Model spec.source the file was fetched from."},
                "sha256": {"type": "string", "description": "SHA-256 of the file (lower-case hex), when known."},
                "sizeBytes": {"type": "integer", "format": "int64", "minimum": 0, "description": "Size of the file in bytes."},
                "lastUsedTime": {"$ref": "Time", "description": "When a replica last loaded this file (least recently used files are evicted first)."}
              }
            }
          },
          "modelCache": {
            "type": "object",
            "description": "The worker's model cache directory.",
            "properties": {
              "capacityBytes": {"type": "integer", "format": "int64", "minimum": 0, "description": "Bytes the cache may use."},
              "usedBytes": {"type": "integer", "format": "int64", "minimum": 0, "description": "Bytes the cache uses now."}
            }
          },
          "replicas": {"type": "integer", "format": "int32", "minimum": 0, "description": "Number of replicas bound to this node."},
          "lastHeartbeatTime": {"$ref": "Time", "description": "Last time the worker reported in (its lease renewals also count; see the Lease of the same name)."},
          "nodeInfo": {
            "type": "object",
            "description": "Facts about the machine.",
            "properties": {
              "hostname": {"type": "string", "description": "The machine's host name."},
              "os": {"type": "string", "description": "Operating system, e.g. linux."},
              "architecture": {"type": "string", "description": "CPU architecture, e.g. amd64."},
              "kernelVersion": {"type": "string", "description": "Kernel version (uname -r)."},
              "workerVersion": {"type": "string", "description": "Version of `corral worker`."}
            }
          }
        }
      }
    }
  }
})json";

constexpr std::string_view kModel = R"json({
  "kind": "Model", "listKind": "ModelList", "group": "corral.dev", "version": "v1alpha1",
  "plural": "models", "singular": "model", "shortNames": ["mdl"], "categories": ["all", "corral"],
  "namespaced": true, "selectableFields": ["spec.engine"], "subresources": ["status"],
  "schema": {
    "type": "object",
    "description": "A model that can be served: where its weights come from, which engine runs it and what one replica needs.",
    "properties": {
      "apiVersion": {"$ref": "ApiVersion"},
      "kind": {"$ref": "Kind"},
      "metadata": {"$ref": "ObjectMeta"},
      "spec": {
        "type": "object",
        "description": "Desired state of the model.",
        "required": ["source", "engine"],
        "properties": {
          "source": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^(file|https?|sim)://", "description": "Where the weights come from: file:///models/x.gguf (a path on the worker), http(s)://... (downloaded into the worker's cache, verified against sha256 when given), or sim://NAME (the simulated engine; no file)."},
          "engine": {"type": "string", "enum": ["sim", "llamacpp"], "description": "The inference engine: sim (the simulated engine for tests, benchmarks and capacity planning) or llamacpp (real inference of GGUF files through llama.cpp). llamacpp cannot load a sim:// source."},
          "sha256": {"type": "string", "pattern": "^[a-f0-9]{64}$", "description": "Expected SHA-256 of the weights file (64 lower-case hex digits); a download that does not match fails."},
          "sizeBytes": {"type": "integer", "format": "int64", "minimum": 0, "description": "Size of the weights file in bytes, when known ahead (used for load progress and cache planning)."},
          "resources": {
            "type": "object",
            "description": "What one replica of this model needs on a node. The scheduler only places a replica where this much is free.",
            "properties": {
              "memoryBytes": {"type": "integer", "format": "int64", "minimum": 0, "description": "Main memory one replica needs, in bytes."},
              "gpuMemoryBytes": {"type": "integer", "format": "int64", "minimum": 0, "description": "GPU memory one replica needs, in bytes (0: runs on CPU)."},
              "cpu": {"type": "number", "minimum": 0, "description": "CPU cores one replica needs (fractions allowed)."}
            }
          },
          "contextLength": {"type": "integer", "format": "int32", "minimum": 1, "description": "Context window in tokens; unset: the model's own (llamacpp) or 4096 (sim). Requests that overflow it are rejected with 400."},
          "loadTimeHintSeconds": {"type": "number", "minimum": 0, "description": "Expected seconds from placement to Ready, used by the autoscaler until it has measured this model's real start-up time."},
          "sim": {
            "type": "object",
            "description": "Timing model and limits of the simulated engine (engine sim); ignored by other engines.",
            "properties": {
              "loadSeconds": {"type": "number", "minimum": 0, "description": "Simulated time to load the model."},
              "prefillSecondsPerToken": {"type": "number", "minimum": 0, "description": "Prefill time per prompt token."},
              "decodeStepSeconds": {"type": "number", "minimum": 0, "description": "Time of one decode step for a batch of one sequence."},
              "decodeStepSecondsPerSequence": {"type": "number", "minimum": 0, "description": "Added to a decode step per additional sequence in the batch."},
              "decodeStepSecondsPerContextToken": {"type": "number", "minimum": 0, "description": "Added to a decode step per token of context held by the batch's sequences."},
              "maxSequences": {"type": "integer", "format": "int32", "minimum": 1, "description": "Most sequences decoded together (continuous batching)."},
              "maxBatchedTokens": {"type": "integer", "format": "int32", "minimum": 1, "description": "Most tokens processed in one engine step."},
              "kvBlockTokens": {"type": "integer", "format": "int32", "minimum": 1, "default": 16, "description": "Tokens per KV-cache block (paged KV cache)."},
              "kvBlocks": {"type": "integer", "format": "int32", "minimum": 1, "description": "Number of KV-cache blocks; unset: derived from resources.memoryBytes."},
              "seed": {"type": "integer", "format": "int64", "description": "Seed of the generated text and timing jitter (the engine is deterministic for a seed)."}
            }
          },
          "llamacpp": {
            "type": "object",
            "description": "Settings of the llama.cpp engine (engine llamacpp); ignored by other engines.",
            "properties": {
              "gpuLayers": {"type": "integer", "format": "int32", "minimum": -1, "description": "Layers offloaded to the GPU; -1: all."},
              "threads": {"type": "integer", "format": "int32", "minimum": 1, "description": "CPU threads for generation; unset: the number of cores."},
              "batchSize": {"type": "integer", "format": "int32", "minimum": 1, "description": "Logical batch size (llama.cpp n_batch)."},
              "parallel": {"type": "integer", "format": "int32", "minimum": 1, "description": "Sequences decoded in parallel (continuous batching slots)."}
            }
          }
        }
      },
      "status": {
        "type": "object",
        "description": "Observed state of the model.",
        "properties": {
          "phase": {"type": "string", "enum": ["Pending", "Ready", "Failed"], "description": "Pending until the source was checked, Ready when replicas can load it, Failed when it cannot be used (see message)."},
          "message": {"type": "string", "description": "Why the model is in its phase, for people."},
          "cachedNodes": {"type": "integer", "format": "int32", "minimum": 0, "description": "Number of nodes whose cache holds the weights."},
          "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0, "description": "The metadata.generation this status describes."},
          "conditions": {"$ref": "Conditions"}
        }
      }
    }
  }
})json";

constexpr std::string_view kModelDeployment = R"json({
  "kind": "ModelDeployment", "listKind": "ModelDeploymentList", "group": "corral.dev", "version": "v1alpha1",
  "plural": "modeldeployments", "singular": "modeldeployment", "shortNames": ["md"], "categories": ["all", "corral"],
  "namespaced": true, "selectableFields": ["spec.modelRef.name"], "subresources": ["status", "scale"],
  "schema": {
    "type": "object",
    "description": "A served model: how many replicas (fixed or autoscaled), where they run, how requests are routed to them, under which name clients ask for it.",
    "properties": {
      "apiVersion": {"$ref": "ApiVersion"},
      "kind": {"$ref": "Kind"},
      "metadata": {"$ref": "ObjectMeta"},
      "spec": {
        "type": "object",
        "description": "Desired state of the deployment.",
        "required": ["modelRef"],
        "properties": {
          "modelRef": {"$ref": "LocalObjectReference", "description": "The Model (same namespace) to serve. Changing it replaces the replicas by a rolling update."},
          "servedName": {"type": "string", "minLength": 1, "maxLength": 253, "description": "The model name clients use in OpenAI and Ollama requests; unset: the deployment's name."},
          "replicas": {"type": "integer", "format": "int32", "minimum": 0, "default": 1, "description": "Number of replicas when autoscaling is off (the scale subresource sets it). With autoscaling on, status.desiredReplicas decides."},
          "strategy": {
            "type": "object",
            "default": {},
            "description": "How replicas are replaced when the Model or the deployment's template changes.",
            "properties": {
              "type": {"type": "string", "enum": ["RollingUpdate", "Recreate"], "default": "RollingUpdate", "description": "RollingUpdate replaces replicas a few at a time (within maxSurge/maxUnavailable); Recreate removes all old replicas before creating new ones."},
              "rollingUpdate": {
                "type": "object",
                "default": {},
                "description": "Limits of a rolling update (type RollingUpdate only).",
                "properties": {
                  "maxSurge": {"x-kubernetes-int-or-string": true, "pattern": "^[0-9]+%$", "default": "25%", "description": "Most replicas above the desired count during the update: a number or a percentage of the desired count (rounded up)."},
                  "maxUnavailable": {"x-kubernetes-int-or-string": true, "pattern": "^[0-9]+%$", "default": "25%", "description": "Most replicas below the desired count that may be not Ready during the update: a number or a percentage (rounded down). May not be 0 when maxSurge is 0."}
                }
              }
            }
          },
          "autoscaling": {
            "type": "object",
            "description": "Scale replicas on load between minReplicas and maxReplicas. Absent: a fixed spec.replicas.",
            "required": ["maxReplicas"],
            "properties": {
              "enabled": {"type": "boolean", "default": true, "description": "Turns autoscaling off without removing its settings."},
              "preset": {"type": "string", "enum": ["predictive", "hpa", "kpa"], "default": "predictive", "description": "Base policy whose defaults apply to every field not set here: predictive (Corral's: forecast-driven scale-up with HPA-style scale-down), hpa (the Kubernetes HorizontalPodAutoscaler's defaults: 15 s sync, tolerance 0.1, scale-down stabilization 300 s) or kpa (Knative's: 60 s stable and 6 s panic windows)."},
              "minReplicas": {"type": "integer", "format": "int32", "minimum": 0, "default": 1, "description": "Fewest replicas while there is traffic (scaleToZero decides about idle times). Must not exceed maxReplicas."},
              "maxReplicas": {"type": "integer", "format": "int32", "minimum": 1, "description": "Most replicas the autoscaler may ask for."},
              "metrics": {
                "type": "array",
                "minItems": 1,
                "default": [{"type": "Concurrency", "target": 8}],
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "description": "Signals to scale on, each with a per-replica target; with several, the largest recommendation wins (as the HPA does).",
                "items": {
                  "type": "object",
                  "description": "One signal and its per-replica target.",
                  "required": ["type", "target"],
                  "properties": {
                    "type": {"type": "string", "enum": ["Concurrency", "RequestsPerSecond", "OutputTokensPerSecond", "QueueLength", "KVCacheUtilization", "TimeToFirstToken"], "description": "Concurrency: requests in flight plus queued; RequestsPerSecond; OutputTokensPerSecond; QueueLength: queued requests; KVCacheUtilization: fraction of KV-cache blocks in use (0-1); TimeToFirstToken: seconds (p90 over the window)."},
                    "target": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "description": "Target value per replica, in the metric's unit."}
                  }
                }
              },
              "tolerance": {"type": "number", "minimum": 0, "maximum": 1, "description": "Relative deviation from the target that causes no scaling (HPA tolerance); unset: the preset's (0.1 for hpa and predictive, 0 for kpa)."},
              "windows": {
                "type": "object",
                "description": "Knative-style averaging windows: a stable window for normal decisions and a short panic window that reacts to bursts (while panicking the autoscaler never scales down).",
                "properties": {
                  "stableWindowSeconds": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 3600, "default": 60, "description": "Window the metrics are averaged over for normal decisions."},
                  "panicWindowSeconds": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 3600, "default": 6, "description": "Short window that detects bursts."},
                  "panicThreshold": {"type": "number", "minimum": 1, "default": 2.0, "description": "Panic starts when the panic-window load needs this many times the current replicas (2.0 = 200%)."}
                }
              },
              "behavior": {
                "type": "object",
                "description": "Per-direction scaling behaviour, with the Kubernetes HPA's field names and defaults (autoscaling/v2 HorizontalPodAutoscalerBehavior), plus cooldowns.",
                "properties": {
                  "scaleUp": {
                    "type": "object",
                    "default": {},
                    "description": "Rules for scaling up. Defaults: no stabilization, at most +100% or +4 replicas per 15 s, whichever is more.",
                    "properties": {
                      "stabilizationWindowSeconds": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 3600, "default": 0, "description": "Scale up to the lowest recommendation of this window (0 to 3600 seconds)."},
                      "selectPolicy": {"type": "string", "enum": ["Max", "Min", "Disabled"], "default": "Max", "description": "Which policy applies when several do: Max (the largest change), Min (the smallest) or Disabled (never scale up)."},
                      "policies": {"type": "array", "items": {"$ref": "ScalingPolicy"}, "x-kubernetes-list-type": "atomic", "default": [{"type": "Percent", "value": 100, "periodSeconds": 15}, {"type": "Pods", "value": 4, "periodSeconds": 15}], "description": "Rate limits on scaling up."},
                      "cooldownSeconds": {"type": "integer", "format": "int32", "minimum": 0, "default": 0, "description": "Seconds after the last scale-up before the next one."}
                    }
                  },
                  "scaleDown": {
                    "type": "object",
                    "default": {},
                    "description": "Rules for scaling down. Defaults: 300 s stabilization, at most -100% per 15 s.",
                    "properties": {
                      "stabilizationWindowSeconds": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 3600, "default": 300, "description": "Scale down to the highest recommendation of this window (0 to 3600 seconds)."},
                      "selectPolicy": {"type": "string", "enum": ["Max", "Min", "Disabled"], "default": "Max", "description": "Which policy applies when several do: Max (the largest change), Min (the smallest) or Disabled (never scale down)."},
                      "policies": {"type": "array", "items": {"$ref": "ScalingPolicy"}, "x-kubernetes-list-type": "atomic", "default": [{"type": "Percent", "value": 100, "periodSeconds": 15}], "description": "Rate limits on scaling down."},
                      "cooldownSeconds": {"type": "integer", "format": "int32", "minimum": 0, "default": 0, "description": "Seconds after the last scaling (either direction) before a scale-down."}
                    }
                  }
                }
              },
              "predictive": {
                "type": "object",
                "description": "Scale up ahead of load: forecast the load at now + lead time and provision for the forecast's upper bound. The forecast can only raise the desired replicas, never lower them below what current load needs; it switches itself off (with an Event) while it does worse than the reactive policy.",
                "properties": {
                  "enabled": {"type": "boolean", "default": true, "description": "Use the forecast."},
                  "leadTimeSeconds": {"type": "number", "minimum": 0, "description": "How far ahead to forecast; unset: the measured time for a new replica of this deployment to become Ready (per warm/cold node)."},
                  "confidence": {"type": "number", "minimum": 0.5, "maximum": 0.999, "default": 0.9, "description": "Quantile of the forecast distribution to provision for (0.5 to 0.999)."},
                  "seasonSeconds": {"type": "integer", "format": "int32", "minimum": 0, "default": 0, "description": "Length of a season (e.g. 86400 for daily patterns) for Holt-Winters; 0: trend only (Holt)."}
                }
              },
              "scaleToZero": {
                "type": "object",
                "description": "Remove every replica after a quiet period; the gateway holds requests that arrive meanwhile and the autoscaler scales 0 to 1 at once.",
                "properties": {
                  "enabled": {"type": "boolean", "default": false, "description": "Allow scaling to zero replicas when idle (below minReplicas)."},
                  "idleSeconds": {"type": "integer", "format": "int32", "minimum": 0, "default": 300, "description": "Seconds without any request before scaling to zero."}
                }
              },
              "onMissingMetrics": {"type": "string", "enum": ["hold", "floor", "decay"], "default": "hold", "description": "What to do when metrics are missing or stale: hold the current replicas, go to the floor (minReplicas), or decay slowly toward it."},
              "metricStalenessSeconds": {"type": "integer", "format": "int32", "minimum": 1, "default": 10, "description": "Metrics older than this are missing."}
            }
          },
          "placement": {
            "type": "object",
            "default": {},
            "description": "Where replicas may run and how the scheduler chooses among the nodes that fit.",
            "properties": {
              "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Only nodes whose labels contain all these key/value pairs."},
              "strategy": {"type": "string", "enum": ["Spread", "BinPack"], "default": "Spread", "description": "Spread: prefer the least loaded nodes and spread this deployment's replicas across nodes; BinPack: fill the fullest node that fits first (keeps large holes free)."},
              "preferCachedNodes": {"type": "boolean", "default": true, "description": "Prefer nodes whose cache already holds the model (a warm start is faster)."},
              "tolerations": {"type": "array", "items": {"$ref": "Toleration"}, "x-kubernetes-list-type": "atomic", "description": "Node taints these replicas tolerate."}
            }
          },
          "routing": {
            "type": "object",
            "default": {},
            "description": "How the gateway picks a replica for each request.",
            "properties": {
              "policy": {"type": "string", "enum": ["LeastOutstanding", "PowerOfTwo", "PrefixAffinity", "SessionAffinity"], "default": "LeastOutstanding", "description": "LeastOutstanding: the replica with the fewest requests in flight; PowerOfTwo: the less loaded of two random replicas; PrefixAffinity: consistent hashing of the prompt prefix with bounded loads (reuses KV cache); SessionAffinity: the same replica per session (header or the request's user field)."},
              "sessionHeader": {"type": "string", "default": "X-Session-ID", "description": "Request header naming the session (SessionAffinity); without it the body's user field is used."},
              "prefixLength": {"type": "integer", "format": "int32", "minimum": 1, "default": 512, "description": "Characters of the prompt hashed for PrefixAffinity."},
              "loadBound": {"type": "number", "minimum": 1, "default": 1.25, "description": "Bounded-load factor for PrefixAffinity: a replica takes at most this times the average load before its prefixes spill over."},
              "maxRetries": {"type": "integer", "format": "int32", "minimum": 0, "default": 2, "description": "Retries on another replica when a connection fails before any byte was sent."},
              "timeouts": {
                "type": "object",
                "default": {},
                "description": "Per-phase timeouts of a proxied request.",
                "properties": {
                  "connectSeconds": {"type": "number", "minimum": 0, "default": 5, "description": "Connecting to the replica."},
                  "firstTokenSeconds": {"type": "number", "minimum": 0, "default": 120, "description": "From sending the request to the first token."},
                  "idleSeconds": {"type": "number", "minimum": 0, "default": 60, "description": "Between two tokens of a stream."}
                }
              },
              "hold": {
                "type": "object",
                "default": {},
                "description": "The activator: requests that arrive while no replica is Ready (scale from zero) wait here.",
                "properties": {
                  "maxRequests": {"type": "integer", "format": "int32", "minimum": 0, "default": 100, "description": "Most requests held; more are answered 503 with Retry-After."},
                  "timeoutSeconds": {"type": "number", "minimum": 0, "default": 60, "description": "Longest a request is held before a 503 with Retry-After."}
                }
              }
            }
          },
          "cache": {
            "type": "object",
            "default": {},
            "description": "The gateway's response cache for deterministic requests (temperature 0, identical body and model version); never used for sampled outputs.",
            "properties": {
              "enabled": {"type": "boolean", "default": false, "description": "Cache responses of this deployment."},
              "maxBytes": {"type": "integer", "format": "int64", "minimum": 0, "default": 67108864, "description": "Bytes of responses kept (least recently used evicted first); default 64 MiB."}
            }
          }
        }
      },
      "status": {
        "type": "object",
        "description": "Observed state of the deployment.",
        "properties": {
          "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0, "description": "The metadata.generation this status describes."},
          "replicas": {"type": "integer", "format": "int32", "minimum": 0, "description": "Replicas that exist (any phase)."},
          "readyReplicas": {"type": "integer", "format": "int32", "minimum": 0, "description": "Replicas in phase Ready."},
          "updatedReplicas": {"type": "integer", "format": "int32", "minimum": 0, "description": "Replicas of the current template (Model and settings)."},
          "desiredReplicas": {"type": "integer", "format": "int32", "minimum": 0, "description": "Replicas the autoscaler asks for (autoscaling on); the controller creates or removes replicas to match."},
          "lastScaleTime": {"$ref": "Time", "description": "Last time the autoscaler changed desiredReplicas."},
          "selector": {"type": "string", "description": "Label selector of this deployment's replicas, in string form (for the scale subresource)."},
          "currentMetrics": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "description": "The last observed value of each metric, per replica.",
            "items": {
              "type": "object",
              "description": "One observed metric.",
              "required": ["type"],
              "properties": {
                "type": {"type": "string", "description": "The metric, as in spec.autoscaling.metrics[].type."},
                "value": {"type": "number", "description": "Observed value per replica (average over the stable window)."},
                "target": {"type": "number", "description": "The target it was compared with."}
              }
            }
          },
          "panicking": {"type": "boolean", "description": "True while the autoscaler is in panic mode (no scale-down)."},
          "forecast": {
            "type": "object",
            "description": "The predictive autoscaler's last forecast.",
            "properties": {
              "active": {"type": "boolean", "description": "False while the forecast is switched off for doing worse than the reactive policy."},
              "leadTimeSeconds": {"type": "number", "description": "How far ahead it forecast."},
              "value": {"type": "number", "description": "Forecast load (primary metric, whole deployment) at now + lead time."},
              "upperBound": {"type": "number", "description": "Upper bound of the forecast at the configured confidence."}
            }
          },
          "lastDecision": {
            "type": "object",
            "description": "The autoscaler's last change of desiredReplicas and why (also written as an Event).",
            "properties": {
              "time": {"$ref": "Time", "description": "When the decision was made."},
              "fromReplicas": {"type": "integer", "format": "int32", "minimum": 0, "description": "Desired replicas before."},
              "toReplicas": {"type": "integer", "format": "int32", "minimum": 0, "description": "Desired replicas after."},
              "reason": {"type": "string", "description": "The rule that fired, CamelCase (e.g. ScaleUpForecast, ScaleDownStabilized, ScaleToZero)."},
              "message": {"type": "string", "description": "The inputs and the rule, for people."}
            }
          },
          "conditions": {"$ref": "Conditions", "description": "Available, Progressing, ReplicaFailure, ScalingLimited, and others."}
        }
      }
    }
  }
})json";

constexpr std::string_view kReplica = R"json({
  "kind": "Replica", "listKind": "ReplicaList", "group": "corral.dev", "version": "v1alpha1",
  "plural": "replicas", "singular": "replica", "shortNames": ["rep"], "categories": ["all", "corral"],
  "namespaced": true, "selectableFields": ["spec.nodeName", "spec.deployment", "status.phase"],
  "subresources": ["status"],
  "schema": {
    "type": "object",
    "description": "One running copy of a model on one node. Created by the deployment controller, bound to a node by the scheduler, run by that node's worker.",
    "properties": {
      "apiVersion": {"$ref": "ApiVersion"},
      "kind": {"$ref": "Kind"},
      "metadata": {"$ref": "ObjectMeta"},
      "spec": {
        "type": "object",
        "description": "Desired state of the replica.",
        "required": ["modelRef"],
        "properties": {
          "deployment": {"type": "string", "maxLength": 253, "x-corral-immutable": true, "description": "Name of the owning ModelDeployment (also an ownerReference); empty for a replica made by hand. Immutable once set."},
          "modelRef": {"$ref": "LocalObjectReference", "x-corral-immutable": true, "description": "The Model this replica runs. Immutable once set."},
          "nodeName": {"type": "string", "maxLength": 253, "x-corral-immutable": true, "description": "The Node this replica is bound to; set once by the scheduler (or by hand), never changed afterwards."},
          "servedName": {"type": "string", "maxLength": 253, "x-corral-immutable": true, "description": "The model name clients use for this replica in OpenAI and Ollama requests (the deployment's servedName). Unset: the deployment's name, else the Model's name."},
          "templateHash": {"type": "string", "maxLength": 63, "x-corral-immutable": true, "description": "Hash of the deployment template the replica was made from; replicas with an old hash are replaced by a rolling update. Immutable once set."}
        }
      },
      "status": {
        "type": "object",
        "default": {},
        "description": "Observed state of the replica, reported by its worker.",
        "properties": {
          "phase": {"type": "string", "enum": ["Pending", "Scheduled", "Loading", "Ready", "Draining", "Failed"], "default": "Pending", "description": "Pending: not bound yet; Scheduled: bound, the worker has not started it; Loading: weights loading (see progress); Ready: serving; Draining: finishing in-flight requests before removal; Failed: see reason and message."},
          "endpoint": {"type": "string", "description": "Base URL that serves this replica's OpenAI and Ollama APIs, e.g. http://10.0.0.5:8081."},
          "progress": {
            "type": "object",
            "description": "Load progress (phase Loading).",
            "properties": {
              "bytesLoaded": {"type": "integer", "format": "int64", "minimum": 0, "description": "Bytes downloaded or read so far."},
              "bytesTotal": {"type": "integer", "format": "int64", "minimum": 0, "description": "Bytes in all (0 when unknown)."},
              "percent": {"type": "number", "minimum": 0, "maximum": 100, "description": "Percent done (0 to 100)."}
            }
          },
          "warmStart": {"type": "boolean", "description": "True when the node's cache already held the weights (no download)."},
          "scheduledAt": {"$ref": "Time", "description": "When the replica was bound to its node."},
          "startedAt": {"$ref": "Time", "description": "When the worker started loading it."},
          "readyAt": {"$ref": "Time", "description": "When it became Ready."},
          "reason": {"type": "string", "description": "Machine-readable cause of the phase, CamelCase (e.g. ModelFileNotFound, InsufficientMemory, UnsupportedEngine)."},
          "message": {"type": "string", "description": "What happened, for people (e.g. why it Failed)."},
          "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0, "description": "The metadata.generation this status describes."},
          "conditions": {"$ref": "Conditions"}
        }
      }
    }
  }
})json";

constexpr std::string_view kEvent = R"json({
  "kind": "Event", "listKind": "EventList", "group": "", "version": "v1",
  "plural": "events", "singular": "event", "shortNames": ["ev"], "categories": [],
  "namespaced": true,
  "selectableFields": ["involvedObject.kind", "involvedObject.name", "involvedObject.namespace", "involvedObject.uid", "reason", "type"],
  "subresources": ["status"],
  "schema": {
    "type": "object",
    "description": "Event is a report of an event somewhere in the cluster (core/v1 Event): scaling decisions, scheduling failures, node state changes. kubectl describe shows them.",
    "required": ["involvedObject"],
    "properties": {
      "apiVersion": {"$ref": "ApiVersion"},
      "kind": {"$ref": "Kind"},
      "metadata": {"$ref": "ObjectMeta"},
      "involvedObject": {"$ref": "ObjectReference", "description": "The object this event is about."},
      "reason": {"type": "string", "description": "Short, machine understandable string that gives the reason for the transition into the object's current status (CamelCase, e.g. ScaledUp, FailedScheduling)."},
      "message": {"type": "string", "description": "A human-readable description of the status of this operation."},
      "type": {"type": "string", "enum": ["Normal", "Warning"], "description": "Type of this event (Normal, Warning)."},
      "count": {"type": "integer", "format": "int32", "minimum": 0, "description": "The number of times this event has occurred."},
      "firstTimestamp": {"$ref": "Time", "nullable": true, "description": "The time at which the event was first recorded."},
      "lastTimestamp": {"$ref": "Time", "nullable": true, "description": "The time at which the most recent occurrence of this event was recorded."},
      "eventTime": {"$ref": "Time", "nullable": true, "description": "Time when this Event was first observed (MicroTime, with microseconds)."},
      "source": {
        "type": "object",
        "description": "The component reporting this event.",
        "properties": {
          "component": {"type": "string", "description": "Component from which the event is generated, e.g. corral-autoscaler."},
          "host": {"type": "string", "description": "Node name on which the event is generated."}
        }
      },
      "reportingComponent": {"type": "string", "description": "Name of the controller that emitted this Event, e.g. corral.dev/autoscaler."},
      "reportingInstance": {"type": "string", "description": "ID of the controller instance, e.g. the server's host name."},
      "action": {"type": "string", "description": "What action was taken/failed regarding the involved object (e.g. Scale, Schedule)."},
      "related": {"$ref": "ObjectReference", "nullable": true, "description": "Optional secondary object for more complex actions (e.g. the Node a replica was placed on)."},
      "series": {
        "type": "object",
        "nullable": true,
        "description": "Data about the Event series this event represents, if it is a repeated event.",
        "properties": {
          "count": {"type": "integer", "format": "int32", "minimum": 0, "description": "Number of occurrences in this series up to the last heartbeat time."},
          "lastObservedTime": {"$ref": "Time", "description": "Time of the last occurrence observed (MicroTime)."}
        }
      }
    }
  }
})json";

constexpr std::string_view kLease = R"json({
  "kind": "Lease", "listKind": "LeaseList", "group": "coordination.k8s.io", "version": "v1",
  "plural": "leases", "singular": "lease", "shortNames": [], "categories": [],
  "namespaced": true, "selectableFields": [], "subresources": ["status"],
  "schema": {
    "type": "object",
    "description": "Lease defines a lease concept (coordination.k8s.io/v1): workers renew one per node as a cheap heartbeat, so a heartbeat does not wake every Node watcher.",
    "properties": {
      "apiVersion": {"$ref": "ApiVersion"},
      "kind": {"$ref": "Kind"},
      "metadata": {"$ref": "ObjectMeta"},
      "spec": {
        "type": "object",
        "description": "Specification of the Lease.",
        "properties": {
          "holderIdentity": {"type": "string", "nullable": true, "description": "The identity of the holder of the current lease."},
          "leaseDurationSeconds": {"type": "integer", "format": "int32", "minimum": 0, "nullable": true, "description": "Duration that candidates for a lease need to wait to force acquire it, measured against the time of the last observed renewTime."},
          "acquireTime": {"$ref": "Time", "nullable": true, "description": "When the current lease was acquired (MicroTime)."},
          "renewTime": {"$ref": "Time", "nullable": true, "description": "When the current holder of a lease has last updated the lease (MicroTime)."},
          "leaseTransitions": {"type": "integer", "format": "int32", "minimum": 0, "nullable": true, "description": "The number of transitions of a lease between holders."}
        }
      }
    }
  }
})json";

}  // namespace

// The definitions document (an object of named schemas).
std::string_view Definitions() { return kDefinitions; }

// One document per resource, in the order discovery lists them.
std::vector<std::string_view> Resources() {
  return {kNode, kModel, kModelDeployment, kReplica, kEvent, kLease};
}

}  // namespace corral::api::schema_data
