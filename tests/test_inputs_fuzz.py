"""Every bad input is a located error, never a traceback or a hang (issue 16).

A property test mutates the real scenario and design files (byte flips, control bytes, truncation,
deep nesting, alias bombs, huge numbers and durations, wrong types) and loads each mutant as
`bascule validate` does, in-process; table tests pin each limit; a CLI test checks the exit code.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bascule.errors import Problem, ScenarioError
from bascule.model.design import Design
from bascule.model.durations import parse_duration
from bascule.model.loading import (
    MAX_FILE_BYTES,
    parse_design,
    parse_scenario,
    read_any,
    read_design,
    read_scenario,
    scenario_design_path,
)
from bascule.model.scenario import Scenario
from bascule.model.source import MAX_DEPTH, MAX_NODES, MAX_STRING, parse_yaml
from bascule.plan import plan

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted([*ROOT.glob("scenarios/*/*.yaml"), *ROOT.glob("designs/*.yaml")], key=str)
SECONDS_PER_CALL = 5.0


# -- the property -----------------------------------------------------------------------------

LAUGHS = b"a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + b"".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n".encode() for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)
HUGE = [
    b"99999999999999999999999h",
    b"18446744073709551616s",
    b"1e22",
    b"-1",
    b"0s",
    b"0",
    b".inf",
    b"-.inf",
    b".nan",
    b"9" * 5000,
    b"1" * 400 + b"d",
    b"2025-13-45",
    b"31d",
]
WRONG_TYPES = [b"[]", b"{}", b"null", b"true", b"'x'", b"[1, [2, {a: 3}]]", b"!!binary aGk=", b"~"]
SCALAR = re.compile(rb"(?<=: )[^\s\[\]{}#,][^\n#]*")
"""A value written after ``key: `` on its line."""


def _at(data: bytes, position: int) -> int:
    return position % (len(data) + 1)


@st.composite
def mutants(draw: st.DrawFn) -> tuple[Path, bytes]:
    source = draw(st.sampled_from(CORPUS))
    data = source.read_bytes()
    kind = draw(
        st.sampled_from(["flip", "control", "truncate", "nest", "alias", "number", "type", "bytes", "long"])
    )
    position = _at(data, draw(st.integers(min_value=0)))
    values = list(SCALAR.finditer(data))
    if kind == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            out[_at(data, draw(st.integers(0))) % len(out)] = draw(st.integers(0, 255))
        return source, bytes(out)
    if kind == "control":
        byte = draw(st.sampled_from([*range(0, 9), 11, 12, *range(14, 32), 127]))
        return source, data[:position] + bytes([byte]) + data[position:]
    if kind == "truncate":
        return source, data[:position]
    if kind == "nest":
        # Few very deep lists: PyYAML's scanner takes most of a second over a thousand '['.
        depth = draw(st.sampled_from([MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 100, 200, 5000]))
        nested = b"[" * depth + b"]" * depth if draw(st.booleans()) else b"{a: " * depth + b"}" * depth
        return source, _replace(data, values, draw(st.integers(0)), nested)
    if kind == "alias":
        bomb = draw(st.sampled_from([b"&x [*x]", b"&x {a: *x}", b"&x {<<: *x}", b"&x [[[*x]]]", b"laughs"]))
        if bomb == b"laughs":
            return source, data + b"\n" + LAUGHS
        return source, _replace(data, values, draw(st.integers(0)), bomb)
    if kind == "number":
        return source, _replace(data, values, draw(st.integers(0)), draw(st.sampled_from(HUGE)))
    if kind == "type":
        return source, _replace(data, values, draw(st.integers(0)), draw(st.sampled_from(WRONG_TYPES)))
    if kind == "bytes":
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xef\xbb\xbf"]))
        return source, data[:position] + bad + data[position:]
    return source, _replace(data, values, draw(st.integers(0)), b"x" * (MAX_STRING + 1))


def _replace(data: bytes, values: list[re.Match[bytes]], pick: int, new: bytes) -> bytes:
    if not values:
        return data + b"\nextra: " + new + b"\n"
    match = values[pick % len(values)]
    return data[: match.start()] + new + data[match.end() :]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Path, Design]]:
    """A copy of scenarios/ and designs/, so that a mutant sits where its original does and its
    ``design: ../../designs/…`` still resolves; and the copied designs, read once."""
    base = tmp_path_factory.mktemp("corpus").resolve()
    shutil.copytree(ROOT / "scenarios", base / "scenarios")
    shutil.copytree(ROOT / "designs", base / "designs")
    return base, {path: read_design(path) for path in base.glob("designs/*.yaml")}


def validate_in_process(path: Path, designs: Mapping[Path, Design] | None = None) -> None:
    """What `bascule validate` does with one file: read it, and plan a scenario against its
    design (taken from `designs` when it is one of the unmutated copies, read once)."""
    document = read_any(path)
    if isinstance(document, Scenario):
        design_path = scenario_design_path(path, document)
        if design_path is not None:
            design = (designs or {}).get(design_path) or read_design(design_path)
            plan(design, document)


def assert_located(problems: tuple[Problem, ...]) -> None:
    assert problems
    for problem in problems:
        assert problem.file, problem
        assert problem.line is not None and problem.line >= 1, problem
        assert problem.column is None or problem.column >= 1, problem


@settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(mutant=mutants())
def test_a_mutated_file_loads_or_fails_with_located_problems_in_bounded_time(
    tree: tuple[Path, dict[Path, Design]], mutant: tuple[Path, bytes]
) -> None:
    base, designs = tree
    source, data = mutant
    path = base / source.relative_to(ROOT).parent / f"_mutant{source.suffix}"
    path.write_bytes(data)
    started = time.monotonic()
    try:
        validate_in_process(path, designs)
    except ScenarioError as exc:
        assert_located(exc.problems)
    finally:
        elapsed = time.monotonic() - started
        path.unlink()
    assert elapsed < SECONDS_PER_CALL


def test_every_real_file_still_loads_and_plans() -> None:
    for path in [*CORPUS, *ROOT.glob("examples/*/*.yaml"), *ROOT.glob("tests/samples/run-*.yaml")]:
        validate_in_process(path)


# -- files ------------------------------------------------------------------------------------

READERS: list[Callable[[Path], object]] = [read_any, read_design, read_scenario]


def _whole_file_problem(call: Callable[[], object]) -> Problem:
    started = time.monotonic()
    with pytest.raises(ScenarioError) as info:
        call()
    assert time.monotonic() - started < SECONDS_PER_CALL
    (problem,) = info.value.problems
    assert problem.file and problem.line is None
    return problem


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    yield path


@pytest.mark.parametrize("reader", READERS)
def test_only_regular_files_are_read_never_a_blocking_one(
    reader: Callable[[Path], object], tmp_path: Path, fifo: Path
) -> None:
    assert "a directory" in _whole_file_problem(lambda: reader(tmp_path)).message
    assert "a device" in _whole_file_problem(lambda: reader(Path("/dev/null"))).message
    assert "a device" in _whole_file_problem(lambda: reader(Path("/dev/zero"))).message
    assert "a pipe (FIFO)" in _whole_file_problem(lambda: reader(fifo)).message
    assert _whole_file_problem(lambda: reader(tmp_path / "missing.yaml")).message == "no such file"


def test_a_file_over_the_size_limit_is_refused_naming_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    problem = _whole_file_problem(lambda: read_any(path))
    assert "larger than 1 MiB" in problem.message and problem.file == str(path)


def test_undecodable_bytes_are_reported_at_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("id: x\ntitle: café\n".encode() + b"description: caf\xe9\n")
    with pytest.raises(ScenarioError) as info:
        read_scenario(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (3, 17)
    assert "not UTF-8" in problem.message and "e9" in problem.message


def test_a_multibyte_character_counts_as_one_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes("title: ééé".encode() + b"\xff\n")
    with pytest.raises(ScenarioError) as info:
        read_scenario(path)
    assert (info.value.problems[0].line, info.value.problems[0].column) == (1, 11)


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\ufffe"])
def test_control_characters_are_located(char: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(f"id: x\ntitle: {char}y\n", "s.yaml")
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (2, 8)
    assert f"U+{ord(char):04X}" in problem.message


# -- YAML -------------------------------------------------------------------------------------


def _yaml_problem(text: str) -> Problem:
    started = time.monotonic()
    with pytest.raises(ScenarioError) as info:
        parse_yaml(text, "f.yaml")
    assert time.monotonic() - started < SECONDS_PER_CALL
    assert_located(info.value.problems)
    return info.value.problems[-1]


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 5000 + "]" * 5000,
        "a: " + "{b: " * 5000 + "}" * 5000,
        "".join("  " * i + "- \n" for i in range(MAX_DEPTH + 5)),
    ],
)
def test_nesting_is_bounded_at_the_line_it_goes_too_deep(text: str) -> None:
    problem = _yaml_problem(text)
    assert f"nested deeper than {MAX_DEPTH} levels" in problem.message


def test_nesting_at_the_limit_is_accepted() -> None:
    data, _ = parse_yaml("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1), "f.yaml")
    assert isinstance(data, list)


def test_nesting_built_from_a_chain_of_aliases_is_bounded() -> None:
    text = "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 200))
    assert "nested deeper" in _yaml_problem(text).message


def test_a_billion_laughs_stops_at_the_expansion_limit() -> None:
    problem = _yaml_problem(LAUGHS.decode())
    assert f"more than {MAX_NODES} values once aliases are expanded" in problem.message


def test_merge_keys_cannot_expand_without_bound() -> None:
    """Nine merges of the same mapping, twelve levels deep: 9^12 keys if each merge were copied.
    PyYAML 6.0.3 copies them, and the expansion is refused; 6.0.4 merges a repeated alias once,
    so the file holds its 2 keys a level. Either way nothing grows without bound, fast."""
    names = ["a", *(f"b{i}" for i in range(12))]
    text = "a: &a {x: 1, y: 2}\n" + "".join(
        f"{name}: &{name} {{<<: [{', '.join([f'*{previous}'] * 9)}]}}\n"
        for previous, name in itertools.pairwise(names)
    )
    started = time.monotonic()
    try:
        data, _ = parse_yaml(text, "f.yaml")
    except ScenarioError as exc:
        assert_located(exc.problems)
        assert "expand to more than" in exc.problems[-1].message
    else:
        assert all(len(value) == 2 for value in data.values())
    assert time.monotonic() - started < SECONDS_PER_CALL


def test_too_many_values_in_the_file_are_refused_while_parsing() -> None:
    problem = _yaml_problem("a: [" + ", ".join(["1"] * (MAX_NODES + 10)) + "]\n")
    assert f"more than {MAX_NODES} values in the file" in problem.message


@pytest.mark.parametrize(
    ("text", "line"),
    [("ok: 1\na: &x [*x]\n", 2), ("ok: 1\na: &x {b: [*x]}\n", 2), ("a: &x {<<: *x}\n", 1)],
)
def test_recursive_aliases_are_located(text: str, line: int) -> None:
    problem = _yaml_problem(text)
    assert problem.line == line
    assert "contains it" in problem.message


def test_a_string_over_the_limit_is_refused_at_its_line() -> None:
    problem = _yaml_problem("a: 1\nb: " + "x" * (MAX_STRING + 1) + "\n")
    assert problem.line == 2 and f"the limit is {MAX_STRING}" in problem.message


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("9" * 5000, "4300 digits"),
        ("2025-13-45", "month must be in 1..12"),
        ("2025-01-01T00:00:00+99:00", "offset"),
    ],
)
def test_values_yaml_accepts_but_python_cannot_build_are_located(value: str, fragment: str) -> None:
    problem = _yaml_problem(f"a: 1\nb: {value}\n")
    assert problem.line == 2 and fragment in problem.message


@pytest.mark.parametrize(("key", "line"), [("[1, 2]", 2), ("{a: 1}", 2), ("*big", 1)])
def test_a_key_that_is_not_a_scalar_is_refused_at_its_line(key: str, line: int) -> None:
    # An alias is located where its anchor is.
    problem = _yaml_problem(f"big: &big [1, 2]\n? {key}\n: 3\n")
    assert problem.line == line and problem.message == "a key must be a plain scalar"


# -- a scenario's design ----------------------------------------------------------------------

SCENARIO = """\
id: design-ref
title: t
design: {design}
phases:
  - {{name: p, at: 0s, for: 10s, fault: {{kind: crash}}, target: {{region: aws/us-east-1}}}}
