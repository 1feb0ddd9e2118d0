"""Load: the scenario's request schedule and mix, run by locust in processes of its own (never
imported into bascule's), its samples streamed back to the runner.

- `schedule` (pure): the configuration handed to the locust processes and the users over time;
- `mix` (pure): the requests, sent through the edge's failover, and the samples made of them;
- `generator`: `LoadGenerator`, the subprocess driver that starts locust and reads its samples;
- `locustfile`: what each locust process runs; it imports `schedule` and `mix` only.

locust puts this directory first on its ``sys.path``: a module here must not be named like a
top-level module locust or its dependencies import (``requests``, ``config``…).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bascule.load.generator import LoadGenerator

__all__ = ["LoadGenerator"]


def __getattr__(name: str) -> object:
    # Imported on first use (PEP 562): the locust processes import the pure modules of this
    # package, and the subprocess driver has nothing to do there.
    if name == "LoadGenerator":
        from bascule.load.generator import LoadGenerator

        return LoadGenerator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
