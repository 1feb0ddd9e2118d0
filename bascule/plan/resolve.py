"""Resolve a phase's selector against a design into what it concretely touches. Pure.

Names the design does not know are errors (a component, a dependency, a provider or a region that is
in neither the design nor the catalog: most likely a typo). A catalog region the design does not use
is not an error: the phase then touches nothing here — one incident library can be run against
designs that avoid the failing region — and the planner reports it as an inert phase.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bascule import faults
from bascule.errors import PathElement
from bascule.faults import Fault
from bascule.model.catalog import CATALOG, PROVIDERS
from bascule.model.design import ComponentKind, DependencyKind, Design, host_name
from bascule.model.selector import Selector
from bascule.model.suggest import unknown_name
from bascule.model.topology import Endpoint, Link, LinkPurpose, links, replicated_into
from bascule.plan.model import ReplicaRef, Touch

__all__ = ["Problems", "resolve"]

Problems = list[tuple[tuple[PathElement, ...], str]]


def resolve(
    design: Design, fault: Fault, selector: Selector, at: tuple[PathElement, ...]
) -> tuple[Touch, Problems]:
    """``at`` is the phase's path in the scenario (for error placement). Returns the touch and the
    problems; the touch is empty when there are problems."""
    problems: Problems = []
    inner = fault.fault if isinstance(fault, faults.Flap) else fault
    where = (*at, "target")
    if selector.scope not in inner.scopes:
        shapes = ", ".join(sorted(s.value for s in inner.scopes))
        problems.append(
            (where, f"{inner.kind!r} cannot act on a {selector.scope.value} target; it takes: {shapes}")
        )
        return Touch(), problems
    _check_names(design, selector, where, problems)
    if problems:
        return Touch(), problems
    resolver = _RESOLVERS.get(type(inner))
    if resolver is None:
        problems.append(((*at, "fault", "kind"), f"the planner does not know how to resolve {inner.kind!r}"))
        return Touch(), problems
    touch = resolver(design, inner, selector, where, problems)
    return (Touch(), problems) if problems else (touch, problems)


# -- names ---------------------------------------------------------------------------------------


def _all_regions(design: Design) -> list[str]:
    """Regions of the design, then regions where only a dependency of it lives."""
    regions = [spec.id for spec in design.regions]
    regions += [d.region for d in design.dependencies.values() if d.region not in regions]
    return regions


def _check_names(design: Design, sel: Selector, where: tuple[PathElement, ...], problems: Problems) -> None:
    for field, region in [("region", sel.region)] + [("link", r) for r in sel.link or ()]:
        if region is not None and region not in _all_regions(design) and region not in CATALOG:
            problems.append(((*where, field), unknown_name("region", region, _all_regions(design))))
    if sel.provider is not None and sel.provider not in design.providers() and sel.provider not in PROVIDERS:
        problems.append(((*where, "provider"), unknown_name("provider", sel.provider, design.providers())))
    if sel.component is not None and sel.component not in design.components:
        problems.append(((*where, "component"), unknown_name("component", sel.component, design.components)))
    if sel.dependency is not None and sel.dependency not in design.dependencies:
        problems.append(
            ((*where, "dependency"), unknown_name("dependency", sel.dependency, design.dependencies))
        )


def _regions_of(design: Design, sel: Selector) -> list[str]:
    """Regions a region/provider selector covers, among those where this design has something."""
    if sel.region is not None:
        return [sel.region] if sel.region in _all_regions(design) else []
    if sel.provider is not None:
        return [r for r in _all_regions(design) if design.region(r).provider == sel.provider]
    return []


def _replicas(
    design: Design, sel: Selector, where: tuple[PathElement, ...], problems: Problems
) -> list[ReplicaRef]:
    names = [sel.component] if sel.component else list(design.components)
    regions = set(_regions_of(design, sel)) if (sel.region or sel.provider) else None
    out: list[ReplicaRef] = []
    for name in names:
        assert name is not None
        for region, placement in design.components[name].replicas.items():
            if regions is not None and region not in regions:
                continue
            for index in range(placement.ceiling):
                if sel.replica is None or sel.replica == index:
                    out.append(ReplicaRef(name, region, index))
    if sel.replica is not None and not out and sel.component and (regions is None or regions):
        problems.append(((*where, "replica"), f"{sel.component} has no replica #{sel.replica} there"))
    return out


def _dependents(design: Design, deps: Iterable[str]) -> list[str]:
    wanted = set(deps)
    return [r.id for r in design.region_map.values() if wanted & set(r.depends_on)]


def _sorted(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(items)))


def _touch(
    design: Design,
    *,
    replicas: Iterable[ReplicaRef] = (),
    hop_list: Iterable[Link] = (),
    hosts: Iterable[str] = (),
    deps: Iterable[str] = (),
    regions: Iterable[str] = (),
) -> Touch:
    deps = _sorted(deps)
    direct = _sorted(regions)
    indirect = tuple(r for r in _sorted(_dependents(design, deps)) if r not in direct)
    return Touch(
        replicas=tuple(sorted(set(replicas))),
        hops=tuple(sorted(set(hop_list), key=str)),
        hosts=_sorted(hosts),
        dependencies=deps,
        regions=direct,
        indirect=indirect,
    )


# -- one resolver per kind ------------------------------------------------------------------------

Resolver = Callable[[Design, Fault, Selector, tuple[PathElement, ...], Problems], Touch]


def _outage(
    design: Design, fault: Fault, sel: Selector, where: tuple[PathElement, ...], problems: Problems
) -> Touch:
    regions = _regions_of(design, sel)
    deps = [name for name, d in design.dependencies.items() if d.region in regions]
    return _touch(
        design,
        replicas=_replicas(design, sel, where, problems),
        hop_list=[h for h in links(design) if h.target.region in regions],
        deps=deps,
        regions=regions,
    )


def _process(
    design: Design, fault: Fault, sel: Selector, where: tuple[PathElement, ...], problems: Problems
) -> Touch:
    replicas = _replicas(design, sel, where, problems)
    return _touch(design, replicas=replicas, regions=[r.region for r in replicas])


def _hop_matches(design: Design, sel: Selector) -> Callable[[Link], bool]:
    if sel.link is not None:
        pair = set(sel.link)

        def on_link(h: Link) -> bool:
            return h.source is not None and {h.source.region, h.target.region} == pair

        return on_link
    if sel.dependency is not None:
        dep = sel.dependency
        return lambda h: (
            h.target.name == dep
            and (sel.region is None or (h.source is not None and h.source.region == sel.region))
        )
    regions = set(_regions_of(design, sel)) if (sel.region or sel.provider) else None
    return lambda h: (
        (sel.component is None or h.target.name == sel.component)
        and (regions is None or h.target.region in regions)
    )


def _on_hops(
    design: Design, fault: Fault, sel: Selector, where: tuple[PathElement, ...], problems: Problems
) -> Touch:
    if sel.replica is not None:
        problems.append(
            ((*where, "replica"), f"{fault.kind!r} acts on the hops to a component, not on one replica")
        )
        return Touch()
    matched = [h for h in links(design) if _hop_matches(design, sel)(h)]
    deps = [h.target.name for h in matched if h.target.name in design.dependencies]
    regions = sorted(sel.link) if sel.link else [h.target.region for h in matched]
    return _touch(design, hop_list=matched, deps=deps, regions=regions)


def _dns(
    design: Design, fault: Fault, sel: Selector, where: tuple[PathElement, ...], problems: Problems
) -> Touch:
    if sel.dependency is not None:
        dep = design.dependencies[sel.dependency]
        targets = [Endpoint(sel.dependency, dep.region)]
    else:
        regions = set(_regions_of(design, sel)) if sel.region else None
        targets = sorted(
            {h.target for h in links(design)}
            if sel.component is None
            else {Endpoint(sel.component, r) for r in design.components[sel.component].replicas},
        )
        targets = [t for t in targets if regions is None or t.region in regions]
    names = set(targets)
    matched = [h for h in links(design) if h.target in names and h.source is not None]
    deps = [t.name for t in targets if t.name in design.dependencies]
    return _touch(
        design,
        hop_list=matched,
        hosts=[host_name(t.name, t.region) for t in targets],
        deps=deps,
        regions=[t.region for t in targets],
    )


def _partition(
    design: Design, fault: Fault, sel: Selector, where: tuple[PathElement, ...], problems: Problems
) -> Touch:
    assert sel.link is not None
    return _on_hops(design, fault, sel, where, problems)


def _control_plane(
    design: Design, fault: Fault, sel: Selector, where: tuple[PathElement, ...], problems: Problems
) -> Touch:
    regions = [r for r in _regions_of(design, sel) if r in design.region_map]
    return _touch(design, replicas=_replicas(design, sel, where, problems), regions=regions)


def _replication(
    design: Design, fault: Fault, sel: Selector, where: tuple[PathElement, ...], problems: Problems
) -> Touch:
    replicating = [h for h in links(design) if h.purpose is LinkPurpose.REPLICATE]
    if sel.link is not None:
        pair = set(sel.link)
        matched = [
            h for h in replicating if h.source is not None and {h.source.region, h.target.region} == pair
        ]
    else:
        regions = set(_regions_of(design, sel))
        matched = [h for h in replicating if replicated_into(design, h) in regions]
    return _touch(design, hop_list=matched, regions=[replicated_into(design, h) for h in matched])


def _data_loss(
    design: Design, fault: Fault, sel: Selector, where: tuple[PathElement, ...], problems: Problems
) -> Touch:
    wipeable = set(design.components_of(ComponentKind.STORE)) | {
        name for name, c in design.components.items() if c.command is not None and c.command.wipe is not None
    }
    if sel.component is not None and sel.component not in wipeable:
        spec = design.components[sel.component]
        if spec.command is not None:
            why = (
                "give it wipe: {argv: [...]} under its command: (a command run while the replica is stopped)"
            )
        elif spec.url is not None:
            why = (
                "it is a url service, already running: bascule did not start it and cannot stop it to wipe it"
            )
        else:
            why = "it is not a store"
        problems.append(((*where, "component"), f"data-loss: bascule cannot wipe {sel.component!r}: {why}"))
        return Touch()
    replicas = [r for r in _replicas(design, sel, where, problems) if r.component in wipeable]
    return _touch(design, replicas=replicas, regions=[r.region for r in replicas])


def _stale_index(
    design: Design, fault: Fault, sel: Selector, where: tuple[PathElement, ...], problems: Problems
) -> Touch:
    stores = set(design.components_of(ComponentKind.STORE))
    own_index = (
        "its index lives inside a service of your own, which bascule cannot freeze (the fault plane "
        "sees its search answers, not its index: it could hide the documents written since, but not "
        "give back the old versions of rewritten ones); partial-index acts on its search answers"
    )
    if sel.component is not None and sel.component not in stores:
        spec = design.components[sel.component]
        why = own_index if spec.command is not None or spec.url is not None else "it is not a store"
        problems.append(
            (
                (*where, "component"),
                f"stale-index: bascule cannot freeze the index of {sel.component!r}: {why}",
            )
        )
        return Touch()
    replicas = [r for r in _replicas(design, sel, where, problems) if r.component in stores]
    if not replicas and not stores:
        problems.append((where, f"stale-index: the design has no reference store to freeze: {own_index}"))
    return _touch(design, replicas=replicas, regions=[r.region for r in replicas])


def _identity(
    design: Design, fault: Fault, sel: Selector, where: tuple[PathElement, ...], problems: Problems
) -> Touch:
    own = design.components_of(ComponentKind.IDENTITY)
    targets: list[Endpoint] = []
    if sel.component is not None:
        if sel.component not in own:
            problems.append(
                (
                    (*where, "component"),
                    f"{sel.component!r} is not a token service: declare it kind: identity (with its "
                    "command or url)",
                )
            )
            return Touch()
        targets = [Endpoint(sel.component, r) for r, p in design.components[sel.component].replicas.items()]
        deps: list[str] = []
    elif sel.dependency is not None:
        if design.dependencies[sel.dependency].kind is not DependencyKind.IDENTITY:
            problems.append(((*where, "dependency"), f"{sel.dependency!r} is not an identity dependency"))
            return Touch()
        deps = [sel.dependency]
    else:
        regions = set(_regions_of(design, sel))
        deps = [
            name
            for name, d in design.dependencies.items()
            if d.kind is DependencyKind.IDENTITY and d.region in regions
        ]
        targets = [
            Endpoint(name, r) for name in own for r in design.components[name].replicas if r in regions
        ]
    wanted = set(targets)
    return _touch(
        design,
        hop_list=[h for h in links(design) if h.target.name in deps or h.target in wanted],
        deps=deps,
        regions=[design.dependencies[d].region for d in deps] + [t.region for t in targets],
    )


_RESOLVERS: dict[type[Fault], Resolver] = {
    faults.RegionOutage: _outage,
    faults.ProviderOutage: _outage,
    faults.Crash: _process,
    faults.Hang: _process,
    faults.Blackhole: _on_hops,
    faults.Refuse: _on_hops,
    faults.Latency: _on_hops,
    faults.HttpError: _on_hops,
    faults.Throttle: _on_hops,
    faults.Ttft: _on_hops,
    faults.StreamCut: _on_hops,
    faults.TokenRate: _on_hops,
    faults.Degrade: _on_hops,
    faults.ModelSwap: _on_hops,
    faults.PartialIndex: _on_hops,
    faults.EmbeddingMismatch: _on_hops,
    faults.Bandwidth: _on_hops,
    faults.LimitData: _on_hops,
    faults.Slicer: _on_hops,
    faults.SlowClose: _on_hops,
    faults.Dns: _dns,
    faults.Partition: _partition,
    faults.ControlPlane: _control_plane,
    faults.ReplicationPause: _replication,
    faults.DataLoss: _data_loss,
    faults.StaleIndex: _stale_index,
    faults.Identity: _identity,
}
