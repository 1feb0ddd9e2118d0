"""The live game-day page: one self-contained HTML document — inline CSS and JavaScript, no build
step, nothing fetched but its own event stream and actions, so it works offline. Pure: what to
show in, HTML out.

Everything that comes from a scenario, a design or the run (names, notes, messages) reaches the
page as JSON — embedded with ``<``, ``>`` and ``&`` escaped, or from the event stream — and is put
into the document with ``textContent``, never parsed as HTML.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum, StrEnum
from html import escape
from typing import Any

from pydantic.fields import FieldInfo

from bascule.faults import FAULT_KINDS
from bascule.model.design import Design

__all__ = ["PageMode", "fault_vocabulary", "render_page"]


class PageMode(StrEnum):
    RUN = "run"
    """`bascule run --web`: the plan's timeline, figures, abort."""
    STACK = "stack"
    """`bascule stack up --web`: a form to inject and revert faults, abort reverts them all."""


def _shown_default(info: FieldInfo) -> str:
    value = info.default
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def fault_vocabulary() -> list[dict[str, Any]]:
    """`bascule faults` as data: each kind, what a client sees, what it can target, its
    parameters (name, required, default)."""
    return [
        {
            "kind": name,
            "client_sees": cls.client_sees,
            "scopes": sorted(s.value for s in cls.scopes),
            "params": [
                {"name": field, "required": info.is_required(), "default": _shown_default(info)}
                for field, info in cls.model_fields.items()
                if field != "kind"
            ],
        }
        for name, cls in FAULT_KINDS.items()
    ]


def stack_context(design: Design) -> dict[str, Any]:
    """What the stack page's form offers: the design's regions and components."""
    return {
        "design": design.id,
        "regions": [
            {"id": r.id, "provider": r.provider, "sovereignty": r.sovereignty.value}
            for r in (design.region(spec.id) for spec in design.regions)
        ],
        "components": sorted(design.components),
        "vocabulary": fault_vocabulary(),
    }


