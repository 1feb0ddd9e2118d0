"""Target selectors: which part of a design a phase acts on.

A selector names a provider, a region, a component (optionally in one region, optionally one
replica), a link between two regions, or a shared dependency. Its *shape* tells fault kinds apart:
``partition`` needs a link, ``identity`` a dependency or a region, ``crash`` a component.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = ["RegionId", "Scope", "Selector"]

RegionId = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9-]*$"),
]
"""``provider/region``, lower case, e.g. ``aws/us-east-1`` or ``scaleway/fr-par``."""


class Scope(StrEnum):
    """The shape of a selector."""

    COMPONENT = "component"
    REGION = "region"
    PROVIDER = "provider"
    LINK = "link"
    DEPENDENCY = "dependency"


class Selector(BaseModel):
    """What a phase acts on. Examples::

    {region: aws/us-east-1}                         every component of a region
    {provider: gcp}                                 every region of a provider
    {component: store, region: aws/us-east-1}       one component in one region
    {component: retriever, region: aws/us-east-1, replica: 0}
    {link: [aws/us-east-1, scaleway/fr-par]}        the hops between two regions
    {dependency: aws-sts}                           a shared dependency
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str | None = None
    region: RegionId | None = None
    component: str | None = None
    replica: Annotated[int, Field(ge=0)] | None = None
    link: tuple[RegionId, RegionId] | None = None
    dependency: str | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> Selector:
        if self.link is not None and (self.region or self.component or self.provider or self.dependency):
            raise ValueError("a link selector names only the two regions: {link: [a, b]}")
        if self.link is not None and self.link[0] == self.link[1]:
            raise ValueError("a link joins two different regions")
        if self.dependency is not None and (self.component or self.provider):
            raise ValueError("a dependency selector may add a region, nothing else")
        if self.replica is not None and self.component is None:
            raise ValueError("'replica' needs 'component'")
        if self.provider is not None and self.region is not None:
            raise ValueError("give either 'provider' or 'region', not both")
        if not (self.provider or self.region or self.component or self.link or self.dependency):
            raise ValueError("empty target: name a provider, region, component, link or dependency")
        return self

    @property
    def scope(self) -> Scope:
        if self.link is not None:
            return Scope.LINK
        if self.dependency is not None:
            return Scope.DEPENDENCY
        if self.component is not None:
            return Scope.COMPONENT
        if self.region is not None:
            return Scope.REGION
        return Scope.PROVIDER

    def describe(self) -> str:
        if self.link is not None:
            return f"{self.link[0]} <-> {self.link[1]}"
        if self.dependency is not None:
            return f"dependency {self.dependency}"
        if self.component is not None:
            where = f"@{self.region or self.provider}" if (self.region or self.provider) else ""
            which = f"#{self.replica}" if self.replica is not None else ""
            return f"{self.component}{which}{where}"
        return self.region or f"provider {self.provider}"
