"""Benchmark of the reading hot path: next case (page + renditions) and submission, 20 readers.

Usage: python benchmarks/bench_reader.py [--json] [--readers 20] [--cases 10] [--candidates 10]
           [--database-url postgres://postgres@127.0.0.1:5432/cbir_bench] [--workers 4 --threads 4]
           [--think-ms 3000] [--browser | --cold] [--nginx]

Starts the app under gunicorn on 127.0.0.1 (a free port) against a fresh database (an SQLite
file in a temporary DATA_DIR unless --database-url names an existing, migratable database), with
one generated choose-5-of-10 study of chest phantoms rendered at 1024 px. Each of the readers is
a thread with its own HTTP connection that logs in, then reads its cases as fast as it can (no
think time, so this is far harsher than 20 people reading): GET /read/<study>/start/ → the case
page → every rendition on the page; a draft save; a submission (every fifth one sent twice with
the same client token, as a client retry would). /healthz/ is timed under the same load as the
baseline. Bounded: at most readers × cases case reads, and --max-seconds.

`--browser` models the browser the reader uses: a case's images come over up to six connections at
once (as Chromium opens per host), a response marked immutable (the page's `?v=` addresses) is kept
and never requested again, and once the current case is in, the next case's images are prefetched
(reader.js does this while the reader looks at the case); after a submission the browser opens the address
the submission answers with (reader.js), the first case by the study's "Start" (a redirect, counted in the
first case). Reported then: the *next case* — page plus
the images the browser does not hold yet — and, separately, each reader's first case (nothing cached:
page + all its images). `--cold` is the same browser with its cache off: every case fetches the page
and all its images, nothing is prefetched (the server's capacity for images). `--nginx` puts nginx in
front of gunicorn with docker/nginx.conf.template (benchmarks/nginx.py; Debian's nginx-light) and
IMAGE_LINK_SECRET set, as the Docker set-up runs: the pages address the images by signed links that nginx
checks and answers by itself (core/image_links.py), no Python request per image; every request,
`/healthz/` included, then goes through nginx. Issue 16's goal for 20 readers with 3 s
think time on PostgreSQL: the next case page and all its images at p95 ≤ 150 ms.

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import nginx  # noqa: E402
from benchmarks.record import add_record_arguments, markdown_table, record  # noqa: E402

GOAL_P95_MS = 100.0
GOAL_NEXT_CASE_P95_MS = 150.0  # issue 16: next case page + all its images, 20 readers, 3 s think time
K = 5
BROWSER_CONNECTIONS = 6  # per host, as Chromium opens them over HTTP/1.1
SAMPLES = (
    *("page", "page_and_renditions", "next_case", "first_case"),
    *("rendition", "prefetch", "draft", "submit", "healthz"),
)


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
        "DB_CONN_MAX_AGE": "60",  # as docker/compose.yaml runs the web service
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


class Browser:
    """The images side of one reader's browser: up to six connections at once and, unless `cache` is off,
    a cache of immutable responses (cache hits cost no request). Shares the page connection's cookies."""

    def __init__(self, client: Client, *, cache: bool):
        self.client, self.cache_on = client, cache
        self.cache: set[str] = set()
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(BROWSER_CONNECTIONS)

    def _fetch(self, url: str) -> float:
        conn = getattr(self.local, "client", None)
        if conn is None:
            conn = self.local.client = Client(self.client.port)
            conn.cookies = self.client.cookies
        status, headers, _, elapsed = conn.request("GET", url)
        if status != 200:
            raise RuntimeError(f"image → {status}")
        if self.cache_on and "immutable" in headers.get("Cache-Control", ""):
            self.cache.add(url)
        return elapsed

    def fetch(self, urls: list[str]) -> tuple[float, list[float]]:
        """Seconds until every url is held (those in the cache: none), and each request's own time."""
        missing = [u for u in urls if u not in self.cache]
        began = time.perf_counter()
        times = list(self.pool.map(self._fetch, missing))
        return time.perf_counter() - began, times

    def close(self) -> None:
        self.pool.shutdown()


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
    browser: str = "",
) -> None:
    """One reader: log in, then next case → page → renditions → draft → submit, n_cases times.

    `browser`: "" (one connection, every image fetched in turn), "cached" or "cold" (class Browser)."""
    samples: dict[str, list[float]] = {k: [] for k in SAMPLES}
    sent: list[dict] = []
    errors: list[str] = []
    client = Client(port)
    client.login(*user)
    images = Browser(client, cache=browser == "cached") if browser else None
    client.request("GET", f"/read/{study_id}/")  # the study page, as a reader would open it first
    start.wait()
    if think_s:
        time.sleep(random.uniform(0, think_s))  # readers do not all start in the same millisecond
    next_url = ""  # a browser goes where the submission sends it (reader.js); the first case by "Start"
    for _ in range(n_cases):
        if time.monotonic() > deadline:
            break
        try:
            if images is None:
                _read_one(client, study_id, user[0], samples, sent)
            else:
                next_url = _read_one_browser(client, images, study_id, user[0], samples, sent, next_url)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"{user[0]}: {exc!r}")
            next_url = ""
        if think_s:
            time.sleep(random.uniform(0.5, 1.5) * think_s)  # a reader looking at the case
    if images is not None:
        images.close()
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
    index = int(location.rstrip("/").rsplit("/", 1)[1])
    images = _case_images(html, study_id, index)
    for url in images:
        status, _, _, t = client.request("GET", url)
        if status != 200:
            raise RuntimeError(f"rendition → {status}")
        samples["rendition"].append(t)
        total += t
    samples["page"].append(t_start + t_page)
    samples["page_and_renditions"].append(total)
    _draft_and_submit(client, study_id, index, html, username, samples, sent)


