"""Rendered manifests as bascule handles them once made: the marks that make an object bascule's
(`MANAGED_BY`) and say which context it goes to (`CONTEXT_ANNOTATION`), the order they are applied
in, and their multi-document YAML (what ``bascule render kubernetes`` writes and ``bascule deploy``
reads back). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import yaml

__all__ = ["CONTEXT_ANNOTATION", "MANAGED_BY", "apply_order", "object_context", "render_yaml"]

CONTEXT_ANNOTATION: Final = "bascule.io/context"
MANAGED_BY: Final = ("app.kubernetes.io/managed-by", "bascule")

_KIND_ORDER: Final = (
    "Namespace",
    "Secret",
    "ConfigMap",
    "Service",
    "ServiceExport",
    "Deployment",
    "StatefulSet",
    "HorizontalPodAutoscaler",
)


def object_context(obj: Mapping[str, Any]) -> str | None:
    """The context a rendered object belongs to (its ``bascule.io/context`` annotation)."""
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = annotations.get(CONTEXT_ANNOTATION) if isinstance(annotations, Mapping) else None
    return value if isinstance(value, str) else None


def apply_order(obj: Mapping[str, Any]) -> tuple[str, int, str, str]:
    """Sort key of rendered objects: by context, then namespaces, secrets, config maps, services,
    workloads, autoscalers (what an object refers to exists before it), then namespace and name."""
    meta = obj.get("metadata") or {}
    kind = str(obj.get("kind"))
    return (
        object_context(obj) or "",
        _KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the design in its ConfigMap) as literal blocks, readable in the file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render_yaml(manifests: Sequence[Mapping[str, Any]]) -> str:
    """`manifests` as one multi-document YAML text, in their order (``kubectl apply -f`` reads it)."""
    return yaml.dump_all(
        [dict(m) for m in manifests],
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        explicit_start=True,
    )
