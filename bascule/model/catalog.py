"""The built-in region catalog: provider, jurisdiction and sovereignty level of the regions users
name most. A design says ``id: scaleway/fr-par`` and inherits the rest; any field can be overridden,
and a region missing here is declared in full.

Levels follow DESIGN.md: ``sovereign`` (EU provider, EU law, EU operation), ``trusted`` (EU-operated
on non-EU technology), ``exposed`` (an EU region of a provider subject to non-EU law, such as the US
CLOUD Act), ``foreign`` (outside the EU).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CATALOG", "PROVIDERS", "CatalogRegion", "Provider", "Sovereignty"]


class Sovereignty(StrEnum):
    """How far a region is from non-EU legal reach; compare with ``rank`` (higher is more sovereign)."""

    FOREIGN = "foreign"
    EXPOSED = "exposed"
    TRUSTED = "trusted"
    SOVEREIGN = "sovereign"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def satisfies(self, minimum: Sovereignty) -> bool:
        return self.rank >= minimum.rank


_RANK = {
    Sovereignty.FOREIGN: 0,
    Sovereignty.EXPOSED: 1,
    Sovereignty.TRUSTED: 2,
    Sovereignty.SOVEREIGN: 3,
}


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    headquarters: str
    managed_kubernetes: str | None


@dataclass(frozen=True)
class CatalogRegion:
    id: str
    provider: str
    location: str
    country: str
    jurisdiction: str
    sovereignty: Sovereignty
    note: str = ""


PROVIDERS: dict[str, Provider] = {
    p.id: p
    for p in [
        Provider("aws", "Amazon Web Services", "US", "EKS"),
        Provider("gcp", "Google Cloud", "US", "GKE"),
        Provider("azure", "Microsoft Azure", "US", "AKS"),
        Provider("scaleway", "Scaleway", "FR", "Kapsule"),
        Provider("ovhcloud", "OVHcloud", "FR", "Managed Kubernetes Service"),
        Provider("outscale", "3DS Outscale", "FR", "OKS"),
        Provider("clever-cloud", "Clever Cloud", "FR", None),
        Provider("s3ns", "S3NS (Thales, Google technology)", "FR", "GKE"),
        Provider("bleu", "Bleu (Orange and Capgemini, Microsoft technology)", "FR", "AKS"),
    ]
}

_S, _T, _E, _F = Sovereignty.SOVEREIGN, Sovereignty.TRUSTED, Sovereignty.EXPOSED, Sovereignty.FOREIGN

_ROWS: list[tuple[str, str, str, str, Sovereignty, str]] = [
    # id, location, country, jurisdiction, level, note
    ("aws/us-east-1", "N. Virginia", "US", "US", _F, ""),
    ("aws/us-east-2", "Ohio", "US", "US", _F, ""),
    ("aws/us-west-2", "Oregon", "US", "US", _F, ""),
    ("aws/eu-west-1", "Ireland", "IE", "EU", _E, ""),
    ("aws/eu-west-3", "Paris", "FR", "EU", _E, ""),
    ("aws/eu-central-1", "Frankfurt", "DE", "EU", _E, ""),
    ("gcp/us-central1", "Iowa", "US", "US", _F, ""),
    ("gcp/us-east1", "South Carolina", "US", "US", _F, ""),
    ("gcp/europe-west1", "Belgium", "BE", "EU", _E, ""),
    ("gcp/europe-west9", "Paris", "FR", "EU", _E, ""),
    ("azure/eastus", "Virginia", "US", "US", _F, ""),
    ("azure/westeurope", "Netherlands", "NL", "EU", _E, ""),
    ("azure/francecentral", "Paris", "FR", "EU", _E, ""),
    ("scaleway/fr-par", "Paris", "FR", "EU", _S, "zones fr-par-1/2/3"),
    ("scaleway/nl-ams", "Amsterdam", "NL", "EU", _S, ""),
    ("scaleway/pl-waw", "Warsaw", "PL", "EU", _S, ""),
    ("ovhcloud/gra", "Gravelines", "FR", "EU", _S, ""),
    ("ovhcloud/sbg", "Strasbourg", "FR", "EU", _S, "the campus of the 2021-03-10 fire"),
    ("ovhcloud/eu-west-par", "Paris", "FR", "EU", _S, "three availability zones"),
    ("ovhcloud/de1", "Frankfurt", "DE", "EU", _S, ""),
    ("ovhcloud/waw1", "Warsaw", "PL", "EU", _S, ""),
    ("ovhcloud/uk1", "London", "GB", "UK", _F, "outside the EU"),
    ("ovhcloud/bhs", "Beauharnois", "CA", "CA", _F, "outside the EU"),
    ("outscale/eu-west-2", "Paris", "FR", "EU", _S, ""),
    ("outscale/cloudgouv-eu-west-1", "Paris", "FR", "EU", _S, "SecNumCloud qualified"),
    ("clever-cloud/par", "Paris", "FR", "EU", _S, "PaaS, no managed Kubernetes"),
    ("s3ns/u-france-east1", "France", "FR", "EU", _T, "the only region: no failover inside S3NS"),
    ("bleu/fr-central", "France", "FR", "EU", _T, "region name assumed; Bleu publishes no catalog"),
]

CATALOG: dict[str, CatalogRegion] = {
    rid: CatalogRegion(rid, rid.split("/", 1)[0], location, country, jurisdiction, level, note)
    for rid, location, country, jurisdiction, level, note in _ROWS
}
