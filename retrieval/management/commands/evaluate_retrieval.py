"""manage.py evaluate_retrieval RUN --k 1 3 5 10 [--json]"""

import json

from django.core.management.base import BaseCommand, CommandError

from core.cli import wait_for_job
from core.errors import ApplicationError, BrokerUnavailable
from core.jobs import JobStatus
from retrieval.cli import ensure_can_wait, run_lookup
from retrieval.ml.metrics import AP_DEFINITION_NAMES, AP_DEFINITIONS, LABEL_DISTANCES
from retrieval.runs.evaluation import evaluation_execute
from retrieval.runs.services import evaluation_options, evaluation_request


class Command(BaseCommand):
    help = (
        "Offline retrieval evaluation of a run over its split's test part: P@k (micro and macro), mAP@k "
        "(definition named; all definitions available), nDCG@k (binary; graded with a numeric label), each "
        "beside its random-retrieval expectation and a paired t-test; hubness; distance correlation. "
        "Queued on the worker's CPU queue (numpy/scipy) with a progress bar unless --sync; the result is "
        "stored on the run and shown on its page."
    )

    def add_arguments(self, parser):
        parser.add_argument("run", help="run id or name")
        parser.add_argument("--k", nargs="+", type=int, default=[1, 3, 5, 10])
        parser.add_argument(
            "--map-definition",
            choices=list(AP_DEFINITIONS),
            default="min_k_R",
            help="AP@k denominator: min(k,R) (default), hits in top k, R, or k",
        )
        parser.add_argument("--gain", choices=["exp", "linear"], default="exp")
        parser.add_argument("--part", choices=["train", "val", "test"], default="test")
        parser.add_argument("--labels", nargs="+", default=None, help="labels that define relevance")
        parser.add_argument("--graded-label", default=None, help="numeric label for graded nDCG")
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--sync", action="store_true", help="evaluate in this process instead of the worker")
        parser.add_argument("--no-wait", action="store_true", help="queue and return at once")

    def handle(self, *args, **o):
        run = run_lookup(o["run"])
        options = {
            "ks": o["k"],
            "ap_definition": o["map_definition"],
            "gain": o["gain"],
            "part": o["part"],
            "labels": o["labels"],
            "graded": o["graded_label"],
        }
        try:
            evaluation_options(run=run, options=options)  # a bad option or run is named before anything else
            if not o["sync"] and not o["no_wait"]:
                ensure_can_wait()
            evaluation = evaluation_request(run=run, options=options, enqueue=not o["sync"])
        except (ApplicationError, BrokerUnavailable) as exc:
            raise CommandError(exc.message) from None
        if o["sync"]:
            evaluation_execute(evaluation_id=evaluation.pk)
            evaluation.refresh_from_db()
        elif o["no_wait"]:
            self.stdout.write(
                f"Evaluation #{evaluation.pk} of run #{run.pk} queued; the result appears on the run page."
            )
            return
        else:
            evaluation = wait_for_job(evaluation, stream=self.stderr)
        if evaluation.status != JobStatus.SUCCEEDED:
            raise CommandError(evaluation.error or f"evaluation #{evaluation.pk} {evaluation.status}")
        result = evaluation.result
        if o["json"]:
            self.stdout.write(json.dumps(result, indent=2))
            return
        self.stdout.write(format_table(result))


def format_table(result: dict) -> str:
    """A plain-text table: metric, value, random expectation, t, p."""
    lines = [
        f"{result['n_queries']} queries ({result['part']} part), metric {result['metric']}, "
        f"relevance: {', '.join(result['labels']) or '—'}; mAP = AP@k over {result['ap_definition']}",
        f"{'metric':<28}{'value':>9}{'random':>9}{'t':>9}{'p':>11}",
    ]
    others = []
    for key in sorted(k for k in result if k.endswith("_random")):
        name = key[: -len("_random")]
        if name not in result:
            continue
        t, p = result.get(f"{name}_t"), result.get(f"{name}_p")
        line = f"{name:<28}{_f(result[name]):>9}{_f(result[key]):>9}{_f(t):>9}{_p(p):>11}"
        if "[" not in name:
            lines.append(line)
        elif name.split("[")[1].rstrip("]") != result.get("ap_definition"):
            others.append(f"{line}  AP / {AP_DEFINITION_NAMES.get(name.split('[')[1].rstrip(']'), '')}")
    if others:
        lines.append("mAP@k under the other AP definitions:")
        lines.extend(others)
    hub = [k for k in result if k.startswith("hubness") or k.startswith("skew") or k.startswith("antihub")]
    for key in sorted(hub):
        lines.append(f"{key:<28}{_f(result[key]):>9}")
    if hub and result.get("k_occurrence_skewness"):
        lines.append(f"  (skewness: {result['k_occurrence_skewness']})")
    if result.get("label_distance"):
        lines.append(
            f"{'label distance correlation r':<28}{_f(result.get('label_distance_correlation_r')):>9}"
            f"{'':>18}{_p(result.get('label_distance_correlation_p')):>11}"
            f"  label distance: {LABEL_DISTANCES[result['label_distance']]}"
        )
    if result.get("distance_correlation_r") is not None:
        lines.append(
            f"{'distance correlation r':<28}{_f(result['distance_correlation_r']):>9}{'':>18}"
            f"{_p(result.get('distance_correlation_p')):>11}  "
            f"|difference| of {result.get('graded_label') or 'the numeric label'}"
        )
    return "\n".join(lines)


def _f(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def _p(v) -> str:
    return "—" if v is None else (f"{v:.1e}" if v < 0.001 else f"{v:.4f}")
