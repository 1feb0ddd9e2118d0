"""The Kubernetes target: a design's regions mapped to kube contexts and node labels, its components
to workloads, and every fault carried out through the Kubernetes API — safely.

- `mapping`: the target file (`parse_target`, `read_target`, `bind` → `KubeMapping`).
- `calls`: the pure call plan of a fault (`compute_calls`), its refusals, `check_plan`,
  `render_plan_calls` (``bascule plan --target kubernetes``) and the RBAC it needs (`permissions`).
- `render` (pure): manifests for the reference stack; `manifests` (pure): their order and YAML;
  `deploy`: apply them; `k3s`: a throwaway cluster for CI (`cluster_up`, `cluster_down`).
- `cluster`: one `KubeApi` per listed context over the official client (`connect`), API discovery
  (`discover`), and which contexts still need ``--confirm`` (`unconfirmed`).
- `target.KubernetesTarget`: the runner's protocol (check, apply, revert, close), every prior
  state in the `ledger` first; `execute` does the reads and the changes; `recover.recover_kubernetes`
  restores what a killed run left; `probe.read_readiness`: ready replicas per workload per region.
"""

import importlib

# Imported on first use (PEP 562): the official client takes about a second to import, and the
# CLI verbs that only need a constant or the ledger's file name must not pay for it.
_WHERE = {
    "ALWAYS_PROTECTED": "mapping",
    "CONFIRM_ENV": "cluster",
    "Call": "calls",
    "CallPlan": "calls",
    "ClusterFacts": "calls",
    "ClusterUnavailableError": "k3s",
    "KUBE_LEDGER_FILE": "ledger",
    "KubeApi": "cluster",
    "KubeMapping": "mapping",
    "KubeRecoverReport": "recover",
    "KubernetesTarget": "target",
    "Permission": "calls",
    "PermissionScope": "calls",
    "Readiness": "probe",
    "Refusal": "calls",
    "RefusalRule": "calls",
    "TargetFile": "mapping",
    "Verb": "calls",
    "bind": "mapping",
    "check_engine": "k3s",
    "check_plan": "calls",
    "cluster_down": "k3s",
    "cluster_up": "k3s",
    "compute_calls": "calls",
    "connect": "cluster",
    "connect_contexts": "cluster",
    "connected": "cluster",
    "deploy": "deploy",
    "discover": "cluster",
    "new_run_id": "target",
    "parse_target": "mapping",
    "permissions": "calls",
    "probe_permissions": "calls",
    "read_kube_ledger": "ledger",
    "read_manifests": "deploy",
    "read_readiness": "probe",
    "read_target": "mapping",
    "recover_kubernetes": "recover",
    "render_manifests": "render",
    "render_plan_calls": "calls",
    "render_yaml": "manifests",
    "unconfirmed": "cluster",
    "unrenderable": "render",
    "write_manifests": "deploy",
}


__all__ = [
    "ALWAYS_PROTECTED",
    "CONFIRM_ENV",
    "KUBE_LEDGER_FILE",
    "Call",
    "CallPlan",
    "ClusterFacts",
    "ClusterUnavailableError",
    "KubeApi",
    "KubeMapping",
    "KubeRecoverReport",
    "KubernetesTarget",
    "Permission",
    "PermissionScope",
    "Readiness",
    "Refusal",
    "RefusalRule",
    "TargetFile",
    "Verb",
    "bind",
    "check_engine",
    "check_plan",
    "cluster_down",
    "cluster_up",
    "compute_calls",
    "connect",
    "connect_contexts",
    "connected",
    "deploy",
    "discover",
    "new_run_id",
    "parse_target",
    "permissions",
    "probe_permissions",
    "read_kube_ledger",
    "read_manifests",
    "read_readiness",
    "read_target",
    "recover_kubernetes",
    "render_manifests",
    "render_plan_calls",
    "render_yaml",
    "unconfirmed",
    "unrenderable",
    "write_manifests",
]


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
