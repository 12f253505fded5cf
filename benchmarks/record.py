"""Benchmark results live in one file, docs/benchmarks.md; every benchmark script writes its own part of it.

Each result is a *section* between two HTML comments (invisible in the rendered page), each alone
on its line::

    <!-- bench:reader.sqlite.20r.think5000 -->
    ...the latest result of that benchmark in that configuration...
    <!-- /bench:reader.sqlite.20r.think5000 -->

`record()` replaces the section of that name and nothing else: the hand-written text around the
markers (what is timed, the baseline, the goal, older results) stays as it is. A section that does
not exist yet is inserted after the last section of the same benchmark (the part of the name before
the first dot), or appended at the end of the file under a heading of its own. Older results stay
in git history (`git log -p docs/benchmarks.md`).

A recorded section says when and where it was measured: the date and time (UTC), the machine (CPU
cores, CPU model, GPU if `nvidia-smi` names one, load average), the commit measured (with
"+ uncommitted changes" when the work tree differs) and the exact command line, then the table.

How a benchmark script uses it (benchmarks/bench_stats.py is a short example)::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository root (scripts do this)
    from benchmarks.record import add_record_arguments, markdown_table, record

    parser = argparse.ArgumentParser(...)
    add_record_arguments(parser)              # --no-record, --record-to PATH
    args = parser.parse_args()
    ...                                       # measure
    table = markdown_table(["method", "P@5", "p"], [["resnet18", "0.75", "< 0.001"], ...])
    record("methods", table, title="Every method on the demo phantoms", args=args,
           variant="phantoms240.96px",        # optional: one section per configuration
           notes="Relevance: shares a positive finding. Goal: every method beats random (p < 0.05).")

* `name`: the benchmark (`stats`, `report`, `methods`, ...), lower case, letters, digits, `_` and `-`.
* `variant`: optional, dotted words naming a configuration whose result should be kept beside the
  others (the database, a collection size, the device), e.g. `sqlite` or `100000`. The section's
  name is `name.variant`. Leave it out when the benchmark has one configuration.
* `args`: the script's parsed arguments; `--no-record` makes `record()` do nothing, `--record-to`
  writes another file (tests, trial runs). Without `args`, `path=` chooses the file.
* Call `record()` once per section, after the measurement, also when a goal is missed (say so in
  `notes` or in the table: a missed goal is a result too).
* Add a hand-written paragraph for a new benchmark to docs/benchmarks.md (what is timed, against
  which baseline in the same run, the goal) with an empty pair of markers under it; without them
  the first run appends the section at the end of the file.

Only the standard library is used, so any script (torch or not) can import it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks.md"

NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
MARKER = re.compile(r"^<!-- (/?)bench:(\S+) -->[ \t]*$", re.MULTILINE)  # a marker is alone on its line


class RecordError(ValueError):
    """The results file's markers are inconsistent, or a section name is not allowed."""


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    """`--no-record` (print only) and `--record-to PATH` (another file than docs/benchmarks.md)."""
    group = parser.add_argument_group("recording (benchmarks/record.py)")
    group.add_argument(
        "--no-record", action="store_true", help="print the results only; leave docs/benchmarks.md unchanged"
    )
    group.add_argument(
        "--record-to",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"write the results section into PATH instead of {RESULTS.relative_to(ROOT)}",
    )


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are str()-ed and `|` inside a cell is escaped."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        row = list(row)
        if len(row) != len(headers):
            raise ValueError(f"a row has {len(row)} cells for {len(headers)} columns: {row!r}")
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else whatever platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu_names() -> list[str]:
    """GPU names reported by nvidia-smi (empty without an NVIDIA driver); never imports torch."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine() -> str:
    """One line: cores, CPU model, GPUs, load average (1/5/15 min) at the time of recording."""
    parts = [f"{os.cpu_count()} cores", cpu_model()]
    gpus = gpu_names()
    parts.append(", ".join(gpus) if gpus else "no GPU")
    try:
        parts.append("load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg()))
    except OSError:
        pass
    return " · ".join(parts)


def commit() -> str:
    """The measured commit (short hash), with '+ uncommitted changes' when the work tree differs."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return f"{head} + uncommitted changes" if dirty else head


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as typed, relative to the repository root where possible."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        script = Path(argv[0])
        try:
            argv[0] = str(script.resolve().relative_to(ROOT))
        except ValueError:
            pass
    return "python " + shlex.join(argv)


