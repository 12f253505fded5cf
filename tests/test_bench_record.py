"""benchmarks/record.py: each benchmark rewrites only its own section of docs/benchmarks.md.

No benchmark is run here (no timing at all): the writer is tested on small files, the real results
file is checked for well-formed markers, and every benchmark script is checked to call the writer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re

import pytest

from benchmarks import record as R
from tests.conftest import ROOT

DOC = """# Benchmarks

Hand-written introduction.

## Stats

What is timed.

<!-- bench:stats -->
old stats result
<!-- /bench:stats -->

Earlier results, by hand.

## Report

<!-- bench:report.sqlite -->
old sqlite
<!-- /bench:report.sqlite -->

Between the report sections.

<!-- bench:report.postgresql -->
old postgresql
<!-- /bench:postgresql -->
"""
DOC = DOC.replace("<!-- /bench:postgresql -->", "<!-- /bench:report.postgresql -->")


def fixed(name, body, **kw):
    """section_text with the machine, commit and command given, so the result is exact."""
    return R.section_text(
        name,
        body,
        when=dt.datetime(2026, 12, 6, 13, 5, tzinfo=dt.UTC),
        where="2 cores · X",
        code="abc1234",
        command="python benchmarks/bench_x.py",
        **kw,
    )


def test_replaces_only_its_own_section():
    out = R.replace_section(DOC, "report.sqlite", "new sqlite\n| a |\n|---|")
    assert "old sqlite" not in out and "new sqlite\n| a |\n|---|" in out
    # everything outside that section is byte for byte the same
    before, after = DOC.split("old sqlite\n")
    assert out.startswith(before) and out.endswith(after)
    assert R.sections(out).keys() == {"stats", "report.sqlite", "report.postgresql"}


def test_replacing_twice_gives_the_same_file():
    once = R.replace_section(DOC, "stats", "new")
    assert R.replace_section(once, "stats", "new") == once
    assert once.count("<!-- bench:stats -->") == 1


def test_new_variant_goes_after_the_last_section_of_its_benchmark():
    out = R.replace_section(DOC, "report.mysql", "mysql result")
    names = [m.group(2) for m in R.MARKER.finditer(out) if not m.group(1)]
    assert names == ["stats", "report.sqlite", "report.postgresql", "report.mysql"]
    assert out.index("Between the report sections.") < out.index("mysql result")
    out = R.replace_section(DOC, "stats.small", "small")
    assert out.index("<!-- /bench:stats -->") < out.index("small") < out.index("Earlier results, by hand.")


def test_new_benchmark_is_appended_under_a_heading():
    out = R.replace_section(DOC, "methods", "| method | P@5 |\n|---|---|")
    assert out.startswith(DOC.rstrip("\n"))
    assert out.rstrip().endswith(
        "### methods\n\n<!-- bench:methods -->\n| method | P@5 |\n|---|---|\n<!-- /bench:methods -->"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("<!-- bench:a -->\nx\n", "never closed"),
        ("<!-- bench:a -->\n<!-- bench:b -->\n<!-- /bench:b -->\n<!-- /bench:a -->", "opens inside"),
        ("<!-- bench:a -->\n<!-- /bench:b -->", "closes bench:a"),
        ("<!-- /bench:a -->", "closes nothing"),
        ("<!-- bench:a -->\n<!-- /bench:a -->\n<!-- bench:a -->\n<!-- /bench:a -->", "twice"),
    ],
)
def test_broken_markers_are_refused(text, message):
    with pytest.raises(R.RecordError, match=message):
        R.replace_section(text, "a", "new")


def test_a_marker_inside_a_line_is_text():
    text = "Sections look like `<!-- bench:NAME -->`.\n<!-- bench:a -->\nx\n<!-- /bench:a -->\n"
    assert R.sections(text).keys() == {"a"}
    assert R.replace_section(text, "a", "y").startswith("Sections look like `<!-- bench:NAME -->`.\n")


@pytest.mark.parametrize("name", ["Stats", "report sqlite", "a..b", "", "a/b", "-->"])
def test_bad_names_are_refused(name):
    with pytest.raises(R.RecordError, match="section name"):
        R.replace_section(DOC, name, "x")


def test_section_states_date_machine_commit_command_table_and_notes():
    text = fixed("stats", R.markdown_table(["a", "b"], [[1, "x|y"]]), title="Statistics", notes="Goal met.")
    assert text == (
        "**Statistics** — recorded 2026-12-06 13:05 UTC by the script\n\n"
        "- machine: 2 cores · X\n- commit: abc1234\n- command: `python benchmarks/bench_x.py`\n\n"
        "| a | b |\n|---|---|\n| 1 | x\\|y |\n\nGoal met."
    )


def test_markdown_table_refuses_a_short_row():
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        R.markdown_table(["a", "b"], [[1]])


def test_machine_names_cores_and_cpu():
    line = R.machine()
    assert re.match(r"\d+ cores · \S", line)
    assert "GPU" in line  # "no GPU" or the GPU's name


def test_record_writes_the_file_and_honours_no_record(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    mode = path.stat().st_mode
    parser = argparse.ArgumentParser()
    R.add_record_arguments(parser)

    args = parser.parse_args(["--no-record", "--record-to", str(path)])
    assert R.record("stats", "new", args=args) is None
    assert path.read_text() == DOC

    args = parser.parse_args(["--record-to", str(path)])
    assert R.record("report", "| r |\n|---|", variant="sqlite", title="Report", args=args) == path
    text = path.read_text()
    start, end = R.sections(text)["report.sqlite"]
    assert "**Report** — recorded " in text[start:end] and "| r |\n|---|" in text[start:end]
    assert "old sqlite" not in text and "old stats result" in text and "old postgresql" in text
    assert path.stat().st_mode == mode  # not the temporary file's 0600

    fresh = tmp_path / "new" / "results.md"
    R.record("stats", "first", path=fresh)
    assert fresh.read_text().startswith("# Benchmarks\n") and "first" in fresh.read_text()


def test_the_results_file_has_well_formed_sections():
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    found = R.sections(text)
    assert found, "docs/benchmarks.md holds no bench sections"
    for name in found:
        assert R.NAME.fullmatch(name), name


def test_every_benchmark_script_records_its_results():
    """A bench_*.py that only prints would put its numbers nowhere (they used to be copied by hand)."""
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    assert scripts
    for script in scripts:
        source = script.read_text(encoding="utf-8")
        assert "from benchmarks.record import" in source and re.search(r"\brecord\(", source), (
            f"{script.name} does not call benchmarks.record.record()"
        )
        assert "add_record_arguments(" in source, f"{script.name} lacks --no-record / --record-to"
    run_all = (ROOT / "benchmarks" / "run_all.py").read_text(encoding="utf-8")
    for script in scripts:
        assert script.name in run_all, f"make bench (benchmarks/run_all.py) does not run {script.name}"
