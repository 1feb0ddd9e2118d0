"""Request headers of the user's own (an API key, a tenant) for probes and load: names and value
templates at the YAML boundary, ``${NAME}`` read from the environment only when a request is made,
so that a secret is never written to a file bascule keeps (the journal holds the template).

    headers = resolve_headers({"authorization": "Bearer ${LLM_API_KEY}"}, os.environ)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Final

from pydantic import AfterValidator

__all__ = ["Headers", "MissingVariableError", "resolve_headers"]

_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
"""An HTTP header name (RFC 9110 token)."""
_REFERENCE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RESERVED: Final = frozenset({"traceparent", "tracestate", "content-length", "host", "transfer-encoding"})


class MissingVariableError(ValueError):
    """A header names an environment variable that is not set."""


def _check(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an HTTP header name")
        if name.lower() in _RESERVED:
            raise ValueError(f"{name!r} is set by bascule or the HTTP client, not by the scenario")
        if "\r" in value or "\n" in value or len(value) > 8192:
            raise ValueError(f"the value of header {name!r} must be one line of at most 8192 characters")
    return headers


Headers = Annotated[dict[str, str], AfterValidator(_check)]
"""``{name: value}``; a value may reference environment variables as ``${NAME}``."""


def resolve_headers(headers: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """`headers` with every ``${NAME}`` replaced from `environ`; `MissingVariableError` naming the
    variables that are not set (never their values)."""
    missing = sorted({m for value in headers.values() for m in _REFERENCE.findall(value) if m not in environ})
    if missing:
        names = ", ".join(missing)
        raise MissingVariableError(
            f"the scenario's request headers need the environment variable{'s' if len(missing) > 1 else ''} "
            f"{names}: set {'them' if len(missing) > 1 else 'it'} before `bascule run`"
        )
    return {name: _REFERENCE.sub(lambda m: environ[m.group(1)], value) for name, value in headers.items()}