def section_text(
    name: str,
    body: str,
    *,
    title: str | None = None,
    notes: str = "",
    when: dt.datetime | None = None,
    where: str | None = None,
    code: str | None = None,
    command: str | None = None,
) -> str:
    """The Markdown between a section's markers (markers excluded)."""
    when = when or dt.datetime.now(dt.UTC)
    lines = [
        f"**{title or name}** — recorded {when.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC by the script",
        "",
        f"- machine: {where if where is not None else machine()}",
        f"- commit: {code if code is not None else commit()}",
        f"- command: `{command if command is not None else command_line()}`",
        "",
        body.strip(),
    ]
    if notes.strip():
        lines += ["", notes.strip()]
    return "\n".join(lines)


def sections(text: str) -> dict[str, tuple[int, int]]:
    """Section name → (start, end) offsets of its content (between the end of the opening marker
    and the start of the closing one). Raises RecordError for unbalanced, nested or repeated markers."""
    found: dict[str, tuple[int, int]] = {}
    open_name, open_end = None, 0
    for match in MARKER.finditer(text):
        closing, name = match.group(1) == "/", match.group(2)
        if not closing:
            if open_name is not None:
                raise RecordError(f"bench:{name} opens inside bench:{open_name}")
            if name in found:
                raise RecordError(f"bench:{name} appears twice")
            open_name, open_end = name, match.end()
        else:
            if open_name != name:
                raise RecordError(f"/bench:{name} closes " + (f"bench:{open_name}" if open_name else "nothing"))
            found[name] = (open_end, match.start())
            open_name = None
    if open_name is not None:
        raise RecordError(f"bench:{open_name} is never closed")
    return found


def replace_section(text: str, name: str, content: str) -> str:
    """`text` with section `name` holding `content`: replaced in place, else inserted after the last
    section of the same benchmark, else appended under a heading. Everything else is unchanged."""
    if not NAME.fullmatch(name):
        raise RecordError(f"section name {name!r}: lower-case words of letters, digits, '_' or '-', joined by dots")
    found = sections(text)
    block = f"\n{content.strip()}\n"
    if name in found:
        start, end = found[name]
        return text[:start] + block + text[end:]
    family = name.split(".", 1)[0]
    siblings = [(end, n) for n, (_, end) in found.items() if n.split(".", 1)[0] == family]
    new = f"<!-- bench:{name} -->{block}<!-- /bench:{name} -->"
    if siblings:
        end, last = max(siblings)
        after = end + len(f"<!-- /bench:{last} -->")
        return text[:after] + "\n\n" + new + text[after:]
    return text.rstrip("\n") + f"\n\n### {family}\n\n{new}\n"


def record(
    name: str,
    body: str,
    *,
    variant: str = "",
    title: str | None = None,
    notes: str = "",
    args: argparse.Namespace | None = None,
    path: Path | None = None,
) -> Path | None:
    """Write the section `name[.variant]` of the results file (see the module docstring).

    Returns the file written, or None when `args.no_record` is set."""
    if args is not None and getattr(args, "no_record", False):
        return None
    target = Path(path or (getattr(args, "record_to", None) if args is not None else None) or RESULTS)
    full = f"{name}.{variant}" if variant else name
    content = section_text(full, body, title=title, notes=notes)
    text = target.read_text(encoding="utf-8") if target.exists() else "# Benchmarks\n"
    updated = replace_section(text, full, content)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=target.parent, prefix=f".{target.name}.", delete=False
    ) as handle:
        handle.write(updated)
    os.chmod(handle.name, target.stat().st_mode & 0o777 if target.exists() else 0o644)
    os.replace(handle.name, target)
    print(f"recorded bench:{full} in {target}", file=sys.stderr, flush=True)  # stdout may carry --json
    return target
