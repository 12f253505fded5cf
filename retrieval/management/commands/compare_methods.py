"""manage.py compare_methods DATASET [--split NAME] [--k 1 5 10] [--json]"""

import json

from django.core.management.base import BaseCommand, CommandError

from retrieval.cli import dataset_lookup
from retrieval.runs.comparison import comparison_table


class Command(BaseCommand):
    help = (
        "One table of every finished run of a dataset evaluated on the same split's test part: "
        "P@k, mAP@k and nDCG@k of each method beside the random-retrieval expectation, with p-values "
        "(the papers' comparisons, redone on this collection)."
    )

    def add_arguments(self, parser):
        parser.add_argument("dataset")
        parser.add_argument("--split", default=None, help="split name (default: the split most runs use)")
        parser.add_argument("--k", nargs="+", type=int, default=[1, 5, 10])
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, dataset, split, k, as_json, **o):
        table = comparison_table(dataset=dataset_lookup(dataset), split_name=split, ks=k)
        if not table["rows"]:
            raise CommandError(table["note"] or "No finished run to compare.")
        if as_json:
            self.stdout.write(json.dumps(table, indent=2))
            return
        cols = table["columns"]
        self.stdout.write(f"Split {table['split']!r}, test part; each cell: value (random) p")
        self.stdout.write(f"{'run':<40}{'method':<14}" + "".join(f"{c:>26}" for c in cols))
        for row in table["rows"]:
            cells = "".join(f"{_cell(row['cells'].get(c)):>26}" for c in cols)
            self.stdout.write(f"{row['name'][:39]:<40}{row['method']:<14}{cells}")
        for note in table["skipped"]:
            self.stdout.write(f"skipped: {note}")


def _cell(cell) -> str:
    if not cell:
        return "—"
    p = cell["p"]
    shown = "" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"
    return f"{cell['value']:.3f} ({cell['random']:.3f}) {shown}"
