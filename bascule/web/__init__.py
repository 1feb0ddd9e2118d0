"""The live game-day page (``bascule run --web``, ``bascule stack up --web``): one page on
127.0.0.1 behind a token, fed by server-sent events. An edge: it serves HTTP.

- `digest`: journal records → page events, and the figures of the last seconds (pure).
- `page`: the self-contained HTML document (pure).
- `server`: the HTTP server, its token, the event stream and the actions.
- `run`: a run's page, subscribed to its journal; its abort button aborts the run.
- `stack`: a running stack's page, whose form injects faults as ``bascule inject`` does (imported
  by the CLI only: the runner names no target).
"""

from bascule.web.run import ABORT_REASON, RunPage

__all__ = ["ABORT_REASON", "RunPage"]
