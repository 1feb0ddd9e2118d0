"""Who operates a host the design does not declare: a catalog of provider endpoint domains, so that
a call a service makes to ``sts.us-east-1.amazonaws.com`` or ``api.mistral.ai`` is reported as a
dependency on AWS (US law) or Mistral (EU), with a sovereignty level. Pure data and a lookup.

A host is matched on whole labels: by the longest domain suffix of the table (``amazonaws.com``
matches ``s3.eu-west-3.amazonaws.com``, never ``notamazonaws.com``), else by a label that is a
provider's short name (``tokens.gcp.example.net``, ``api.s3ns.example``). When the host also names a
region of the provider that the region catalog knows (``eu-west-3``, ``fr-par-2``), the region's
jurisdiction and level win: an EU region of AWS is ``exposed``, not ``foreign``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bascule.model.catalog import CATALOG, Sovereignty

__all__ = ["ENDPOINT_DOMAINS", "EndpointOwner", "lookup_endpoint"]


@dataclass(frozen=True)
class EndpointOwner:
    """The operator of a host, as far as its name tells."""

    provider: str
    """A provider id (``aws``, ``gcp``, ``scaleway``, ``mistral``…)."""
    name: str
    jurisdiction: str
    """The law the operator answers to: ``US``, ``EU``…"""
    sovereignty: Sovereignty
    matched: str
    """The domain suffix or label that told the operator."""
    region: str | None = None
    """A catalog region id when the host names one (``aws/eu-west-3``)."""


_S, _T, _E, _F = Sovereignty.SOVEREIGN, Sovereignty.TRUSTED, Sovereignty.EXPOSED, Sovereignty.FOREIGN

_OPERATORS: dict[str, tuple[str, str, Sovereignty]] = {
    # provider id: name, jurisdiction, level when no region is told
    "aws": ("Amazon Web Services", "US", _F),
    "gcp": ("Google Cloud", "US", _F),
    "azure": ("Microsoft Azure", "US", _F),
    "scaleway": ("Scaleway", "EU", _S),
    "ovhcloud": ("OVHcloud", "EU", _S),
    "clever-cloud": ("Clever Cloud", "EU", _S),
    "outscale": ("3DS Outscale", "EU", _S),
    "mistral": ("Mistral AI", "EU", _S),
    "s3ns": ("S3NS", "EU", _T),
    "bleu": ("Bleu", "EU", _T),
    "openai": ("OpenAI", "US", _F),
    "anthropic": ("Anthropic", "US", _F),
    "cloudflare": ("Cloudflare", "US", _F),
    "datadog": ("Datadog", "US", _F),
}

ENDPOINT_DOMAINS: dict[str, str] = {
    # domain suffix: provider id
    "amazonaws.com": "aws",
    "aws.amazon.com": "aws",
    "amazoncognito.com": "aws",
    "cloudfront.net": "aws",
    "api.aws": "aws",
    "on.aws": "aws",
    "aws": "aws",
    "googleapis.com": "gcp",
    "googleusercontent.com": "gcp",
    "appspot.com": "gcp",
    "run.app": "gcp",
    "cloudfunctions.net": "gcp",
    "pkg.dev": "gcp",
    "gcr.io": "gcp",
    "google.com": "gcp",
    "azure.com": "azure",
    "azure.net": "azure",
    "azure-api.net": "azure",
    "azurewebsites.net": "azure",
    "azurecr.io": "azure",
    "windows.net": "azure",
    "microsoft.com": "azure",
    "microsoftonline.com": "azure",
    "scw.cloud": "scaleway",
    "scaleway.com": "scaleway",
    "ovh.net": "ovhcloud",
    "ovh.com": "ovhcloud",
    "ovhcloud.com": "ovhcloud",
    "clever-cloud.com": "clever-cloud",
    "cleverapps.io": "clever-cloud",
    "outscale.com": "outscale",
    "mistral.ai": "mistral",
    "s3nsapis.fr": "s3ns",
    "openai.com": "openai",
    "anthropic.com": "anthropic",
    "cloudflare.com": "cloudflare",
    "datadoghq.com": "datadog",
}

_LABELS: dict[str, str] = {
    # a label naming the provider anywhere in the host: provider id
    "aws": "aws",
    "gcp": "gcp",
    "azure": "azure",
    "scw": "scaleway",
    "scaleway": "scaleway",
    "ovh": "ovhcloud",
    "ovhcloud": "ovhcloud",
    "s3ns": "s3ns",
    "bleu": "bleu",
}


def lookup_endpoint(host: str) -> EndpointOwner | None:
    """The operator of `host` (a DNS name; IP addresses and unknown names give None)."""
    name = host.strip().rstrip(".").lower()
    if not name or _is_address(name):
        return None
    labels = name.split(".")
    provider, matched = None, ""
    for i in range(len(labels)):
        suffix = ".".join(labels[i:])
        if suffix in ENDPOINT_DOMAINS:
            provider, matched = ENDPOINT_DOMAINS[suffix], suffix
            break
    if provider is None:
        provider = next((_LABELS[label] for label in labels if label in _LABELS), None)
        matched = next((label for label in labels if label in _LABELS), "")
    if provider is None:
        return None
    full_name, jurisdiction, level = _OPERATORS[provider]
    region = _named_region(provider, labels)
    if region is not None:
        known = CATALOG[region]
        jurisdiction, level = known.jurisdiction, known.sovereignty
    return EndpointOwner(provider, full_name, jurisdiction, level, matched, region)


def _named_region(provider: str, labels: list[str]) -> str | None:
    # s3.eu-west-3.amazonaws.com, fr-par-2 (a zone), europe-west9-aiplatform.googleapis.com.
    for rid in CATALOG:
        owner, _, region = rid.partition("/")
        if owner == provider and any(label == region or label.startswith(region + "-") for label in labels):
            return rid
    return None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True