"""


@pytest.mark.parametrize(
    ("design", "fragment"),
    [
        ("missing.yaml", "no such file"),
        ("sub", "a directory"),
        ("/dev/null", "a device"),
        ("/dev/zero", "a device"),
        ("pipe.yaml", "a pipe (FIFO)"),
    ],
)
def test_a_design_that_is_not_a_readable_file_is_reported_at_the_design_line(
    tmp_path: Path, fifo: Path, design: str, fragment: str
) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.format(design=design))
    scenario = read_scenario(path)
    with pytest.raises(ScenarioError) as info:
        scenario_design_path(path, scenario)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.path) == (str(path), 3, ("design",))
    assert fragment in problem.message and repr(design) in problem.message


def test_a_design_path_holding_a_nul_character_is_reported_at_the_design_line(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.format(design='"a\\0b.yaml"'))
    with pytest.raises(ScenarioError) as info:
        scenario_design_path(path, read_scenario(path))
    (problem,) = info.value.problems
    assert problem.line == 3 and "not a valid path" in problem.message
    assert "not a valid path" in _whole_file_problem(lambda: read_design(Path("a\0b"))).message


# -- bounds -----------------------------------------------------------------------------------

DESIGN = (ROOT / "designs" / "active-passive-sovereign.yaml").read_text()
AWS = (ROOT / "scenarios" / "incidents" / "aws-us-east-1-2025-10-20.yaml").read_text()


@pytest.mark.parametrize(
    "value", ["99999999999999999999999h", "18446744073709551616s", 18446744073709551616, "31d", "1e22"]
)
def test_a_duration_over_30_days_is_refused_with_the_reason(value: object) -> None:
    with pytest.raises(ValueError, match="at most 30d"):
        parse_duration(value)
    assert parse_duration("30d") == 30 * 86400


def _design_problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_design(text, "d.yaml")
    assert_located(info.value.problems)
    return [str(p) for p in info.value.problems]


def _scenario_problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    assert_located(info.value.problems)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("request: 3s", "request: 0s", "routing.timeouts.request: must be above 0s: a zero timeout"),
        ("connect: 300ms", "connect: 0", "routing.timeouts.connect: must be above 0s"),
        ("interval: 1s", "interval: 0s", "routing.health_check.interval: must be above 0s: a zero interval"),
        ("failure_threshold: 5", "failure_threshold: 1000000000", "less than or equal to 100000"),
        ("budget: 0.2,", "budget: 0.2, min_retries_per_second: .inf,", "finite number"),
        ("replica_hour: 0.0832", "replica_hour: .nan", "finite number"),
        ("lag: 1s", "lag: 18446744073709551616s", "replication.lag: a duration must be at most 30d"),
        ("token_ttl: 10s", "token_ttl: 0s", "token_ttl: must be above 0s: a zero lifetime"),
    ],
)
def test_design_durations_and_numbers_are_bounded_with_the_reason(old: str, new: str, fragment: str) -> None:
    assert old in DESIGN
    problems = _design_problems(DESIGN.replace(old, new, 1))
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("settle: 10s", "settle: 99999999999999999999999h", "settle: a duration must be at most 30d"),
        ("compress_to: 60s", "time_scale: 1e22", "time_scale is run seconds per incident second"),
        ("compress_to: 60s", "time_scale: 0.0000000001", "between 0.000001"),
        ("compress_to: 60s", "compress_to: 31d", "compress_to: a duration must be at most 30d"),
    ],
)
def test_scenario_durations_and_scales_are_bounded(old: str, new: str, fragment: str) -> None:
    assert old in AWS
    problems = _scenario_problems(AWS.replace(old, new, 1))
    assert any(fragment in p for p in problems), problems


FLAP = """\
id: flapping
title: t
replay: {{time_scale: {scale}, min_phase: 1s}}
phases:
  - name: p
    at: 0s
    for: {length}
    fault: {{kind: flap, period: {period}, min_period: {min_period}, fault: {{kind: crash}}}}
    target: {{region: aws/us-east-1}}
