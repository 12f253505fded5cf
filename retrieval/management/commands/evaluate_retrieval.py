"""manage.py evaluate_retrieval RUN --k 1 3 5 10 [--json]"""

import json

from django.core.management.base import BaseCommand, CommandError

from readerstudy.errors import ApplicationError
from retrieval.cli import run_lookup
from retrieval.ml.metrics import AP_DEFINITIONS


class Command(BaseCommand):
    help = ("Offline retrieval evaluation of a run over its split's test part: P@k (micro and macro), mAP@k "
            "(definition named; all definitions available), nDCG@k (binary; graded with a numeric label), each "
            "beside its random-retrieval expectation and a paired t-test; hubness; distance correlation. "
            "Runs in this process (numpy only) and stores the result on the run.")

    def add_arguments(self, parser):
        parser.add_argument("run", help="run id or name")
        parser.add_argument("--k", nargs="+", type=int, default=[1, 3, 5, 10])
        parser.add_argument("--map-definition", choices=list(AP_DEFINITIONS), default="min_k_R",
                            help="AP@k denominator: min(k,R) (default), hits in top k, R, or k")
        parser.add_argument("--gain", choices=["exp", "linear"], default="exp")
        parser.add_argument("--part", choices=["train", "val", "test"], default="test")
        parser.add_argument("--labels", nargs="+", default=None, help="labels that define relevance")
        parser.add_argument("--graded-label", default=None, help="numeric label for graded nDCG")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **o):
        from retrieval.evaluation import evaluate_run
        from retrieval.models import ModelRun

        run = run_lookup(o["run"])
        try:
            result = evaluate_run(run=run, ks=o["k"], ap_definition=o["map_definition"], gain=o["gain"],
                                  part=o["part"], labels=o["labels"], graded=o["graded_label"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        run.metrics = {**run.metrics, "retrieval": result}
        ModelRun.objects.filter(pk=run.pk).update(metrics=run.metrics)
        if o["json"]:
            self.stdout.write(json.dumps(result, indent=2))
            return
        self.stdout.write(format_table(result))


def format_table(result: dict) -> str:
    """A plain-text table: metric, value, random expectation, t, p."""
    lines = [f"{result['n_queries']} queries ({result['part']} part), metric {result['metric']}, "
             f"relevance: {', '.join(result['labels']) or '—'}; mAP = AP@k over {result['ap_definition']}",
             f"{'metric':<28}{'value':>9}{'random':>9}{'t':>9}{'p':>11}"]
    for key in sorted(k for k in result if k.endswith("_random")):
        name = key[: -len("_random")]
        if "[" in name or name not in result:
            continue
        t, p = result.get(f"{name}_t"), result.get(f"{name}_p")
        lines.append(f"{name:<28}{_f(result[name]):>9}{_f(result[key]):>9}{_f(t):>9}{_p(p):>11}")
    hub = [k for k in result if k.startswith("hubness") or k.startswith("skew") or k.startswith("antihub")]
    for key in sorted(hub):
        lines.append(f"{key:<28}{_f(result[key]):>9}")
    if "distance_correlation_r" in result:
        lines.append(f"{'distance correlation r':<28}{_f(result['distance_correlation_r']):>9}")
    return "\n".join(lines)


def _f(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def _p(v) -> str:
    return "—" if v is None else (f"{v:.1e}" if v < 0.001 else f"{v:.4f}")
