"""The human-facing renderings of a run result (docs/result.md): summary.md, report.html and the
PNG charts, from a hand-made `bascule.result/1` document of the AWS us-east-1 replay and variants
derived from it (violations and a cap, nulls, gaps, hostile strings)."""

from __future__ import annotations

import copy
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from html_check import parse
from matplotlib import image as mpimg

from bascule.reports.charts import render_charts
from bascule.reports.html import render_html
from bascule.reports.markdown import render_markdown
from bascule.reports.model import parse_result

SAMPLE = Path(__file__).parent / "samples" / "result-sample.json"
SOURCE = "https://aws.amazon.com/message/101925/"
HOSTILE = (
    '<script>alert("x")</script> "quoted" \'single\' & | pipe | ](javascript:alert(1)) '
    "$\\frac{1}{0}$ <img src=x onerror=alert(1)> *star* `tick`"
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sample() -> dict[str, Any]:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def with_violations(result: dict[str, Any], listed: int = 3, total: int = 3) -> dict[str, Any]:
    doc = copy.deepcopy(result)
    doc["violations"] = [
        {
            "t": round(12.3 + i * 0.4, 2),
            "request_id": f"load-{1000 + i}",
            "source": "load" if i % 2 == 0 else "probe:rag-confidential",
            "data_class": "confidential",
            "hop": {
                "component": "retriever",
                "region": "aws/us-east-1",
                "provider": "aws",
                "jurisdiction": "US",
                "sovereignty": "foreign",
            },
            "minimum": "sovereign",
            "level": "foreign",
        }
        for i in range(listed)
    ]
    doc["figures"]["sovereignty_violations"] = total
    for dim in doc["score"]["dimensions"]:
        if dim["name"] == "sovereignty":
            dim.update(
                measured=total,
                sub_score=0.0,
                passed=False,
                explanation=f"{total} requests touched a region below their data class's level.",
                recommendation="Turn the gateway's sovereignty guard on so that confidential asks fail "
                "closed.",
            )
    doc["score"].update(
        overall=50.0, grade="D", passed=False, cap={"at": 50, "reason": f"{total} sovereignty violations"}
    )
    return doc


def hostile(result: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(result)
    run = doc["run"]
    run["dir"] = HOSTILE
    run["reason"] = HOSTILE
    run["scenario"].update(id=HOSTILE, title=HOSTILE, source=["javascript:alert(1)", SOURCE])
    run["design"].update(id=HOSTILE, title=HOSTILE)
    run["design"]["regions"].append(
        {"id": HOSTILE, "provider": HOSTILE, "jurisdiction": HOSTILE, "sovereignty": HOSTILE}
    )
    for phase in doc["phases"]:
        phase.update(name=HOSTILE, kind=HOSTILE, target=HOSTILE)
    for dim in doc["score"]["dimensions"]:
        dim.update(explanation=HOSTILE, recommendation=HOSTILE)
    doc["score"]["grade"] = HOSTILE
    doc["findings"] = [HOSTILE]
    doc["events"] = [{"t": 1.0, "text": HOSTILE}]
    doc = with_violations(doc)
    for violation in doc["violations"]:
        violation.update(request_id=HOSTILE, data_class=HOSTILE, minimum=HOSTILE)
        violation["hop"].update(component=HOSTILE, region=HOSTILE)
    n = len(doc["series"]["t"])
    doc["series"]["share_region"][HOSTILE] = [0.0] * n
    doc["series"]["share_level"][HOSTILE] = [0.0] * n
    return doc


def all_null_figures(result: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(result)
    doc["figures"].update(
        time_to_detect=None,
        time_to_failover=None,
        rto=None,
        recovered=False,
        failback=None,
        cost=None,
        rpo=None,
        error_budget=None,
        impact_window=None,
        latency={"p50": None, "p95": None, "p99": None},
    )
    doc["score"].update(overall=None, grade=None)
    doc["run"]["hypothesis"] = None
    return doc


# --- Markdown ---------------------------------------------------------------------------------


def table_rows(markdown: str, first_header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with `first_header`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_markdown_title_line(sample: dict[str, Any]) -> None:
    md = render_markdown(parse_result(sample))
    title = md.splitlines()[0]
    assert title.startswith("## ❌ FAIL")
    assert "89.7/100, grade B" in title
    assert "aws-us-east-1-2025-10-20 on active-passive-sovereign" in title
    passing = copy.deepcopy(sample)
    passing["score"]["passed"] = True
    assert render_markdown(parse_result(passing)).splitlines()[0].startswith("## ✅ PASS")
    assert f"[aws.amazon.com/message/101925]({SOURCE})" in md


def test_markdown_dimension_table(sample: dict[str, Any]) -> None:
    rows = table_rows(render_markdown(parse_result(sample)), "dimension")
    assert [r[0] for r in rows] == [
        "availability ✅",
        "recovery ✅",
        "latency ✅",
        "correctness ✅",
        "durability ❌",
        "sovereignty ✅",
    ]
    assert rows[0][1:5] == ["99.34 %", "≥ 99 %", "100.0", "25"]
    assert rows[1][1:5] == ["6.8 s", "≤ 15 s", "100.0", "20"]
    assert rows[2][1:3] == ["380 ms", "≤ 1.5 s"]
    assert rows[4][1:5] == ["840 ms", "≤ 0 s", "0.0", "10"]
    assert rows[4][5].startswith("2 of 120 acknowledged canary writes were lost")
    assert "No cap applied" in render_markdown(parse_result(sample))


def test_markdown_phase_table_real_and_run_times(sample: dict[str, Any]) -> None:
    rows = table_rows(render_markdown(parse_result(sample)), "#")
    assert len(rows) == 6
    assert rows[0] == [
        "0",
        "DynamoDB endpoint record empty",
        "dns",
        "store in aws/us-east-1",
        "06:48 → 09:25",
        "0.00 → 10.80 s",
        "0.00 → 10.81 s",
        "96.74 %",
        "940 ms",
        "—",  # a sample from before the fault's traffic was counted
    ]
    assert rows[3][4] == "11:28 → 20:50"  # 4h40m → 14h02m after 06:48 UTC
    counted = copy.deepcopy(sample)
    counted["phases"][0]["traffic"] = {"connections": 0, "bytes": 0, "lookups": 21, "resets": 0}
    counted["phases"][0]["reached"] = True
    counted["phases"][1]["traffic"] = {"connections": 1, "bytes": 90, "lookups": 0, "resets": 0}
    rows = table_rows(render_markdown(parse_result(counted)), "#")
    assert (rows[0][9], rows[1][9]) == ("21 lookups", "1 connection")
    no_clock = copy.deepcopy(sample)
    no_clock["run"]["scenario"]["started_at"] = None
    no_clock["phases"][0]["actual_start"] = None
    rows = table_rows(render_markdown(parse_result(no_clock)), "#")
    assert rows[0][4] == "+0:00 → +2:37"
    assert rows[0][6] == "— → 10.81 s"
    seconds = copy.deepcopy(no_clock)
    seconds["phases"][0]["real_start"], seconds["phases"][0]["real_end"] = 3.0, 13.0
    rows = table_rows(render_markdown(parse_result(seconds)), "#")
    assert rows[0][4] == "+3s → +13s", "a phase of seconds in seconds, not +0:00 → +0:00"


def test_markdown_findings_order(sample: dict[str, Any]) -> None:
    md = render_markdown(parse_result(with_violations(sample, listed=100, total=130)))
    section = md.split("### Top findings", 1)[1].split("###", 1)[0]
    items = [line for line in section.splitlines() if re.match(r"\d+\. ", line)]
    assert len(items) == 5
    assert items[0].startswith("1. 🔧 **durability**: Replicate the store synchronously")
    assert items[1].startswith("2. 🔧 **sovereignty**: Turn the gateway")
    assert items[2].startswith("3. 🛂 130 sovereignty violations: 'confidential' data (requires sovereign)")
    # A document without the counts over every violation says its count is of the ones listed.
    assert "retriever in aws/us-east-1 (aws, US, foreign) 100× of the first 100;" in items[2] or (
        "retriever in aws/us-east-1 (aws, US, foreign) 100× of the first 100." in items[2]
    )
    assert "The first at 12.30 s (the first 100 are listed)" in items[2]
    counted = with_violations(sample, listed=100, total=130)
    counted["figures"]["violations_by_hop"] = [
        {
            "data_class": "confidential",
            "component": "retriever",
            "region": "aws/us-east-1",
            "level": "foreign",
            "count": 130,
        }
    ]
    md = render_markdown(parse_result(counted))
    assert "retriever in aws/us-east-1 (aws, US, foreign) 130×." in md
    assert items[3].startswith("4. 📋 only scaleway/fr-par may serve")
    assert items[4].startswith("5. 📋 'confidential' is never routed")
    assert "**Cap:** Overall score capped at 50: 130 sovereignty violations" in md


def test_markdown_key_figures(sample: dict[str, Any]) -> None:
    figures = {r[0]: r[1] for r in table_rows(render_markdown(parse_result(sample)), "figure")}
    assert figures["**RTO**"] == "6.8 s"
    assert figures["**Time to detect**"] == "1.35 s"
    assert figures["**Time to fail over**"] == "3.1 s"
    assert figures["**Failback**"] == "0 s"  # measured as zero, which is not unknown
    assert figures["**RPO**"] == "2 of 120 writes lost"
    assert figures["**Error budget**"] == "66 % burnt"
    assert figures["**Cost**"] == "0.79 USD/h"
    nulls = {
        r[0]: r[1] for r in table_rows(render_markdown(parse_result(all_null_figures(sample))), "figure")
    }
    assert nulls["**RTO**"] == "not recovered"
    for label in (
        "Time to detect",
        "Time to fail over",
        "Failback",
        "RPO",
        "Error budget",
        "Cost",
        "Latency p95",
    ):
        assert nulls[f"**{label}**"] == "—", label


def test_markdown_escapes_hostile_strings(sample: dict[str, Any]) -> None:
    md = render_markdown(parse_result(hostile(sample)))
    assert "<script" not in md and "<img" not in md
    assert "&lt;script&gt;" in md
    assert not re.search(r"(?<!\\)\]\(javascript", md)
    assert "(javascript:alert(1))" not in md.split("source:", 1)[1].splitlines()[0].replace("\\](", "")
    for row in table_rows(md, "#"):
        assert len(row) == 10  # a "|" in a name does not add a column
    for row in table_rows(md, "dimension"):
        assert len(row) == 6
    assert all("\n" not in cell for row in table_rows(md, "#") for cell in row)


# --- HTML -------------------------------------------------------------------------------------


def test_html_is_well_formed_and_complete(sample: dict[str, Any]) -> None:
    html = render_html(parse_result(sample))
    assert html.startswith("<!DOCTYPE html>")
    page = parse(html)
    text = " ".join(page.text)
    for heading in (
        "Score",
        "Key figures",
        "Timeline",
        "Where the traffic went",
        "Phases",
        "Findings",
        "Events",
    ):
        assert heading in text
    assert "89.7" in text and "FAIL" in text
    assert "06:48 → 09:25" in text and "0.00 → 10.81 s" in text
    assert "Replicate the store synchronously" in text
    assert "only scaleway/fr-par may serve 'confidential'" in text
    assert "reverted control-plane on aws/us-east-1 (phase 3)" in text
    ids = {attrs["id"] for _, attrs in page.tags if attrs.get("id")}
    charts = [attrs for tag, attrs in page.tags if tag == "svg" and "chart" in (attrs.get("class") or "")]
    assert len(charts) == 3
    for attrs in charts:
        assert attrs["role"] == "img"
        assert all(ref in ids for ref in (attrs["aria-labelledby"] or "").split())


def test_html_loads_nothing_from_the_network(sample: dict[str, Any]) -> None:
    html = render_html(parse_result(sample))
    page = parse(html)
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed")
        for name, value in attrs.items():
            assert name not in ("src", "srcset", "xlink:href", "action", "data", "poster")
            if name == "href":
                assert tag == "a" and value == SOURCE
    assert "url(" not in html and "@import" not in html
    without_sources = html.replace(f'href="{SOURCE}"', "").replace(f">{SOURCE}<", "><")
    assert "http://" not in without_sources and "https://" not in without_sources
    assert "default-src 'none'" in html


def test_html_charts_show_phases_rto_and_levels(sample: dict[str, Any]) -> None:
    html = render_html(parse_result(sample))
    timeline = html.split('aria-labelledby="timeline-title', 1)[1].split("</svg>", 1)[0]
    for phase in sample["phases"]:
        assert f"Phase {phase['index']}: {phase['name']}" in timeline
    assert "RTO 6.8 s" in timeline
    assert timeline.count('class="line-success"') == 1
    assert "objective 99 %" in timeline and "objective 1.5 s" in timeline
    level = html.split('aria-labelledby="traffic-level-title', 1)[1].split("</svg>", 1)[0]
    assert 'fill="#2e9e4f"' in level and 'fill="#d6342c"' in level  # sovereign green, foreign red


def test_html_phase_falls_back_to_planned_times_and_gaps_break_lines(sample: dict[str, Any]) -> None:
    doc = copy.deepcopy(sample)
    doc["phases"][3].update(actual_start=None, actual_end=None)
    for i in (40, 41):
        doc["series"]["success_ratio"][i] = None
        doc["series"]["p95"][i] = None
        for share in (*doc["series"]["share_region"].values(), *doc["series"]["share_level"].values()):
            share[i] = None
    html = render_html(parse_result(doc))
    parse(html)
    assert (
        "Phase 3: Network-state backlog — new instances unreachable (control-plane on aws/us-east-1), "
        "planned 19.27 → 57.94 s" in html
    )
    assert html.count('class="line-success"') == 2
    assert html.count('class="line-p95"') == 2
    level = html.split('aria-labelledby="traffic-level-title', 1)[1].split("</svg>", 1)[0]
    assert level.count("<polygon") == 4  # two levels, each split by the gap


def test_html_lists_violations_and_cap(sample: dict[str, Any]) -> None:
    html = render_html(parse_result(with_violations(sample, listed=100, total=130)))
    page = parse(html)
    text = " ".join(page.text)
    assert "Sovereignty violations (130)" in text
    assert "The first 100 of 130 are listed." in text
    assert "load-1099" in text
    assert "Overall score capped at 50: 130 sovereignty violations" in text
    clean = render_html(parse_result(sample))
    assert "No sovereignty violation" in clean and "Sovereignty violations (0)" in clean


def test_html_escapes_hostile_strings(sample: dict[str, Any]) -> None:
    html = render_html(parse_result(hostile(sample)))
    page = parse(html)
    for tag, attrs in page.tags:
        assert tag not in ("script", "img")
        assert not any(name.startswith("on") for name in attrs)
        if tag == "a":
            assert attrs["href"] == SOURCE
    h1 = html.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert h1 == HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
        '"', "&quot;"
    ).replace("'", "&#x27;")
    assert HOSTILE in page.text  # the title round-trips as text, not markup


def test_html_and_markdown_with_null_figures(sample: dict[str, Any]) -> None:
    doc = all_null_figures(sample)
    html = render_html(parse_result(doc))
    text = " ".join(parse(html).text)
    assert "not recovered" in text
    assert (
        "RTO"
        not in html.split('aria-labelledby="timeline-title', 1)[1].split("</svg>", 1)[0].split("<desc", 1)[0]
    )
    assert "skipped (the scenario has none)" in text


# --- PNG --------------------------------------------------------------------------------------


def decode(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_SIGNATURE)
    pixels = np.asarray(mpimg.imread(io.BytesIO(png), format="png"))
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    return pixels[:, :, :3]


def share_of_colour(pixels: np.ndarray, hex_colour: str, tolerance: float = 0.12) -> float:
    """Fraction of pixels near a colour (areas are drawn at 88 % opacity on white)."""
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    blended = 0.88 * rgb + 0.12
    return float(np.mean(np.all(np.abs(pixels - blended) < tolerance, axis=2)))


def test_png_charts_are_valid_and_not_blank(sample: dict[str, Any]) -> None:
    charts = render_charts(parse_result(sample))
    assert set(charts) == {"timeline.png", "traffic-region.png", "traffic-level.png"}
    for name, png in charts.items():
        pixels = decode(png)
        height, width = pixels.shape[:2]
        assert width >= 800 and height >= 350, name
        assert float(pixels.std()) > 0.05, name
        distinct = len(np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0))
        assert distinct > 50, name
    level = decode(charts["traffic-level.png"])
    assert share_of_colour(level, "#2e9e4f") > 0.05  # sovereign green
    assert share_of_colour(level, "#d6342c") > 0.05  # foreign red
    assert share_of_colour(level, "#2f6fd0") < 0.001  # no trusted traffic in this run


def test_png_charts_survive_hostile_and_empty_documents(sample: dict[str, Any]) -> None:
    for doc in (hostile(sample), all_null_figures(sample)):
        for png in render_charts(parse_result(doc)).values():
            decode(png)
    empty = {
        "schema": "bascule.result/1",
        "run": {},
        "score": {"overall": None, "grade": None, "passed": None, "cap": None, "dimensions": []},
        "figures": {},
        "phases": [],
        "series": {
            "t": [],
            "requests": [],
            "success_ratio": [],
            "p50": [],
            "p95": [],
            "share_region": {},
            "share_level": {},
            "share_provider": {},
        },
        "violations": [],
        "findings": [],
        "events": [],
    }
    for png in render_charts(parse_result(empty)).values():
        decode(png)
    parse(render_html(parse_result(empty)))
    assert render_markdown(parse_result(empty)).startswith("## ❔ —")


def test_charts_leave_matplotlib_global_state_alone() -> None:
    code = (
        "import json, sys, matplotlib\n"
        # Reading rcParams['backend'] would itself resolve the backend through pyplot.
        "params = lambda: {k: matplotlib.rcParams[k] for k in matplotlib.rcParams if k != 'backend'}\n"
        "before = params()\n"
        "from bascule.reports.charts import render_charts\n"
        "from bascule.reports.model import parse_result\n"
        f"render_charts(parse_result(open({str(SAMPLE)!r}, encoding='utf-8').read()))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert params() == before, 'rcParams changed'\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_rendering_all_three_is_fast(sample: dict[str, Any]) -> None:
    render_charts(parse_result(sample))  # matplotlib's first draw loads fonts; the figure is the steady cost
    # CPU time of this process, not wall time: on a loaded machine the wall clock measures the
    # neighbours (5.6 s of wall once, at a load average of 12).
    started = time.process_time()
    render_markdown(parse_result(sample))
    render_html(parse_result(sample))
    render_charts(parse_result(sample))
    assert time.process_time() - started < 5.0


def test_a_fail_kept_only_by_an_unmeasured_dimension_says_so_in_its_title(sample: dict[str, Any]) -> None:
    """Two new users misread "FAIL · 100.0/100, grade A": the title now names what kept the pass."""
    doc = copy.deepcopy(sample)
    for dim in doc["score"]["dimensions"]:
        dim.update(passed=True, sub_score=100.0)
        if dim["name"] == "sovereignty":
            dim.update(passed=None, sub_score=None, measured=None)
    doc["score"].update(overall=100.0, grade="A", passed=False, cap=None)
    doc["run"]["exit_code"] = 1
    md = render_markdown(parse_result(doc))
    assert md.startswith("## ❌ FAIL · 100.0/100, grade A · sovereignty unmeasured — ")
    doc["score"]["dimensions"][0]["passed"] = False  # a failing dimension says it all: no tail
    assert "unmeasured —" not in render_markdown(parse_result(doc)).splitlines()[0]


def test_no_violation_seen_in_a_run_left_unscored_is_not_none(sample: dict[str, Any]) -> None:
    """A new user's interrupted run read "Sovereignty violations 0" beside a dimension unmeasured."""
    from bascule.reports._summary import compute_figures

    doc = copy.deepcopy(sample)
    doc["figures"]["sovereignty_violations"] = 0
    doc["figures"].get("notes", {}).pop("sovereignty", None)
    for dim in doc["score"]["dimensions"]:
        if dim["name"] == "sovereignty":
            dim.update(passed=None, sub_score=None, measured=None)
    shown = next(f for f in compute_figures(parse_result(doc)) if f.label == "Sovereignty violations")
    assert shown.value == "0 seen" and "not scored" in shown.note