def _case_images(html: bytes, study_id: int, index: int) -> list[str]:
    """The renditions case `index`'s page shows (query first), at the addresses the page gives: the image view's
    (`?v=`) or, with --nginx, signed links (`/reader-images/…?s=…&amp;e=…` in the HTML)."""
    view = rf"/read/{study_id}/case/{index}/image/(?:query|[0-9a-f]{{16}})\.png(?:\?v=[0-9a-f]+)?"
    link = r"/reader-images/[0-9a-f]+/[0-9a-f]+\.png\?s=[A-Za-z0-9_-]+&amp;e=\d+"
    found = re.findall(rf'"({view}|{link})"'.encode(), html)
    urls = list(dict.fromkeys(m.decode().replace("&amp;", "&") for m in found))  # the query is named twice
    if len(urls) < 2:  # the query and at least one candidate: never time the page alone by mistake
        raise RuntimeError(f"case page names {len(urls)} renditions: did the reader's image addresses change?")
    return urls


def _prefetch_list(html: bytes) -> list[str]:
    """The next case's image addresses the page hands to reader.js (empty on the last case)."""
    found = re.search(rb'<script id="prefetch-data" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(found[1]) if found else []


def _read_one_browser(
    client: Client, images: Browser, study_id: int, username: str, samples: dict, sent: list, location: str
) -> str:
    """As a browser: the page (`location`, the previous submission's `next_url`; the first case by the study's
    "Start", a redirect), then the images it does not hold over six connections, then the next case's. Returns
    where the submission sends the reader next."""
    first = not images.cache and not samples["next_case"] and not samples["first_case"]
    t_start = 0.0
    if not location:
        status, headers, _, t_start = client.request("GET", f"/read/{study_id}/start/")
        location = headers.get("Location", "")
        if status != 302 or "/case/" not in location:
            raise RuntimeError(f"start → {status} {location}")
    status, _, html, t_page = client.request("GET", location)
    if status != 200:
        raise RuntimeError(f"case page → {status}")
    index = int(location.rstrip("/").rsplit("/", 1)[1])
    wall, times = images.fetch(_case_images(html, study_id, index))
    samples["rendition"].extend(times)
    samples["page"].append(t_start + t_page)
    samples["first_case" if first else "next_case"].append(t_start + t_page + wall)
    if images.cache_on:  # reader.js prefetches the next case once this one is usable
        _, times = images.fetch(_prefetch_list(html))
        samples["prefetch"].extend(times)
    return _draft_and_submit(client, study_id, index, html, username, samples, sent)


def _draft_and_submit(client: Client, study_id: int, index: int, html: bytes, username: str, samples, sent) -> str:
    """Save a draft, time /healthz/, submit (every fifth submission twice: a client retry); the next case's
    address the submission answers with."""
    keys = [k.decode() for k in re.findall(rb'data-key="([0-9a-f]{16})"', html)]
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
    next_url = body["next_url"]
    if len(sent) % 5 == 0:  # a client retry: same token, must not store anything new
        status, body, _ = client.post_json("POST", api + "answer/", payload)
        if status != 200 or not body.get("replayed"):
            raise RuntimeError(f"retry → {status} {body}")
    return next_url if "/case/" in next_url else ""


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
    if samples.get("next_case"):
        out["ratio_next_case_p50_to_healthz_p50"] = round(out["next_case"]["p50_ms"] / base, 1)
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
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--browser", action="store_true", help="six image connections per reader, immutable responses cached, prefetch"
    )
    mode.add_argument("--cold", action="store_true", help="as --browser with the cache off: every image every time")
    parser.add_argument(
        "--nginx", action="store_true", help="nginx in front (docker/nginx.conf.template), images by signed links"
    )
    parser.add_argument("--json", action="store_true")
    add_record_arguments(parser)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # other work on the machine skews the numbers: reported
    browser = "cached" if args.browser else "cold" if args.cold else ""

    env = configure(args)
    if args.nginx:
        env["IMAGE_LINK_SECRET"] = secrets.token_urlsafe(32)
    study_id, users = build_study(args.readers, args.cases, args.candidates)
    gunicorn_port = free_port()
    server = start_server(env, gunicorn_port, args.workers, args.threads)
    proxy, port = None, gunicorn_port
    out: dict = {"samples": {k: [] for k in SAMPLES}, "sent": [], "errors": []}
    lock, barrier = threading.Lock(), threading.Barrier(len(users) + 1)
    try:
        if args.nginx:
            data_dir = Path(env["DATA_DIR"])
            proxy, port = nginx.start(
                data_dir / "nginx",
                upstream=f"127.0.0.1:{gunicorn_port}",
                static_root=data_dir / "static",
                link_root=data_dir / "reader-links",
                link_secret=env["IMAGE_LINK_SECRET"],
                workers=min(4, os.cpu_count() or 1),
            )
        deadline = time.monotonic() + args.max_seconds
        threads = [
            threading.Thread(
                target=read_cases,
                args=(port, study_id, u, args.cases, deadline, out, lock, barrier, args.think_ms / 1000, browser),
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
        if proxy is not None:
            nginx.stop(proxy)
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
            "front": "nginx (images by signed links)" if args.nginx else "",
            "client": {"cached": "browser", "cold": "browser, cache off"}.get(browser, "one connection"),
            "database": env["DATABASE_URL"].split(":", 1)[0],
            "cpus": os.cpu_count(),
            "think_ms": args.think_ms,
            "load_average_at_start": round(load_before, 2),
        },
        "latency": summarise(out["samples"], seconds),
        "integrity": integrity,
        "errors": out["errors"][:20],
        "goal_p95_ms": GOAL_P95_MS,
        "goal_next_case_p95_ms": GOAL_NEXT_CASE_P95_MS,
    }
    lat = result["latency"]
    result["goal_met"] = {
        "page_p95": lat["page"]["p95_ms"] <= GOAL_P95_MS,
        "submit_p95": lat["submit"]["p95_ms"] <= GOAL_P95_MS,
        "zero_lost": result["integrity"]["lost"] == 0 and not out["errors"],
    }
    if browser:
        result["goal_met"]["next_case_p95"] = lat["next_case"]["p95_ms"] <= GOAL_NEXT_CASE_P95_MS
    print(json.dumps(result, indent=2) if args.json else _table(result))
    _record(result, args, browser=browser, nginx=args.nginx)
    integrity = result["integrity"]
    return 0 if not (integrity["lost"] or integrity["duplicates"] or integrity["wrong_items"] or out["errors"]) else 1


