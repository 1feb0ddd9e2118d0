"""Names of things in a running stack: region slugs and DNS host names. Pure and import-light,
so that the stack's services can use them without loading the model."""

from __future__ import annotations

__all__ = ["ZONE", "host_name", "region_slug"]

ZONE = "bascule.internal"


def region_slug(region: str) -> str:
    """``aws/us-east-1`` → ``aws-us-east-1``: the form used in host names and process names."""
    return region.replace("/", "-")


def host_name(name: str, region: str) -> str:
    """The DNS name of a component or dependency in a region: ``retriever.aws-us-east-1.bascule.internal``."""
    return f"{name}.{region_slug(region)}.{ZONE}"
