"""manage.py agreement_report STUDY [--format json|csv|questions|html|pdf|imrmc] [--out PATH] [--bootstrap N] …

The same report as the page and the API, computed in this process (the bootstrap included).
STUDY is a study id or its exact name. Text formats go to standard output without --out.
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from readerstudy.models import Study
from reports import exports
from reports import stats as S
from reports.build import report_for_study
from reports.options import DEFAULT_RESAMPLES, NDCG_TIES, options_parse


class Command(BaseCommand):
    help = "Write the agreement report of a study (JSON, long CSV, questions CSV, printable HTML, PDF or iMRMC CSV)."

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id or exact name")
        parser.add_argument("--format", default="json", choices=sorted(exports.FORMATS))
        parser.add_argument("--out", help="output file (default: standard output; required for pdf)")
        parser.add_argument(
            "--bootstrap",
            type=int,
            default=DEFAULT_RESAMPLES,
            help=f"bootstrap resamples and permutations (default {DEFAULT_RESAMPLES}; 0 = none)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--readers-too", action="store_true", help="resample readers as well as cases")
        parser.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
        parser.add_argument("--runs", help="comma-separated model run ids (default: every finished run)")
        parser.add_argument("--p", default="3,10", help="nDCG cut-offs (default 3,10)")
        parser.add_argument("--tie-break", default="index", choices=sorted(S.TIE_BREAK_RULES))
        parser.add_argument(
            "--ndcg-ties",
            default="broken",
            choices=sorted(NDCG_TIES),
            help="headline nDCG of a method with tied distances: ties broken by catalogue position (default) "
            "or tie-averaged",
        )
        parser.add_argument("--class-label", default=None, help="query label defining the query class")
        parser.add_argument(
            "--group",
            default="",
            choices=["", "modality", "query_class", "reader"],
            help="subgroup table in the HTML/PDF",
        )

    def handle(self, *args, **opts):
        study = self._study(opts["study"])
        label = opts["class_label"]
        if label is None:
            label = (
                (study.builder_config or {}).get("class_label", "") if isinstance(study.builder_config, dict) else ""
            )
        try:
            options = options_parse(
                p=opts["p"],
                tie_break=opts["tie_break"],
                ndcg_ties=opts["ndcg_ties"],
                n_resamples=opts["bootstrap"],
                seed=opts["seed"],
                readers_too=opts["readers_too"],
                level=opts["level"],
                runs=opts["runs"],
                class_label=label,
            )
            report = None
            if opts["format"] in ("json", "html", "pdf"):
                report = report_for_study(study=study, options=options, progress=self._progress)
            body, _, name = exports.export_file(
                study=study, options=options, fmt=opts["format"], report=report, group=opts["group"]
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self._write(body, opts["out"], opts["format"], name)

    def _study(self, ref: str) -> Study:
        found = Study.objects.filter(pk=int(ref)).first() if ref.isdigit() else None
        found = found or Study.objects.filter(name=ref).first()
        if found is None:
            raise CommandError(f"No study with id or name {ref!r}.")
        return found

    def _progress(self, done: int, total: int, note: str) -> None:
        self.stderr.write(f"[{done}/{total}] {note}")

    def _write(self, body: bytes, out: str | None, fmt: str, name: str) -> None:
        if out:
            path = Path(out)
            if path.is_dir():
                path = path / name
            path.write_bytes(body)
            self.stderr.write(f"wrote {path} ({len(body)} bytes)")
        elif fmt == "pdf":
            raise CommandError("A PDF needs --out PATH.")
        else:
            sys.stdout.flush()
            self.stdout.write(body.decode(), ending="")