def _labels(s: dict) -> dict[str, str]:
    n = s["candidates"] + 1
    return {
        "page": "case page",
        "page_and_renditions": f"page + {n} renditions, one after the other",
        "next_case": "next case: page + the images not cached"
        if s["client"] == "browser"
        else f"next case: page + all {n} images",
        "first_case": f"first case: page + all {n} images (nothing cached)",
        "rendition": "one image request",
        "prefetch": "one prefetch request (next case, while reading)",
        "draft": "draft",
        "submit": "submit",
        "healthz": "/healthz/ (baseline)",
    }


def _record(result: dict, args: argparse.Namespace, *, browser: str = "", nginx: bool = False) -> None:
    """The section `reader.<database>.<readers>r.think<ms>[.browser|.cold][.nginx]` of docs/benchmarks.md."""
    s, lat, integ, met = result["setup"], result["latency"], result["integrity"], result["goal_met"]
    table = markdown_table(
        ["request", "n", "p50 ms", "p95 ms"],
        [
            [label, lat[key]["n"], lat[key]["p50_ms"], lat[key]["p95_ms"]]
            for key, label in _labels(s).items()
            if lat[key]["n"]
        ],
    )
    database = "postgresql" if s["database"].startswith("postgres") else s["database"]
    variant = f"{database}.{s['readers']}r.think{s['think_ms']:.0f}"
    variant += {"cached": ".browser", "cold": ".cold"}.get(browser, "") + (".nginx" if nginx else "")
    how = s["client"] + (", through nginx (images by signed links)" if nginx else ", straight to gunicorn")
    next_goal = ""
    if browser:
        next_goal = (
            f" Next case (page + all its images) p95 ≤ {result['goal_next_case_p95_ms']:.0f} ms (issue 16): "
            f"{'met' if met['next_case_p95'] else '**not met**'}; next case p50 / `/healthz/` p50 = "
            f"{lat['ratio_next_case_p50_to_healthz_p50']}."
        )
    record(
        "reader",
        table,
        variant=variant,
        args=args,
        title=f"{s['readers']} reader{'s' if s['readers'] != 1 else ''}, {s['think_ms']:.0f} ms think time, "
        f"{database}, {how}",
        notes=f"{s['cases']} cases, choose {s['k']} of {s['candidates']}, {s['server']}; load average at start "
        f"{s['load_average_at_start']} (a 2-core machine shared with other work: compare with `/healthz/` in the "
        f"same run); {lat['wall_seconds']} s, {lat['case_reads_per_second']} case reads/s. "
        f"Page p50 / `/healthz/` p50 = {lat['ratio_page_p50_to_healthz_p50']}, submit p50 / `/healthz/` p50 = "
        f"{lat['ratio_submit_p50_to_healthz_p50']}. Answers: {integ['submitted']} submitted, "
        f"{integ['stored']} stored, {integ['lost']} lost, {integ['duplicates']} duplicated, "
        f"{integ['wrong_items']} wrong items; {len(result['errors'])} errors. Goal p95 ≤ "
        f"{result['goal_p95_ms']:.0f} ms for page and submit, zero lost: page "
        f"{'met' if met['page_p95'] else '**not met**'}, submit {'met' if met['submit_p95'] else '**not met**'}, "
        f"answers {'met' if met['zero_lost'] else '**not met**'}.{next_goal}",
    )


