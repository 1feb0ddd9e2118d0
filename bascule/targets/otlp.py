"""The environment that points a service at the run's OTLP trace receiver (`bascule.traces`), in
the variables every OpenTelemetry SDK reads (docs/traces.md). Pure."""

from __future__ import annotations

__all__ = ["BATCH_DELAY_MS", "otlp_environment"]

BATCH_DELAY_MS = 200
"""How often a service's batch span processor exports (the SDKs' default is 5000 ms): a request's
spans must reach bascule within the time its sample waits for them (`runner.traffic.SPAN_HOLD`)."""


def otlp_environment(endpoint: str, component: str, region: str, replica: str) -> dict[str, str]:
    """``OTEL_*`` variables for one replica: where to export, over which protocol, how often, and
    the resource attributes that say where it runs (``cloud.provider``/``cloud.region`` from the
    region id ``provider/region``)."""
    provider, _, place = region.partition("/")
    resource = [f"service.instance.id={replica}"]
    if place:
        resource = [f"cloud.provider={provider}", f"cloud.region={place}", *resource]
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint.rstrip("/") + "/v1/traces",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_SERVICE_NAME": component,
        "OTEL_RESOURCE_ATTRIBUTES": ",".join(resource),
        "OTEL_BSP_SCHEDULE_DELAY": str(BATCH_DELAY_MS),
    }
