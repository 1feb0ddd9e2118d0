"""The Kubernetes target as the registry knows it (`targets.registry`): its options (the target
file, the kubeconfig, the contexts confirmed), started for a run, described for a plan (every API
call, none made), recovered after a killed run. The official client is imported on first use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bascule.errors import ScenarioError, TargetError
from bascule.model.design import Design
from bascule.plan.model import Plan
from bascule.targets.base import Refusal, StartRequest, Target
from bascule.targets.kubernetes.ledger import KUBE_LEDGER_FILE
from bascule.targets.registry import OptionValue, PlanDescription, Recovery

__all__ = ["PACKAGE", "KubeOptions", "KubePackage", "KubeStarter"]

_NEEDS_TARGET_FILE = "--target kubernetes needs --target-file (docs/kubernetes.md)"


@dataclass(frozen=True)
class KubeOptions:
    target_file: Path | None = None
    kubeconfig: Path | None = None
    confirm: tuple[str, ...] = ()
    """Contexts on other machines the user confirmed acting on."""
    discover: bool = False
    """``bascule plan``: ask each cluster what it serves (GET only)."""

    @classmethod
    def parse(cls, values: Mapping[str, OptionValue]) -> KubeOptions:
        def path(name: str) -> Path | None:
            value = values.get(name)
            return Path(value) if isinstance(value, str | Path) else None

        confirm = values.get("confirm") or ()
        return cls(
            target_file=path("target_file"),
            kubeconfig=path("kubeconfig"),
            confirm=tuple(confirm) if isinstance(confirm, tuple) else (str(confirm),),
            discover=values.get("discover") is True,
        )


@dataclass(frozen=True)
class KubeStarter:
    options: KubeOptions
    name: str = "kubernetes"

    def start(self, request: StartRequest) -> Target | Refusal:
        """Map the design onto the clusters, refuse what is not confirmed, start the target's ledger."""
        # Imported here: the official client takes about a second to import.
        from bascule.targets.kubernetes.cluster import UnreachableError, connect
        from bascule.targets.kubernetes.identity import check_confirmation
        from bascule.targets.kubernetes.mapping import bind, read_target
        from bascule.targets.kubernetes.target import KubernetesTarget

        target_file = self.options.target_file
        if target_file is None:
            return Refusal(_NEEDS_TARGET_FILE)
        try:
            mapping = bind(read_target(target_file, request.design), request.design)
        except ScenarioError as exc:
            return Refusal(str(exc))
        if not mapping.target.entries:
            return Refusal(
                f"{target_file} gives no `entries`: where do clients reach each region's "
                "service? (docs/kubernetes.md)"
            )
        if request.otlp_endpoint is not None:
            # bascule deploys nothing into the clusters that could export for the services.
            request.progress(
                f"receiving OpenTelemetry spans at {request.otlp_endpoint}/v1/traces on this machine: "
                "have your services' collector export there (OTLP/HTTP, e.g. through kubectl "
                "port-forward or an SSH tunnel); bascule sets no variable in your pods"
            )
        request.progress("connecting to the clusters")
        apis = connect(mapping.target, self.options.kubeconfig)
        try:
            missing = check_confirmation(apis, self.options.confirm)
        except UnreachableError:  # no cluster there: the run fails as for any target not there
            for api in apis.values():
                api.close()
            raise
        except TargetError as exc:  # the file of confirmed clusters is damaged
            for api in apis.values():
                api.close()
            return Refusal(str(exc))
        if missing:
            for api in apis.values():
                api.close()
            return Refusal(
                f"acting on {', '.join(missing)} needs --confirm {' --confirm '.join(missing)} "
                "(or BASCULE_CONFIRM_CONTEXTS): bascule knows a cluster by its identity (the UID of "
                "its kube-system namespace), never by its address — a loopback address may be "
                "kubectl proxy or an SSH tunnel to production; once confirmed, a cluster is remembered"
            )
        try:
            return KubernetesTarget.start(
                mapping, apis, request.run_dir, kubeconfig=str(self.options.kubeconfig or "") or None
            )
        except BaseException:
            for api in apis.values():
                api.close()
            raise


class KubePackage:
    def choose(self, values: Mapping[str, OptionValue]) -> KubeStarter:
        return KubeStarter(KubeOptions.parse(values))

    def describe_plan(
        self, built: Plan, design: Design, values: Mapping[str, OptionValue]
    ) -> PlanDescription | Refusal:
        """Every API call each action would make (none is made); with ``discover``, what each
        cluster serves, and the PodDisruptionBudgets, pods and nodes of the mapped namespaces, are
        read first (GET only). Raises `ScenarioError` for a bad target file."""
        from bascule.targets.kubernetes.calls import ClusterFacts, check_plan, render_plan_calls
        from bascule.targets.kubernetes.cluster import connected, discover
        from bascule.targets.kubernetes.mapping import bind, read_target

        options = KubeOptions.parse(values)
        if options.target_file is None:
            return Refusal(_NEEDS_TARGET_FILE)
        mapping = bind(read_target(options.target_file, design), design)
        facts: dict[str, ClusterFacts | None] = {}
        if options.discover:
            with connected(mapping.target, options.kubeconfig) as apis:
                facts.update(discover(apis, mapping.namespaces()))
        return PlanDescription(
            tuple(render_plan_calls(built, mapping, facts)), tuple(check_plan(built, mapping, facts))
        )

    def recover(self, run_dir: Path, *, grace: float) -> Recovery | None:
        """Restore the objects a killed run changed on its clusters."""
        if not (run_dir / KUBE_LEDGER_FILE).exists():
            return None
        from bascule.targets.kubernetes.recover import recover_kubernetes

        return recover_kubernetes(run_dir)

    def unfinished_runs(self, root: Path) -> list[Path]:
        return []


PACKAGE = KubePackage()