def _table(result: dict) -> str:
    s, lat, integ = result["setup"], result["latency"], result["integrity"]
    lines = [
        f"{s['readers']} readers x {s['cases']} cases, choose {s['k']} of {s['candidates']}, "
        f"{s['server']}{' behind ' + s['front'] if s['front'] else ''}, {s['database']}, client: {s['client']}, "
        f"{s['cpus']} CPUs (load {s['load_average_at_start']}), "
        f"think {s['think_ms']:.0f} ms, {lat['wall_seconds']} s, "
        f"{lat['case_reads_per_second']} case reads/s",
        f"{'':52}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}",
    ]
    for name, label in _labels(s).items():
        if lat[name]["n"]:
            lines.append(f"{label[:52]:52}{lat[name]['n']:>6}{lat[name]['p50_ms']:>10}{lat[name]['p95_ms']:>10}")
    lines.append(
        f"page p50 / healthz p50 = {lat['ratio_page_p50_to_healthz_p50']}, "
        f"submit p50 / healthz p50 = {lat['ratio_submit_p50_to_healthz_p50']}"
        + (
            f", next case p50 / healthz p50 = {lat['ratio_next_case_p50_to_healthz_p50']}"
            if "ratio_next_case_p50_to_healthz_p50" in lat
            else ""
        )
    )
    lines.append(
        f"answers: {integ['submitted']} submitted, {integ['stored']} stored, {integ['lost']} lost, "
        f"{integ['duplicates']} duplicated, {integ['wrong_items']} wrong items; "
        f"errors: {len(result['errors'])}"
    )
    lines.append(f"goals: {result['goal_met']}")
    for error in result["errors"][:5]:
        lines.append(f"error: {error}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
