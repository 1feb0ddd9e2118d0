"""A gateway replica's configuration: flags with ``BASCULE_GATEWAY_*`` fallbacks."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bascule.stack.serve import FlagParser, base_url, non_empty, non_negative_int, positive_int

__all__ = ["DEFAULT_MODEL", "ENV_PREFIX", "GatewayConfig", "parse_args"]

ENV_PREFIX = "BASCULE_GATEWAY_"
DEFAULT_MODEL = "mistral-small-latest"


@dataclass(frozen=True)
class GatewayConfig:
    """How one gateway replica is served and which upstreams it reaches, by region."""

    region: str
    design: str = ""
    """Path of the design file; `main` reads it, `create_app` takes the design itself."""
    host: str = "127.0.0.1"
    port: int = 8000
    name: str = "gateway"
    """This replica's name in ``served_by``."""
    retrievers: Mapping[str, str] = field(default_factory=dict)
    llms: Mapping[str, str] = field(default_factory=dict)
    stores: Mapping[str, str] = field(default_factory=dict)
    """Base URLs by region; stores are used for writes."""
    llm_models: Mapping[str, str] = field(default_factory=dict)
    """Model asked in each region; otherwise the design's placement model, else DEFAULT_MODEL."""
    top_k: int = 4
    """Passages asked of the retriever."""
    max_inflight: int | None = None
    """Asks and writes served at once; beyond, 503 ``overloaded`` (None: no limit)."""

    def upstreams(self) -> dict[str, Mapping[str, str]]:
        return {"retriever": self.retrievers, "llm": self.llms, "store": self.stores}


def _pair(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ValueError(f"expected REGION={what}, got {text!r}")
    return key.strip(), value.strip()


def _region_url(text: str) -> tuple[str, str]:
    try:
        region, url = _pair(text, "URL")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return region, base_url(url)


def _region_model(text: str) -> tuple[str, str]:
    try:
        return _pair(text, "MODEL")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """The configuration from command-line flags, falling back to ``BASCULE_GATEWAY_*`` variables.

    Repeatable flags (``--retriever REGION=URL`` …) fall back to a comma-separated variable.
    Invalid values exit with argparse's usage message (status 2), as any CLI does.
    """
    defaults = GatewayConfig(region="")
    flags = FlagParser(
        "python -m bascule.stack.gateway",
        "Reference gateway: routes questions and writes across regions.",
        ENV_PREFIX,
        environ,
    )
    flags.listen(defaults.host, defaults.port)
    flags.option("--region", str, "", "region this gateway runs in (required)")
    flags.option("--name", non_empty, defaults.name, "replica name in served_by")
    flags.option("--design", str, "", "design file (required)")
    flags.option("--top-k", positive_int, defaults.top_k, "passages asked of the retriever")
    flags.option(
        "--max-inflight", non_negative_int, 0, "asks and writes served at once; beyond, 503 (0: no limit)"
    )
    flags.repeated("--retriever", _region_url, "retriever base URL of a region, REGION=URL")
    flags.repeated("--llm", _region_url, "llm base URL of a region, REGION=URL")
    flags.repeated("--store", _region_url, "store base URL of a region for writes, REGION=URL")
    flags.repeated("--llm-model", _region_model, "model to ask in a region, REGION=MODEL")
    args = flags.parse(argv)
    for required in ("region", "design"):
        if not str(getattr(args, required)).strip():
            flags.error(f"--{required} is required (or {flags.variable('--' + required)})")
    maps: dict[str, dict[str, str]] = {}
    for dest in ("retriever", "llm", "store", "llm_model"):
        pairs: list[tuple[str, str]] = getattr(args, dest)
        seen: dict[str, str] = {}
        for region, value in pairs:
            if region in seen:
                flags.error(f"--{dest.replace('_', '-')}: region {region!r} given twice")
            seen[region] = value
        maps[dest] = seen
    return GatewayConfig(
        region=args.region.strip(),
        design=args.design.strip(),
        host=args.host,
        port=args.port,
        name=args.name,
        retrievers=maps["retriever"],
        llms=maps["llm"],
        stores=maps["store"],
        llm_models=maps["llm_model"],
        top_k=args.top_k,
        max_inflight=args.max_inflight or None,
    )