"""


def test_a_phase_cannot_flap_without_bound() -> None:
    text = FLAP.format(scale=1, length="30d", period="1ms", min_period="0s")
    assert any(
        "phases[0].fault.period: the phase would flap more than" in p for p in _scenario_problems(text)
    )
    ok = FLAP.format(scale=1, length="1h", period="1s", min_period="1s")
    assert parse_scenario(ok, "s.yaml").phases[0].end == 3600


def test_a_run_longer_than_30_days_is_refused() -> None:
    text = FLAP.format(scale=100, length="1d", period="1h", min_period="1s")
    assert any("replay: the run would last" in p for p in _scenario_problems(text))


# -- the command line -------------------------------------------------------------------------


def test_validate_and_plan_exit_2_with_located_errors_for_bad_inputs(tmp_path: Path) -> None:
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"id: x\ntitle: \x00\n")
    deep = tmp_path / "deep.yaml"
    deep.write_text("phases: " + "[" * 5000 + "]" * 5000 + "\n")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_bytes(LAUGHS)
    directory = tmp_path / "dir-design.yaml"
    directory.write_text(SCENARIO.format(design="/tmp"))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", "from bascule.cli import main; main()", "validate"]
        + [str(p) for p in (nul, deep, bomb, directory, Path("/dev/zero"))],
        capture_output=True,
        text=True,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{nul}:2:8:" in proc.stderr
    assert f"{deep}:1:" in proc.stderr and "nested deeper" in proc.stderr
    assert f"{bomb}:" in proc.stderr and "aliases are expanded" in proc.stderr
    assert f"{directory}:3:9: design:" in proc.stderr and "a directory" in proc.stderr
    assert "/dev/zero: a device" in proc.stderr
    assert "5 of 5 files invalid" in proc.stderr

    null = tmp_path / "null-design.yaml"
    null.write_text(SCENARIO.format(design="/dev/null"))
    proc = subprocess.run(
        [sys.executable, "-c", "from bascule.cli import main; main()", "plan", str(null)],
        capture_output=True,
        text=True,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{null}:3:9: design:" in proc.stderr and "a device" in proc.stderr
