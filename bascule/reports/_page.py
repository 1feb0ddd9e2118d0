"""The page shell the HTML reports share (report.html, compare.html): doctype, the Content Security
Policy that lets the page load nothing, and the stylesheet with its light and dark themes. Pure."""

from __future__ import annotations

from html import escape

__all__ = ["CSP", "PAGE_CSS", "render_page"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

PAGE_CSS = """
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --card: #ffffff; --fg: #1c2430; --muted: #5b6573; --line: #dde1e7; --grid: #e9ecf0;
  --accent: #1565c0; --p95: #7b1fa2; --pass: #1b873f; --fail: #c62828; --warn: #b26a00;
  --font: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  --mono: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #12161c; --card: #1b2129; --fg: #e6e9ee; --muted: #9aa4b2; --line: #2d3540; --grid: #262d37;
          --accent: #64a8f0; --p95: #ce93d8; --pass: #4cc46e; --fail: #ef6a6a; --warn: #f0a848; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 15px/1.5 var(--font); }
main, .page-head, footer { max-width: 1120px; margin: 0 auto; padding: 0 20px; }
.page-head { padding-top: 28px; }
.eyebrow { margin: 0; color: var(--muted); font-size: 13px; letter-spacing: .04em;
           text-transform: uppercase; }
h1 { margin: 4px 0 2px; font-size: 26px; line-height: 1.25; }
h2 { font-size: 19px; margin: 0 0 12px; }
.sub { margin: 0 0 14px; color: var(--muted); }
.sub strong { color: var(--fg); font-weight: 600; }
code, .id, .mono { font-family: var(--mono); font-size: 13px; }
a { color: var(--accent); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px;
          margin: 16px 0; }
dl.meta { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 6px 18px;
          margin: 0 0 8px; font-size: 14px; }
dl.meta div { min-width: 0; }
dl.meta dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.score-grid { display: grid; grid-template-columns: 220px 1fr; gap: 22px; align-items: start; }
@media (max-width: 760px) { .score-grid { grid-template-columns: 1fr; } }
.score-card { border-radius: 10px; padding: 16px; text-align: center; border: 1px solid var(--line); }
.overall { font-size: 52px; font-weight: 700; line-height: 1; font-variant-numeric: tabular-nums; }
.overall small { font-size: 18px; color: var(--muted); font-weight: 500; }
.grade { display: inline-block; margin: 10px 0 8px; width: 54px; height: 54px; line-height: 54px;
         border-radius: 50%; font-size: 30px; font-weight: 700; color: #fff; background: var(--muted); }
.grade-A { background: #1b873f; } .grade-B { background: #4d8f1e; } .grade-C { background: #b88a00; }
.grade-D { background: #d96c00; } .grade-F { background: #c62828; }
.verdict { display: block; font-weight: 700; letter-spacing: .08em; }
.verdict.pass { color: var(--pass); } .verdict.fail { color: var(--fail); }
.cap { margin-top: 10px; font-size: 13px; color: var(--fail); }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase;
     letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
.table-wrap { overflow-x: auto; }
.dim-name { font-weight: 600; text-transform: capitalize; white-space: nowrap; }
.why { color: var(--muted); font-size: 13px; }
.recommendation { color: var(--fg); font-size: 13px; margin-top: 4px; }
.recommendation::before { content: "→ "; color: var(--fail); }
svg.bar { width: 120px; height: 10px; display: block; margin-top: 5px; }
svg.bar .track { fill: var(--grid); }
.bar-pass { fill: var(--pass); } .bar-fail { fill: var(--fail); } .bar-unmeasured { fill: none; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.card .value { font-size: 21px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .note { color: var(--muted); font-size: 12.5px; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 8px; }
svg.chart { width: 100%; height: auto; display: block; font-family: var(--font); }
svg.chart .grid { stroke: var(--grid); stroke-width: 1; }
svg.chart .frame { fill: none; stroke: var(--line); }
svg.chart .plot-bg { fill: none; }
svg.chart .tick { fill: var(--muted); font-size: 11px; }
svg.chart .axis-title { fill: var(--muted); font-size: 12px; }
svg.chart .annotation { fill: var(--fg); font-size: 11.5px; paint-order: stroke; stroke: var(--card);
                        stroke-width: 3px; stroke-linejoin: round; }
svg.chart .objective { stroke: var(--muted); stroke-width: 1.2; stroke-dasharray: 6 4; }
svg.chart .marker { stroke: var(--fg); stroke-width: 1; stroke-opacity: .55; stroke-dasharray: 2 3; }
svg.chart .rto-line { stroke: var(--fail); stroke-width: 1.4; stroke-dasharray: 5 3; stroke-opacity: 1; }
svg.chart .rto-label { fill: var(--fail); font-weight: 600; }
svg.chart .fault-bar { stroke: var(--fg); stroke-width: 3; stroke-opacity: .5; }
svg.chart .line-success { fill: none; stroke: var(--accent); stroke-width: 2.2; stroke-linejoin: round; }
svg.chart .line-p95 { fill: none; stroke: var(--p95); stroke-width: 2; stroke-linejoin: round; }
svg.chart .lane-label { fill: #fff; font-size: 11px; font-weight: 600; pointer-events: none; }
svg.chart .hover circle { fill: transparent; stroke: none; }
svg.chart .hover circle:hover { fill: var(--fg); fill-opacity: .6; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 10px 0 0; padding: 0; list-style: none;
          font-size: 13px; }
.legend li { display: flex; align-items: center; gap: 6px; }
.swatch { width: 12px; height: 12px; border-radius: 2px; flex: none; }
.swatch-line { width: 18px; height: 0; border-top: 3px solid; flex: none; }
.swatch-dash { width: 18px; height: 0; border-top: 2px dashed; flex: none; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 22px; }
@media (max-width: 860px) { .two { grid-template-columns: 1fr; } }
h3 { font-size: 15px; margin: 0 0 6px; }
ol.findings { margin: 0; padding-left: 22px; }
ol.findings li { margin: 4px 0; }
.tag { display: inline-block; font-size: 11px; font-weight: 650; text-transform: uppercase;
       letter-spacing: .04em; border-radius: 4px; padding: 0 6px; margin-right: 6px;
       border: 1px solid currentColor; }
.tag-recommendation { color: var(--fail); } .tag-sovereignty { color: var(--warn); }
.tag-plan { color: var(--muted); } .tag-discovered, .tag-spans { color: var(--warn); }
.level { font-weight: 600; }
.level-sovereign { color: #2e9e4f; } .level-trusted { color: #2f6fd0; }
.level-exposed { color: #f08a24; } .level-foreign { color: #d6342c; }
.empty { color: var(--muted); margin: 0; }
.warning { border-left: 4px solid #b7791f; background: #fffaf0; padding: 6px 10px; margin: 0 0 10px; }
footer { color: var(--muted); font-size: 12.5px; padding-bottom: 30px; }
@media print {
  body { background: #fff; }
  section { break-inside: avoid; border-color: #ccc; }
}
"""


def render_page(title: str, body: str, extra_css: str = "") -> str:
    """A whole page: `title` is plain text (escaped here), `body` and `extra_css` are markup."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{escape(title, quote=True)}</title><style>{PAGE_CSS}{extra_css}</style></head>"
        f"<body>{body}</body></html>\n"
    )
