"""Benchmark of the reading hot path: next case (page + renditions) and submission, 20 readers.

Usage: python benchmarks/bench_reader.py [--json] [--readers 20] [--cases 10] [--candidates 10]
           [--database-url postgres://postgres@127.0.0.1:5432/cbir_bench] [--workers 4 --threads 4]

Starts the app under gunicorn on 127.0.0.1 (a free port) against a fresh database (an SQLite
file in a temporary DATA_DIR unless --database-url names an existing, migratable database), with
one generated choose-5-of-10 study of chest phantoms rendered at 1024 px. Each of the readers is
a thread with its own HTTP connection that logs in, then reads its cases as fast as it can (no
think time, so this is far harsher than 20 people reading): GET /read/<study>/start/ → the case
page → every rendition on the page; a draft save; a submission (every fifth one sent twice with
the same client token, as a client retry would). /healthz/ is timed under the same load as the
baseline. Bounded: at most readers × cases case reads, and --max-seconds.

Reported: p50/p95 of the case page alone (what a reader waits for: the next case's renditions
were prefetched while reading the current one), of page + all its renditions fetched one after
the other on one connection (a cold cache), of a rendition, of a submission and of /healthz/,
and the ratio of the page and submission p50 to the /healthz/ p50. Checked afterwards in the
database: one answer per successful submission, none duplicated by the retries, each holding
exactly the candidates sent. Goal: p95 ≤ 100 ms for the page and for a submission, zero lost
answers. Exit status 1 when answers are lost or wrong (latency goals are reported, not enforced).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.record import add_record_arguments, markdown_table, record  # noqa: E402

GOAL_P95_MS = 100.0
K = 5


# --- set-up ---------------------------------------------------------------------------------------


def configure(args) -> dict:
    """Environment of the server and of this process: fresh DATA_DIR, production-like settings."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-reader-"))
    env = {
        "DATA_DIR": str(data_dir),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": args.database_url or f"sqlite:///{data_dir / 'bench.sqlite3'}",
        "DB_CONN_MAX_AGE": "60",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    os.environ.update(env)
    import django

    django.setup()
    return env


def build_study(n_readers: int, n_cases: int, n_candidates: int) -> tuple[int, list[tuple[str, str]]]:
    """One open choose-5 study of phantom renditions, assigned to n_readers new readers."""
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from PIL import Image as PILImage

    from core.roles import READER, user_set_roles
    from readerstudy.models import Assignment, Candidate, Case, Study, StudyStatus
    from retrieval.imports.phantoms import generate_chest_phantoms
    from retrieval.models import Dataset, Image

    call_command("migrate", verbosity=0)
    run = secrets.token_hex(3)
    dataset = Dataset.objects.create(name=f"bench-{run}")
    images = []
    for i, ph in enumerate(generate_chest_phantoms(n_cases * (n_candidates + 1), seed=11, size=1024)):
        buf = io.BytesIO()
        PILImage.fromarray(ph.pixels).save(buf, format="PNG")
        digest = f"{run}{i:08d}".ljust(64, "0")
        path = default_storage.save(f"datasets/{dataset.pk}/rendition/{digest}.png", ContentFile(buf.getvalue()))
        images.append(
            Image.objects.create(
                dataset=dataset,
                source_name=ph.filename,
                source_format="png",
                width=1024,
                height=1024,
                content_hash=digest,
                original=path,
                rendition=path,
                thumbnail=path,
            )
        )
    study = Study.objects.create(name=f"Bench {run}", dataset=dataset, mode="choose_k", k=K, status=StudyStatus.OPEN)
    for c in range(n_cases):
        block = images[c * (n_candidates + 1) : (c + 1) * (n_candidates + 1)]
        case = Case.objects.create(study=study, position=c, query=block[0])
        Candidate.objects.bulk_create(
            [
                Candidate(case=case, image=img, position=j, provenance=[{"method": "bench"}])
                for j, img in enumerate(block[1:])
            ]
        )
    users = []
    for r in range(n_readers):
        name, password = f"bench-{run}-r{r}", secrets.token_urlsafe(12)
        user = get_user_model().objects.create_user(username=name, password=password)
        user_set_roles(user=user, roles=[READER])
        Assignment.objects.create(study=study, reader=user, seed=1000 + r)
        users.append((name, password))
    return study.pk, users


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict, port: int, workers: int, threads: int) -> subprocess.Popen:
    """gunicorn on loopback; returns once /healthz/ answers."""
    cmd = [
        sys.executable,  # this interpreter's gunicorn (the project's virtual environment, wherever it is)
        "-m",
        "gunicorn",
        "config.wsgi",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        str(workers),
        "-k",
        "gthread",
        "--threads",
        str(threads),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz/")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("gunicorn did not start")


# --- one reader -----------------------------------------------------------------------------------


class Client:
    """A browser-like HTTP/1.1 client: one connection, cookies, CSRF header."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict, bytes, float]:
        headers = {**(headers or {}), "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        for attempt in (0, 1):
            try:
                start = time.perf_counter()
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                elapsed = time.perf_counter() - start
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        for value in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, dict(response.headers), data, elapsed

    def login(self, username: str, password: str) -> None:
        _, _, html, _ = self.request("GET", "/accounts/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', html)[1].decode()
        body = urllib.parse.urlencode(
            {"username": username, "password": password, "csrfmiddlewaretoken": token}
        ).encode()
        status, _, _, _ = self.request(
            "POST", "/accounts/login/", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if status != 302:
            raise RuntimeError(f"login of {username} failed ({status})")

    def post_json(self, method: str, path: str, payload: dict) -> tuple[int, dict, float]:
        status, _, data, elapsed = self.request(
            method,
            path,
            json.dumps(payload).encode(),
            {
                "Content-Type": "application/json",
                "X-CSRFToken": self.cookies.get("csrftoken", ""),
                "Referer": f"http://127.0.0.1:{self.port}/",
            },
        )
        return status, (json.loads(data) if data else {}), elapsed


def read_cases(
    port: int,
    study_id: int,
    user: tuple[str, str],
    n_cases: int,
    deadline: float,
    out: dict,
    lock: threading.Lock,
    start: threading.Barrier,
    think_s: float = 0.0,
) -> None:
    """One reader: log in, then next case → page → renditions → draft → submit, n_cases times."""
    samples: dict[str, list[float]] = {
        k: [] for k in ("page", "page_and_renditions", "rendition", "draft", "submit", "healthz")
    }
    sent: list[dict] = []
    errors: list[str] = []
    client = Client(port)
    client.login(*user)
    client.request("GET", f"/read/{study_id}/")  # the study page, as a reader would open it first
    start.wait()
    if think_s:
        time.sleep(random.uniform(0, think_s))  # readers do not all start in the same millisecond
    for _ in range(n_cases):
        if time.monotonic() > deadline:
            break
        try:
            _read_one(client, study_id, user[0], samples, sent)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"{user[0]}: {exc!r}")
        if think_s:
            time.sleep(random.uniform(0.5, 1.5) * think_s)  # a reader looking at the case
    with lock:
        for key, values in samples.items():
            out["samples"][key].extend(values)
        out["sent"].extend(sent)
        out["errors"].extend(errors)


def _read_one(client: Client, study_id: int, username: str, samples: dict, sent: list) -> None:
    status, headers, _, t_start = client.request("GET", f"/read/{study_id}/start/")
    location = headers.get("Location", "")
    if status != 302 or "/case/" not in location:
        raise RuntimeError(f"start → {status} {location}")
    status, _, html, t_page = client.request("GET", location)
    if status != 200:
        raise RuntimeError(f"case page → {status}")
    total = t_start + t_page
    images = re.findall(rb'data-src="(/read/\d+/case/\d+/image/query\.png)"', html)[:1] + re.findall(
        rb'<img src="(/read/\d+/case/\d+/image/[0-9a-f]{16}\.png)"', html
    )
    if len(images) < 2:  # the query and at least one candidate: never time the page alone by mistake
        raise RuntimeError(f"case page names {len(images)} renditions: did the reader's image addresses change?")
    for url in images:
        status, _, _, t = client.request("GET", url.decode())
        if status != 200:
            raise RuntimeError(f"rendition → {status}")
        samples["rendition"].append(t)
        total += t
    samples["page"].append(t_start + t_page)
    samples["page_and_renditions"].append(total)
    keys = [k.decode() for k in re.findall(rb'data-key="([0-9a-f]{16})"', html)]
    index = int(location.rstrip("/").rsplit("/", 1)[1])
    api = f"/api/reading/studies/{study_id}/cases/{index}/"
    status, _, t = client.post_json("PUT", api + "draft/", {"selected": keys[:2]})
    samples["draft"].append(t)
    status, _, _, t = client.request("GET", "/healthz/")
    samples["healthz"].append(t)
    payload = {"selected": keys[:K], "client_token": secrets.token_hex(16)}
    status, body, t = client.post_json("POST", api + "answer/", payload)
    if status != 201:
        raise RuntimeError(f"submit → {status} {body}")
    samples["submit"].append(t)
    sent.append({"reader": username, "index": index, "token": payload["client_token"]})
    if len(sent) % 5 == 0:  # a client retry: same token, must not store anything new
        status, body, _ = client.post_json("POST", api + "answer/", payload)
        if status != 200 or not body.get("replayed"):
            raise RuntimeError(f"retry → {status} {body}")


# --- checks and report ----------------------------------------------------------------------------


def verify(study_id: int, sent: list[dict]) -> dict:
    """Every submission is in the database once, with exactly the candidates sent (shown 1..K)."""
    from annotations.models import Answer, AnswerItem

    answers = Answer.objects.filter(case__study_id=study_id)
    tokens = set(answers.values_list("client_token", flat=True))
    wrong = (
        AnswerItem.objects.filter(answer__case__study_id=study_id, selected=True).exclude(shown_position__lte=K).count()
    )
    per_answer = AnswerItem.objects.filter(answer__case__study_id=study_id, selected=True).count()
    return {
        "submitted": len(sent),
        "stored": answers.count(),
        "lost": len({s["token"] for s in sent} - tokens),
        "duplicates": answers.count() - len(tokens),
        "wrong_items": wrong + abs(per_answer - K * answers.count()),
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarise(samples: dict, seconds: float) -> dict:
    out = {
        name: {"n": len(v), "p50_ms": round(pct(v, 0.5), 1), "p95_ms": round(pct(v, 0.95), 1)}
        for name, v in samples.items()
    }
    base = out["healthz"]["p50_ms"] or float("nan")
    out["ratio_page_p50_to_healthz_p50"] = round(out["page"]["p50_ms"] / base, 1)
    out["ratio_submit_p50_to_healthz_p50"] = round(out["submit"]["p50_ms"] / base, 1)
    out["wall_seconds"] = round(seconds, 1)
    out["case_reads_per_second"] = round(len(samples["page"]) / seconds, 1) if seconds else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--cases", type=int, default=10, help="cases per reader (the study has this many)")
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument(
        "--think-ms", type=float, default=0, help="mean pause between a reader's cases (0: read as fast as possible)"
    )
    parser.add_argument("--json", action="store_true")
    add_record_arguments(parser)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # other work on the machine skews the numbers: reported

    env = configure(args)
    study_id, users = build_study(args.readers, args.cases, args.candidates)
    port = free_port()
    server = start_server(env, port, args.workers, args.threads)
    out: dict = {
        "samples": {k: [] for k in ("page", "page_and_renditions", "rendition", "draft", "submit", "healthz")},
        "sent": [],
        "errors": [],
    }
    lock, barrier = threading.Lock(), threading.Barrier(len(users) + 1)
    deadline = time.monotonic() + args.max_seconds
    try:
        threads = [
            threading.Thread(
                target=read_cases,
                args=(port, study_id, u, args.cases, deadline, out, lock, barrier, args.think_ms / 1000),
            )
            for u in users
        ]
        for t in threads:
            t.start()
        barrier.wait()
        began = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=30)
    integrity = verify(study_id, out["sent"])
    shutil.rmtree(env["DATA_DIR"], ignore_errors=True)  # the generated renditions (and SQLite database)
    result = {
        "setup": {
            "readers": args.readers,
            "cases": args.cases,
            "candidates": args.candidates,
            "k": K,
            "server": f"gunicorn gthread -w {args.workers} --threads {args.threads}",
            "database": env["DATABASE_URL"].split(":", 1)[0],
            "cpus": os.cpu_count(),
            "think_ms": args.think_ms,
            "load_average_at_start": round(load_before, 2),
        },
        "latency": summarise(out["samples"], seconds),
        "integrity": integrity,
        "errors": out["errors"][:20],
        "goal_p95_ms": GOAL_P95_MS,
    }
    lat = result["latency"]
    result["goal_met"] = {
        "page_p95": lat["page"]["p95_ms"] <= GOAL_P95_MS,
        "submit_p95": lat["submit"]["p95_ms"] <= GOAL_P95_MS,
        "zero_lost": result["integrity"]["lost"] == 0 and not out["errors"],
    }
    print(json.dumps(result, indent=2) if args.json else _table(result))
    _record(result, args)
    integrity = result["integrity"]
    return 0 if not (integrity["lost"] or integrity["duplicates"] or integrity["wrong_items"] or out["errors"]) else 1


def _record(result: dict, args: argparse.Namespace) -> None:
    """The section `reader.<database>.<readers>r.think<ms>` of docs/benchmarks.md (benchmarks/record.py)."""
    s, lat, integ, met = result["setup"], result["latency"], result["integrity"], result["goal_met"]
    names = {
        "page": "case page",
        "page_and_renditions": f"page + {s['candidates'] + 1} renditions",
        "rendition": "one rendition",
        "draft": "draft",
        "submit": "submit",
        "healthz": "/healthz/ (baseline)",
    }
    table = markdown_table(
        ["request", "n", "p50 ms", "p95 ms"],
        [[label, lat[key]["n"], lat[key]["p50_ms"], lat[key]["p95_ms"]] for key, label in names.items()],
    )
    database = "postgresql" if s["database"].startswith("postgres") else s["database"]
    record(
        "reader",
        table,
        variant=f"{database}.{s['readers']}r.think{s['think_ms']:.0f}",
        args=args,
        title=f"{s['readers']} reader{'s' if s['readers'] != 1 else ''}, {s['think_ms']:.0f} ms think time, {database}",
        notes=f"{s['cases']} cases, choose {s['k']} of {s['candidates']}, {s['server']}; load average at start "
        f"{s['load_average_at_start']}; {lat['wall_seconds']} s, {lat['case_reads_per_second']} case reads/s. "
        f"Page p50 / `/healthz/` p50 = {lat['ratio_page_p50_to_healthz_p50']}, submit p50 / `/healthz/` p50 = "
        f"{lat['ratio_submit_p50_to_healthz_p50']}. Answers: {integ['submitted']} submitted, "
        f"{integ['stored']} stored, {integ['lost']} lost, {integ['duplicates']} duplicated, "
        f"{integ['wrong_items']} wrong items; {len(result['errors'])} errors. Goal p95 ≤ "
        f"{result['goal_p95_ms']:.0f} ms for page and submit, zero lost: page "
        f"{'met' if met['page_p95'] else '**not met**'}, submit {'met' if met['submit_p95'] else '**not met**'}, "
        f"answers {'met' if met['zero_lost'] else '**not met**'}.",
    )


def _table(result: dict) -> str:
    s, lat, integ = result["setup"], result["latency"], result["integrity"]
    lines = [
        f"{s['readers']} readers x {s['cases']} cases, choose {s['k']} of {s['candidates']}, "
        f"{s['server']}, {s['database']}, {s['cpus']} CPUs (load {s['load_average_at_start']}), "
        f"think {s['think_ms']:.0f} ms, {lat['wall_seconds']} s, "
        f"{lat['case_reads_per_second']} case reads/s",
        f"{'':28}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}",
    ]
    for name in ("page", "page_and_renditions", "rendition", "draft", "submit", "healthz"):
        lines.append(f"{name:28}{lat[name]['n']:>6}{lat[name]['p50_ms']:>10}{lat[name]['p95_ms']:>10}")
    lines.append(
        f"page p50 / healthz p50 = {lat['ratio_page_p50_to_healthz_p50']}, "
        f"submit p50 / healthz p50 = {lat['ratio_submit_p50_to_healthz_p50']}"
    )
    lines.append(
        f"answers: {integ['submitted']} submitted, {integ['stored']} stored, {integ['lost']} lost, "
        f"{integ['duplicates']} duplicated, {integ['wrong_items']} wrong items; "
        f"errors: {len(result['errors'])}"
    )
    lines.append(f"goal p95 <= {result['goal_p95_ms']:.0f} ms: {result['goal_met']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
