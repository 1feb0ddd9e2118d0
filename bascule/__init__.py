"""bascule — resilience chaos testing: replay real cloud outages against a service, score its failover."""

__version__ = "0.1.0"

__all__ = ["__version__"]