def _json_for_script(data: Mapping[str, Any]) -> str:
    text = json.dumps(data, ensure_ascii=False, default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_page(mode: PageMode, token: str, title: str, context: Mapping[str, Any] | None = None) -> str:
    init = {"mode": mode.value, "token": token, **(context or {})}
    return (
        _TEMPLATE.replace("__TITLE__", escape(title))
        .replace("__MODE__", mode.value)
        .replace("__INIT__", _json_for_script(init))
    )


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>__TITLE__</title>
<style>
:root { color-scheme: light dark; --bg:#fafafa; --fg:#1b1b1f; --mute:#6b6b76; --line:#d8d8de;
  --card:#fff; --ok:#1f8a4c; --bad:#c62d2d; --warn:#b86e00; --fault:#e0a100; --done:#9aa0a6; }
@media (prefers-color-scheme: dark) { :root { --bg:#16171b; --fg:#e8e8ec; --mute:#9a9aa6;
  --line:#34353d; --card:#1f2026; --ok:#47c27a; --bad:#ff6b6b; --warn:#f0a030; --fault:#f2c14e;
  --done:#5f6368; } }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; gap:16px; align-items:center; padding:12px 20px; border-bottom:1px solid var(--line); }
header h1 { font-size:18px; margin:0; flex:1; }
#stage { color:var(--mute); }
#status { font-weight:600; }
.ok { color:var(--ok); } .bad { color:var(--bad); } .warn { color:var(--warn); } .mute { color:var(--mute); }
button { font:inherit; padding:6px 14px; border-radius:6px; border:1px solid var(--line);
  background:var(--card); color:var(--fg); cursor:pointer; }
button:disabled { opacity:.5; cursor:default; }
button.danger { background:var(--bad); color:#fff; border-color:var(--bad); font-weight:600; }
main { display:grid; grid-template-columns: minmax(0,2fr) minmax(0,1fr); gap:16px; padding:16px 20px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
section h2 { font-size:14px; margin:0 0 8px; text-transform:uppercase; letter-spacing:.04em;
  color:var(--mute); }
.wide { grid-column: 1 / -1; }
#timeline { position:relative; }
.lane { position:relative; height:24px; margin:3px 0; }
.bar { position:absolute; top:0; height:22px; border-radius:4px; background:var(--line);
  padding:2px 6px; overflow:hidden; white-space:nowrap; font-size:12px; min-width:4px; }
.bar[data-state=applied] { background:var(--fault); color:#111; font-weight:600; }
.bar[data-state=reverted] { background:var(--done); color:#fff; }
#cursor { position:absolute; top:0; bottom:0; width:2px; background:var(--bad); display:none; }
#clock { color:var(--mute); font-variant-numeric: tabular-nums; text-transform:none; letter-spacing:0; }
table { border-collapse:collapse; width:100%; font-variant-numeric: tabular-nums; }
th, td { text-align:left; padding:4px 8px; border-bottom:1px solid var(--line); }
th { color:var(--mute); font-weight:500; }
.share { display:flex; height:18px; border-radius:4px; overflow:hidden; background:var(--line); }
.share span { display:block; height:100%; }
.legend span { margin-right:12px; }
ul { margin:0; padding-left:18px; }
#log { max-height:260px; overflow:auto; font-family: ui-monospace, monospace; font-size:12px; }
#log div { padding:1px 0; }
form label { display:block; margin:6px 0 2px; color:var(--mute); }
form input, form select { font:inherit; width:100%; padding:4px 6px; border:1px solid var(--line);
  border-radius:4px; background:var(--bg); color:var(--fg); }
@media (max-width: 900px) { main { grid-template-columns: minmax(0,1fr); } }
</style></head>
<body data-mode="__MODE__">
<header><h1 id="title">bascule</h1><span id="stage">connecting…</span><span id="status"></span>
<button id="abort" class="danger" type="button">Abort and roll back</button></header>
<main>
<section class="wide" id="timeline-section"><h2>Timeline <span id="clock"></span></h2>
<div id="timeline"><div id="cursor"></div></div><p id="timeline-empty" class="mute"></p></section>
<section id="figures-section"><h2>Last seconds, per region</h2>
<table id="figures"><thead><tr><th>region</th><th>level</th><th>success</th><th>p95</th>
<th>requests</th><th>traffic share</th></tr></thead><tbody></tbody></table>
<p id="figures-note" class="mute">no window yet (a window is written about 2 s after it ends)</p></section>
<section id="levels-section"><h2>Traffic by sovereignty level</h2>
<div class="share" id="levels"></div><p class="legend" id="levels-legend"></p>
<p>sovereignty violations: <b id="violations">0</b></p></section>
<section id="inject-section" hidden><h2>Inject a fault</h2>
<form id="inject"><label for="kind">kind</label><select id="kind" name="kind"></select>
<p id="kind-sees" class="mute"></p><div id="params"></div>
<label for="component">component</label><select id="component" name="component"></select>
<label for="region">region</label><select id="region" name="region"></select>
<label for="selector">or a selector (YAML mapping, e.g. {link: [a, b]})</label>
<input id="selector" name="selector">
<label for="hold">hold for (30s, 2m; empty: until reverted)</label><input id="hold" name="hold">
<p><button type="submit">Inject</button> <span id="inject-answer"></span></p></form></section>
<section id="active-section" hidden><h2>Injected faults</h2><ul id="active"></ul></section>
<section id="findings-section"><h2>Findings</h2><ul id="findings"></ul></section>
<section id="guardrails-section"><h2>Guardrails</h2><ul id="guardrails"></ul></section>
<section class="wide"><h2>Events</h2><div id="log"></div></section>
</main>
<script type="application/json" id="init">__INIT__</script>
<script>
"use strict";
const init = JSON.parse(document.getElementById("init").textContent);
const q = "?token=" + encodeURIComponent(init.token);
const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const kid of kids) node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return node;
}
const COLORS = ["#3b7dd8", "#e07b39", "#3aa676", "#a05fd0", "#d04f7f", "#7f8c2b", "#2bb0b8", "#8c6d46"];
const LEVEL_COLORS = {sovereign: "#1f8a4c", trusted: "#3b7dd8", exposed: "#e0a100", foreign: "#c62d2d"};
const state = {run: null, planStart: null, levelOf: {}, violations: 0, ended: false, phases: {}};
function fmt(t) { return (t < 0 ? "-" : "") + Math.abs(t).toFixed(1) + " s"; }
// Times shown are plan seconds (the timeline's) once the plan started, run seconds before.
function when(t) {
  if (t == null) return "";
  if (state.planStart == null) return "run " + fmt(t);
  return (t < state.planStart ? "" : "+") + fmt(t - state.planStart);
}
function log(t, text, cls) {
  const line = el("div", cls ? {class: cls} : {}, (t == null ? "" : when(t) + "  ") + text);
  $("log").prepend(line);
}
function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = cls || ""; }

function onRun(d) {
  state.run = d;
  $("title").textContent = "bascule · " + d.scenario + " on " + d.design;
  document.title = "bascule · " + d.scenario + " (live)";
  for (const r of d.regions) state.levelOf[r.id] = r.sovereignty;
  const tl = $("timeline");
  for (const p of d.phases) {
    const len = d.run_length || 1;
    const bar = el("div", {class: "bar", "data-phase": String(p.index), "data-state": "pending",
      title: p.kind + " on " + p.target + (p.note ? " — " + p.note : ""),
      style: "left:" + (100 * p.start / len) + "%;width:" + (100 * Math.max(p.end - p.start, 0) / len) + "%"},
      p.name + " · " + p.kind);
    tl.append(el("div", {class: "lane"}, bar));
    state.phases[p.index] = bar;
  }
  if (!d.phases.length) $("timeline-empty").textContent = "the plan has no phase";
  const f = $("findings"); f.replaceChildren();
  for (const x of d.findings) {
    f.append(el("li", {class: x.severity === "info" ? "" : "warn"}, x.severity + ": " + x.message));
  }
  if (!d.findings.length) f.append(el("li", {class: "mute"}, "none"));
  const g = $("guardrails"); g.replaceChildren();
  d.guardrails.forEach((text, i) => g.append(el("li", {"data-kind": d.guardrail_kinds[i]}, text)));
  if (!d.guardrails.length) g.append(el("li", {class: "mute"}, "none"));
}
function onClock(d) {
  if (state.run && state.planStart != null && !state.ended) {
    const at = d.t - state.planStart, len = state.run.run_length || 1;
    const c = $("cursor"); c.style.display = "block";
    c.style.left = (100 * Math.min(Math.max(at, 0), len) / len) + "%";
    $("clock").textContent = at <= len ? "· " + fmt(at) + " / " + fmt(len) : "· plan done (" + fmt(len) + ")";
  }
}
function onFault(d) {
  const bar = d.phase == null ? null : state.phases[d.phase];
  if (bar) bar.dataset.state = d.op;
  const what = (d.name || d.key || "") + " (" + (d.kind || "") + ")";
  log(d.t, d.op + " " + what + (d.rollback ? " — rollback" : ""), d.op === "applied" ? "warn" : "ok");
}
function pct(x) { return x == null ? "–" : (100 * x).toFixed(1) + " %"; }
function onFigures(d) {
  const body = $("figures").tBodies[0]; body.replaceChildren();
  const rows = [["all", "", d.overall, null]];
  Object.entries(d.regions).forEach(([r, f]) => rows.push([r, state.levelOf[r] || "", f, d.share[r]]));
  for (const [r, level, f, share] of rows) {
    body.append(el("tr", {"data-region": r}, el("td", {}, r), el("td", {}, level),
      el("td", {class: f.ratio == null ? "mute" : (f.ratio >= 0.99 ? "ok" : "bad")}, pct(f.ratio)),
      el("td", {}, f.p95_ms == null ? "–" : f.p95_ms.toFixed(0) + " ms"), el("td", {}, f.requests),
      el("td", {}, share == null ? "" : pct(share))));
  }
  $("figures-note").textContent = "the last 5 s of windows, up to " + when(d.window_end);
  const bar = $("levels"), legend = $("levels-legend"); bar.replaceChildren(); legend.replaceChildren();
  Object.entries(d.levels).forEach(([level, share], i) => {
    const color = LEVEL_COLORS[level] || COLORS[i % COLORS.length];
    bar.append(el("span", {title: level, style: "width:" + (100 * share) + "%;background:" + color}));
    legend.append(el("span", {}, "■ ".concat(level, " ", pct(share))));
    legend.lastChild.style.color = color;
  });
}
const handlers = {
  run: onRun, clock: onClock, fault: onFault, figures: onFigures,
  stage: (d) => {
    $("stage").textContent = d.stage;
    if (d.stage === "plan started") state.planStart = d.t;
    log(d.t, d.stage + (d.summary ? " — " + d.summary : ""));
  },
  violation: (d) => {
    state.violations += 1; $("violations").textContent = state.violations; $("violations").className = "bad";
    log(d.t, "sovereignty violation: " + d.data_class + " in " + d.region, "bad");
  },
  guardrail: (d) => {
    for (const li of $("guardrails").children) if (li.dataset.kind === d.guardrail) li.className = "bad";
    log(d.t, "guardrail " + d.guardrail + " tripped: " + d.reason, "bad");
  },
  problem: (d) => log(d.t, "error: " + d.message, "bad"),
  score: (d) => log(d.t, "score " + (d.overall == null ? "unmeasured" : d.overall + " (" + d.grade + ")")
    + (d.failing && d.failing.length ? ", failing: " + d.failing.join(", ") : "")),
  ended: (d) => { state.ended = true; $("abort").disabled = true; $("stage").textContent = "ended";
    setStatus(d.reason + " (exit " + d.exit_code + ")", d.exit_code === 0 ? "ok" : "bad");
    log(d.t, "run ended: " + d.reason + " (exit " + d.exit_code + ")"); },
  note: (d) => log(d.t, d.message),
  injection: (d) => onInjection(d),
};
const source = new EventSource("/events" + q);
for (const [name, fn] of Object.entries(handlers)) {
  source.addEventListener(name, (e) => fn(JSON.parse(e.data)));
}
source.onopen = () => { if (!state.ended) setStatus("live", "ok"); };
source.onerror = () => {
  if (!state.ended) { setStatus("disconnected — retrying", "warn"); return; }
  source.close(); setStatus($("status").textContent + " · page server stopped", $("status").className);
};
async function act(name, body) {
  const answer = await fetch("/actions/" + name + q, {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body || {})});
  const data = await answer.json().catch(() => ({error: "HTTP " + answer.status}));
  if (!answer.ok) throw new Error(data.error || ("HTTP " + answer.status));
  return data;
}
$("abort").addEventListener("click", async () => {
  $("abort").disabled = true;
  try {
    const a = await act("abort");
    log(null, a.message || "abort asked", "warn");
    if (!state.ended) setStatus("aborting…", "warn");  // the run's end may have come first
  }
  catch (e) { log(null, "abort failed: " + e.message, "bad"); $("abort").disabled = false; }
});

// stack up --web: the fault vocabulary as a form.
const injected = {};
function onInjection(d) {
  let li = injected[d.id];
  if (!li) {
    const revert = el("button", {type: "button"}, "Revert");
    revert.addEventListener("click", async () => {
      revert.disabled = true;
      try { await act("revert", {id: d.id}); } catch (e) { log(null, "revert failed: " + e.message, "bad"); }
    });
    li = injected[d.id] = el("li", {"data-id": String(d.id)}, el("span", {}, ""), " ", revert);
    $("active").append(li);
  }
  li.dataset.state = d.state;
  li.firstChild.textContent = d.name + " — " + d.state;
  const over = d.state === "ended" || d.state === "failed";
  if (over && li.lastChild.tagName === "BUTTON") li.lastChild.remove();
  const text = d.name + ": " + d.state + (d.message ? " — " + d.message : "");
  log(d.t, text, d.state === "holding" ? "warn" : (d.state === "failed" ? "bad" : ""));
}
function showParams() {
  const kind = init.vocabulary.find((k) => k.kind === $("kind").value);
  $("kind-sees").textContent = kind.client_sees + " · targets: " + kind.scopes.join(", ");
  const box = $("params"); box.replaceChildren();
  for (const p of kind.params) {
    const id = "param-" + p.name;
    box.append(el("label", {for: id}, p.name + (p.required ? " (required)" : "")),
      el("input", {id: id, "data-param": p.name, placeholder: p.default}));
  }
}
if (init.mode === "stack") {
  $("inject-section").hidden = false; $("active-section").hidden = false;
  $("timeline-section").hidden = true; $("figures-section").hidden = true; $("levels-section").hidden = true;
  $("findings-section").hidden = true; $("guardrails-section").hidden = true;
  $("title").textContent = "bascule · stack of " + init.design;
  $("abort").textContent = "Revert every injected fault";
  $("stage").textContent = "stack running";
  for (const k of init.vocabulary) $("kind").append(el("option", {value: k.kind}, k.kind));
  $("component").append(el("option", {value: ""}, "(any)"));
  for (const c of init.components) $("component").append(el("option", {value: c}, c));
  $("region").append(el("option", {value: ""}, "(any)"));
  for (const r of init.regions) $("region").append(el("option", {value: r.id}, r.id + " · " + r.sovereignty));
  $("kind").addEventListener("change", showParams); showParams();
  $("inject").addEventListener("submit", async (e) => {
    e.preventDefault();
    const params = {};
    for (const input of $("params").querySelectorAll("input")) {
      if (input.value.trim()) params[input.dataset.param] = input.value.trim();
    }
    const body = {kind: $("kind").value, params: params, component: $("component").value,
      region: $("region").value, selector: $("selector").value.trim(), hold: $("hold").value.trim()};
    const answer = $("inject-answer");
    try { const a = await act("inject", body); answer.textContent = a.message; answer.className = "ok"; }
    catch (err) { answer.textContent = err.message; answer.className = "bad"; }
  });
}
</script></body></html>
"""
