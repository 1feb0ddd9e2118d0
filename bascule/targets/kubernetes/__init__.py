"""The Kubernetes target: a design's regions mapped to kube contexts and node labels, its components
to workloads, and every fault carried out through the Kubernetes API — safely.

- `mapping`: the target file (`parse_target`, `read_target`, `bind` → `KubeMapping`).
- `calls`: the pure call plan of a fault (`compute_calls`), its refusals, `check_plan`,
  `render_plan_calls` (``bascule plan --target kubernetes``) and the RBAC it needs (`permissions`).
- `cluster`: one `KubeApi` per listed context over the official client (`connect`), API discovery
  (`discover`), and which contexts still need ``--confirm`` (`unconfirmed`).
- `target.KubernetesTarget`: the runner's protocol (check, apply, revert, close), every prior
  state in the `ledger` first; `execute` does the reads and the changes; `recover.recover_kubernetes`
  restores what a killed run left; `probe.read_readiness`: ready replicas per workload per region.
"""

from bascule.targets.kubernetes.calls import (
    Call,
    CallPlan,
    ClusterFacts,
    Permission,
    PermissionScope,
    Refusal,
    RefusalRule,
    Verb,
    check_plan,
    compute_calls,
    permissions,
    probe_permissions,
    render_plan_calls,
)
from bascule.targets.kubernetes.cluster import (
    CONFIRM_ENV,
    KubeApi,
    connect,
    connect_contexts,
    connected,
    discover,
    unconfirmed,
)
from bascule.targets.kubernetes.ledger import KUBE_LEDGER_FILE, read_kube_ledger
from bascule.targets.kubernetes.mapping import (
    ALWAYS_PROTECTED,
    KubeMapping,
    TargetFile,
    bind,
    parse_target,
    read_target,
)
from bascule.targets.kubernetes.probe import Readiness, read_readiness
from bascule.targets.kubernetes.recover import KubeRecoverReport, recover_kubernetes
from bascule.targets.kubernetes.target import KubernetesTarget, new_run_id

__all__ = [
    "ALWAYS_PROTECTED",
    "CONFIRM_ENV",
    "KUBE_LEDGER_FILE",
    "Call",
    "CallPlan",
    "ClusterFacts",
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
    "check_plan",
    "compute_calls",
    "connect",
    "connect_contexts",
    "connected",
    "discover",
    "new_run_id",
    "parse_target",
    "permissions",
    "probe_permissions",
    "read_kube_ledger",
    "read_readiness",
    "read_target",
    "recover_kubernetes",
    "render_plan_calls",
    "unconfirmed",
]
