"""Options that several commands share."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["OtlpTimelineOption"]

OtlpTimelineOption = Annotated[
    str | None,
    typer.Option(
        "--otlp-timeline",
        envvar="BASCULE_OTLP_TIMELINE",
        metavar="URL",
        help="Send each run's timeline (run, phases, faults, guardrail trips) as OpenTelemetry spans "
        "to this OTLP/HTTP collector once the run is over, e.g. http://127.0.0.1:4318 "
        "(docs/traces.md; needs the 'otel' extra of bascule).",
        show_default=False,
    ),
]
