"""``bascule stack up --web``: the page's fault form, carried out as ``bascule inject`` does
(`bascule.targets.local.inject.inject`: resolved against the stack's design, refused with the reason
when the stack cannot carry it out, undo in the ledger first), each injection held in a thread of
its own until its duration ends or its revert button — or the abort button, which reverts them
all — ends it."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from bascule.errors import BasculeError
from bascule.faults import FAULT_KINDS, AnyFault, Fault
from bascule.model.design import Design
from bascule.model.durations import parse_duration
from bascule.model.selector import Selector
from bascule.targets.local.inject import InjectEvent, InjectEventKind, inject
from bascule.web.digest import PageEvent
from bascule.web.page import PageMode, render_page, stack_context
from bascule.web.server import ActionError, Feed, PageServer

__all__ = ["StackPage", "parse_fault_form"]

_FAULT_ADAPTER: TypeAdapter[Fault] = TypeAdapter(AnyFault)
_JOIN_S = 10.0


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_fault_form(form: Mapping[str, Any]) -> tuple[Fault, Selector, float | None]:
    """The fault, the selector and the hold (None: until reverted) from the page's form: ``kind``,
    ``params`` {name: text read as YAML, as `bascule inject`'s NAME=VALUE}, ``component`` and
    ``region`` or ``selector`` (a YAML mapping), ``hold`` (``30s``). Raises `ActionError`."""
    kind = str(form.get("kind") or "")
    if kind not in FAULT_KINDS:
        raise ActionError(f"unknown fault kind {kind!r}")
    params = form.get("params") or {}
    if not isinstance(params, dict):
        raise ActionError("params is a mapping of name to value")
    data: dict[str, Any] = {"kind": kind}
    for name, text in params.items():
        data[str(name).strip().replace("-", "_")] = _yaml_value(str(text))
    try:
        fault = _FAULT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or kind}: {e['msg']}" for e in exc.errors()
        )
        raise ActionError(f"fault {kind!r}: {problems}") from None
    text = str(form.get("selector") or "").strip()
    chosen: Any = (
        _yaml_value(text)
        if text
        else {k: form[k] for k in ("component", "region") if str(form.get(k) or "").strip()}
    )
    if not isinstance(chosen, dict) or not chosen:
        raise ActionError("say what the fault acts on: a component, a region, or a selector mapping")
    try:
        selector = Selector.model_validate(chosen)
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ActionError(f"selector: {problems}") from None
    hold_text = str(form.get("hold") or "").strip()
    try:
        hold = parse_duration(hold_text) if hold_text else None
    except ValueError as exc:
        raise ActionError(f"hold: {exc}") from None
    if hold is not None and hold <= 0:
        raise ActionError("hold: a duration above 0, or empty (until reverted)")
    return fault, selector, hold


@dataclass
class _Injection:
    name: str
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class StackPage:
    """The page of a running stack: serve it, inject and revert faults from it, revert them all."""

    def __init__(self, design: Design, run_dir: Path, *, port: int = 0) -> None:
        self.design = design
        self.run_dir = run_dir
        self.feed = Feed(time.monotonic())
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._injections: dict[int, _Injection] = {}
        self.server = PageServer(
            self.feed,
            lambda token: render_page(
                PageMode.STACK, token, f"bascule · stack of {design.id}", stack_context(design)
            ),
            {"inject": self._inject, "revert": self._revert, "abort": self._abort},
            port=port,
        )

    def start(self) -> str:
        return self.server.start()

    def stop(self) -> None:
        """Revert every injection still held, then stop serving."""
        try:
            self.revert_all()
        finally:
            self.server.stop()

    def revert_all(self) -> int:
        """End every injection and wait for its revert (bounded); how many there were."""
        with self._lock:
            held = list(self._injections.values())
        for injection in held:
            injection.cancel.set()
        deadline = time.monotonic() + _JOIN_S
        for injection in held:
            if injection.thread is not None:
                injection.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return len(held)

    # -- actions ---------------------------------------------------------------------------------

    def _publish(self, event: str, **data: Any) -> None:
        self.feed.publish(PageEvent(event, {"t": self.feed.now(), **data}))

    def _inject(self, form: Mapping[str, Any]) -> Mapping[str, Any]:
        fault, selector, hold = parse_fault_form(form)
        ident = next(self._ids)
        described = fault.describe()
        name = f"#{ident} {fault.kind}{f' ({described})' if described else ''} on {selector.describe()}"
        injection = _Injection(name)
        thread = threading.Thread(
            target=self._hold, args=(ident, injection, fault, selector, hold), name=f"inject-{ident}"
        )
        injection.thread = thread
        with self._lock:
            self._injections[ident] = injection
        thread.start()
        return {"id": ident, "message": f"injecting {name}"}

    def _hold(
        self, ident: int, injection: _Injection, fault: Fault, selector: Selector, hold: float | None
    ) -> None:
        def on_event(event: InjectEvent) -> None:
            t = round(event.monotonic - self.feed.origin, 3)
            if event.kind is InjectEventKind.APPLIED:
                state = "holding"
            elif event.kind is InjectEventKind.REVERTED:
                if injection.cancel.is_set():
                    state = "reverting"
                else:  # a flap's off window, or the end of the hold
                    state = "reverted (flap off)" if fault.kind == "flap" else "reverted"
            else:
                self._publish("note", message=f"{injection.name}: {event.message}")
                return
            data = {"t": t, "id": ident, "name": injection.name, "state": state, "message": event.message}
            self.feed.publish(PageEvent("injection", data))

        try:
            report = inject(self.run_dir, fault, selector, hold, on_event=on_event, cancel=injection.cancel)
            ending = "reverted" + (f", held {report.held:.2f} s" if report.held else "")
            self._publish("injection", id=ident, name=injection.name, state="ended", message=ending)
        except (BasculeError, OSError) as exc:
            self._publish("injection", id=ident, name=injection.name, state="failed", message=str(exc))
        finally:
            with self._lock:
                self._injections.pop(ident, None)

    def _revert(self, form: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            ident = int(form.get("id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ActionError("revert names the injection's id") from None
        with self._lock:
            injection = self._injections.get(ident)
        if injection is None:
            raise ActionError(f"no injection #{ident} is held")
        injection.cancel.set()
        return {"message": f"reverting #{ident}"}

    def _abort(self, form: Mapping[str, Any]) -> Mapping[str, Any]:
        count = self.revert_all()
        self._publish("note", message=f"abort: {count} injection(s) reverted")
        return {"message": f"{count} injection(s) reverted"}
