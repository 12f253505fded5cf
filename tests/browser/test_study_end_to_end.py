"""End to end in Chromium, from the demo collection to the agreement report.

The demo phantoms are generated and imported (readerstudy.demo), two real timm runs (random
resnet18 weights, seeds 0 and 1) embed them, and then, all through the browser:

1. the coordinator builds five studies with the wizard: choose 5 of 10 (k nearest + k farthest),
   rank all (stratified random), rate 1-5 (top N), pooled (both runs) and an uploaded case-list
   CSV, and opens them; each catalogue is checked against a plain sort of the run's embeddings;
2. three demo readers complete the choose-k, rank-all and rate studies with mouse and keyboard,
   each with a deliberate policy (the model's answer, mostly the model's, seeded random or
   the phantoms' true heart size), and the database holds exactly what they clicked;
3. a reader is refused the report and sees no provenance; the researcher opens the report page
   and downloads its JSON, and every statistic equals an independent computation
   (statsmodels, scikit-learn, krippendorff, scipy, pingouin: tests/reports/independent.py).

The runs' random initialisation comes from their recorded seeds (`retrieval.runs.networks.build_model`), so
the catalogues are the same from one test run to the next.

One test, not five: the demo import and the two runs cost ~40 s, and pytest-django's live server
flushes the database after every test, so the journey is shared (~2 minutes in all).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

import numpy as np
import pytest
from playwright.sync_api import expect
from scipy import stats as sps
from sklearn.metrics import cohen_kappa_score

from annotations import selectors
from annotations.models import Answer, AnswerItem
from readerstudy import building
from readerstudy.demo import PHANTOM_DATASET, demo_collections_import, demo_users_create
from readerstudy.models import Assignment, Candidate, Case, Study
from reports import tables
from retrieval.models import Dataset, Label
from retrieval.runs.services import run_create
from retrieval.runs.stages import run_execute
from tests.browser.conftest import login, shot, tile_keys, wait_reader_ready
from tests.importing import stored_name
from tests.reports import independent as ind
from tests.reports import stored_answers as stored
from tests.runs.conftest import SMALL

pytestmark = [pytest.mark.browser, pytest.mark.ml, pytest.mark.django_db(transaction=True)]

READERS = ["reader1", "reader2", "reader3"]  # the demo accounts, password demo-<name>
RUN_A, RUN_B = "resnet18 random A", "resnet18 random B"
N_PHANTOMS = 60


# --- set-up: the demo collection and two real runs -------------------------------------------------


def _demo_collection_with_two_runs():
    demo_users_create()
    demo_collections_import(n_phantoms=N_PHANTOMS)
    dataset = Dataset.objects.get(name=PHANTOM_DATASET)
    assert dataset.images.count() == N_PHANTOMS
    runs = []
    for name, seed in ((RUN_A, 0), (RUN_B, 1)):
        run = run_create(dataset=dataset, name=name, method="timm", config={**SMALL, "seed": seed}, enqueue=False)
        run_execute(run_id=run.pk)
        run.refresh_from_db()
        assert run.status == "succeeded", run.error
        runs.append(run)
    return dataset, runs


# --- 1. the coordinator's wizard -------------------------------------------------------------------


def _wizard(
    page,
    *,
    name: str,
    mode: str,
    builder: str,
    seed: int,
    sizes: dict,
    k: int | None = None,
    run: str | None = None,
    runs: tuple[str, ...] = (),
    ground_truth: str | None = None,
    case_list: bytes | None = None,
) -> Study:
    """Fill the wizard, create the study, open it from its dashboard; returns the stored study."""
    page.goto("/studies/new/")
    page.fill("input[name=name]", name)
    page.fill("textarea[name=instructions]", f"{name}: compare each candidate with the query.")
    page.select_option("select[name=dataset]", label=PHANTOM_DATASET)
    page.select_option("select[name=mode]", mode)
    if k is not None:
        page.fill("input[name=k]", str(k))
    page.select_option("select[name=builder]", builder)
    page.fill("input[name=seed]", str(seed))
    for field, value in sizes.items():
        expect(page.locator(f"[data-field={field}]")).to_be_visible()  # the builder's own fields show
        page.fill(f"input[name={field}]", str(value))
    if run:
        page.select_option("select[name=run]", label=f"{run} (timm, succeeded)")
    for r in runs:
        page.check(f"[data-field=runs] label:has-text('{r}') input")
    if case_list is not None:
        page.set_input_files(
            "input[name=case_list]", files=[{"name": "cases.csv", "mimeType": "text/csv", "buffer": case_list}]
        )
    for reader in READERS:
        page.check(f"[data-field=readers] label:has-text('{reader}') input")
    if ground_truth:
        page.select_option("select[name=ground_truth_reader]", label=ground_truth)
    page.click("button[name=create]")
    page.wait_for_load_state()
    if not re.search(r"/studies/\d+/$", page.url):
        errors = page.locator(".errorlist").all_inner_texts()
        raise AssertionError(f"the wizard refused {name!r}: {errors}")
    expect(page.locator(".messages")).to_contain_text("created with")
    page.click("button:has-text('Open study')")
    expect(page.locator("[data-testid=study-status]")).to_have_text("Open")
    study = Study.objects.get(name=name)
    assert (study.mode, study.builder, study.seed, study.status) == (mode, builder, seed, "open")
    assert sorted(study.assignments.values_list("reader__username", flat=True)) == READERS
    shot(page, f"e2e-dashboard-{builder}")
    return study


def _candidate_images(case) -> list[int]:
    return list(Candidate.objects.filter(case=case).order_by("position").values_list("image_id", flat=True))


def _pool(dataset, study) -> set[int]:
    """Every image of the dataset but the study's queries (exclude_queries, the wizard's default)."""
    return set(dataset.images.values_list("pk", flat=True)) - set(study.cases.values_list("query_id", flat=True))


def _check_knn_farthest(study, dataset, run) -> None:
    assert study.cases.count() == 3
    pool = _pool(dataset, study)
    in_rank_order = []
    for case in study.cases.all():
        near = stored.nearest(run, case.query_id, pool, 5)
        # the far ones come from the query's far band, drawn across the study (issue 12, finding 4)
        band = stored.nearest(run, case.query_id, pool, building.far_band_size(len(pool), 5), farthest=True)
        cands = list(Candidate.objects.filter(case=case).order_by("position"))
        far = [c.image_id for c in cands if c.image_id not in near]
        assert len(cands) == 10 and set(near) <= {c.image_id for c in cands} and len(far) == 5 and set(far) <= set(band)
        for c in cands:
            (entry,) = c.provenance
            assert entry["run"] == run.pk and entry["set"] == ("nearest" if c.image_id in near else "farthest")
            assert entry["distance"] == pytest.approx(
                stored.cosine_distances(run, case.query_id, [c.image_id])[0], abs=1e-5
            )
        assert sorted(c.provenance[0]["rank"] for c in cands if c.image_id in near) == [1, 2, 3, 4, 5]
        in_rank_order.append([c.image_id for c in cands] == near + far)
    assert not all(in_rank_order)  # shuffled: the catalogue position does not give the model's rank away


def _check_top_n(study, dataset, run, n: int) -> None:
    pool = _pool(dataset, study)
    for case in study.cases.all():
        assert set(_candidate_images(case)) == set(stored.nearest(run, case.query_id, pool, n))


def _check_pooled(study, dataset, runs, per_method: int) -> None:
    pool = _pool(dataset, study)
    grew = False
    for case in study.cases.all():
        proposed = {r.pk: set(stored.nearest(r, case.query_id, pool, per_method)) for r in runs}
        union = set().union(*proposed.values())
        cands = list(Candidate.objects.filter(case=case))
        assert sorted(c.image_id for c in cands) == sorted(union)  # de-duplicated: each image once
        for c in cands:
            assert {e["run"] for e in c.provenance} == {pk for pk, ids in proposed.items() if c.image_id in ids}
        grew |= len(union) > per_method
    assert grew, "the two runs proposed the same images: the pooled study tests nothing"


def _case_list_csv(dataset) -> tuple[bytes, list[int], list[int]]:
    """Query 1 by file name with explicit positions (reversed), query 2 by id with file-name candidates."""
    images = list(dataset.images.order_by("pk").values_list("pk", "source_name"))
    q1, c1 = images[0], images[1:5]
    q2, c2 = images[5], images[6:10]
    lines = ["query,candidate,position"]
    lines += [f"{q1[1]},{pk},{4 - n}" for n, (pk, _) in enumerate(c1)]
    lines += [f"{q2[0]},{name}," for _, name in c2]
    return ("\n".join(lines) + "\n").encode(), [q1[0], *[pk for pk, _ in reversed(c1)]], [q2[0], *[pk for pk, _ in c2]]


def _check_case_list(study, data: bytes, first: list[int], second: list[int]) -> None:
    cases = list(study.cases.order_by("position"))
    assert [c.query_id for c in cases] == [first[0], second[0]]
    assert _candidate_images(cases[0]) == first[1:]  # the CSV's positions
    assert sorted(_candidate_images(cases[1])) == sorted(second[1:])
    assert study.builder_config["sha256"] == hashlib.sha256(data).hexdigest()
    assert study.builder_config["file_name"] == stored_name(study.dataset, "cases.csv")  # issue 12: a pseudonym


# --- 2. three readers in the browser ----------------------------------------------------------------


class CaseView:
    """One case as a reader sees it: shown position → candidate id → image id, and the query."""

    def __init__(self, page, assignment, case):
        keymap = selectors.candidate_keymap(assignment=assignment, case=case)
        shown = page.eval_on_selector_all("#grid .tile", "els => els.map(e => [e.dataset.position, e.dataset.key])")
        self.key_of = {int(p): key for p, key in shown}
        self.candidate_of = {int(p): keymap[key] for p, key in shown}
        self.image_of = dict(Candidate.objects.filter(case=case).values_list("pk", "image_id"))
        self.position_of = {cid: p for p, cid in self.candidate_of.items()}
        self.query_id = case.query_id
        self.case_position = case.position

    @property
    def candidates(self) -> list[int]:
        """Candidate ids in the reader's shown order (1, 2, ...)."""
        return [self.candidate_of[p] for p in sorted(self.candidate_of)]


def _read_study(page, study, username: str, answer_case: Callable) -> dict[int, dict[int, float]]:
    """Log in, start, answer every case with answer_case(page, view, username); {case id: {candidate: value}}."""
    login(page, username, f"demo-{username}")
    page.goto(f"/read/{study.pk}/")
    page.click("#start")
    assignment = Assignment.objects.get(study=study, reader__username=username)
    order = selectors.reader_order(assignment=assignment)
    clicked = {}
    for index, case_id in enumerate(order.case_ids, start=1):
        page.wait_for_url(f"**/read/{study.pk}/case/{index}/")
        wait_reader_ready(page)
        expect(page.locator("#progress")).to_have_text(f"Case {index} of {len(order.case_ids)}")
        view = CaseView(page, assignment, Case.objects.get(pk=case_id))
        clicked[case_id] = answer_case(page, view, username)
    page.wait_for_url(f"**/read/{study.pk}/done/")
    shot(page, f"e2e-{study.mode}-{username}-done")
    page.context.clear_cookies()
    return clicked


def _digit(position: int) -> str:
    return "0" if position == 10 else str(position)


def _rng(username: str, view: CaseView) -> np.random.Generator:
    return np.random.default_rng([READERS.index(username), view.case_position, 2024])


def _by_distance(run, view: CaseView) -> list[int]:
    """The case's candidate ids, nearest to the query first, under the run."""
    d = stored.cosine_distances(run, view.query_id, [view.image_of[c] for c in view.candidates])
    return [view.candidates[i] for i in sorted(range(len(d)), key=lambda i: (d[i], view.candidates[i]))]


def _by_heart_size(view: CaseView) -> list[int]:
    """The case's candidate ids by closeness of the phantom's cardiothoracic ratio to the query's (the truth)."""
    ctr = dict(
        Label.objects.filter(name="ctr", image_id__in=[view.query_id, *view.image_of.values()]).values_list(
            "image_id", "value_num"
        )
    )
    return sorted(view.candidates, key=lambda c: (abs(ctr[view.image_of[c]] - ctr[view.query_id]), c))


def choose_answers(run):
    """reader1 picks the run's 5 nearest with the mouse; reader2 4 of them + 1 other with digits;
    reader3 5 at random (seeded) with focus + space, a click and digits."""

    def answer(page, view: CaseView, username: str) -> dict[int, float]:
        near = _by_distance(run, view)
        rng = _rng(username, view)
        if username == "reader1":
            chosen = near[:5]
        elif username == "reader2":
            dropped, added = rng.integers(5, size=2)
            chosen = [c for c in near[:5] if c != near[dropped]] + [near[5 + added]]
        else:
            chosen = [view.candidates[i] for i in rng.choice(10, size=5, replace=False)]
        positions = [view.position_of[c] for c in chosen]
        if username == "reader1":
            for p in positions:
                page.click(f"#grid .tile[data-position='{p}'] img", force=True)
        elif username == "reader2":
            for p in positions:
                page.keyboard.press(_digit(p))
        else:
            page.focus(f"#grid .tile[data-position='{positions[0]}']")
            page.keyboard.press(" ")
            page.click(f"#grid .tile[data-position='{positions[1]}'] img", force=True)
            for p in positions[2:]:
                page.keyboard.press(_digit(p))
        expect(page.locator("#counter")).to_have_text("5/5")
        expect(page.locator(".tile.selected")).to_have_count(5)
        page.click("#submit-btn") if username == "reader1" else page.keyboard.press("Enter")
        return {c: float(c in chosen) for c in view.candidates}

    return answer


def _arrange(page, view: CaseView, target: list[int], how: str) -> None:
    """Put the tiles in the target order (candidate ids, most similar first) by keyboard, drag or buttons."""
    keys = [view.key_of[view.position_of[c]] for c in target]
    for r, key in enumerate(keys):
        current = tile_keys(page)
        i = current.index(key)
        if i == r:
            continue
        if how == "keyboard":  # the digit focuses the candidate at that rank, Shift+digit moves it to a rank
            page.keyboard.press(_digit(i + 1))
            if r % 2:
                page.keyboard.press("Shift+Digit" + _digit(r + 1))
            else:  # Shift+← moves it up one place
                for _ in range(i - r):
                    page.keyboard.press("Shift+ArrowLeft")
        elif how == "drag":
            page.drag_and_drop(f"#grid .tile[data-key='{key}']", f"#grid .tile[data-key='{current[r]}']")
        else:
            for _ in range(i - r):
                page.click(f"#grid .tile[data-key='{key}'] button.move[data-move='-1']")
    assert tile_keys(page) == keys


def rank_answers(run):
    """reader1 (the ground truth) ranks by true heart size with the keyboard; reader2 by the run's distance with
    two adjacent swaps, by drag and drop; reader3 a seeded random order with the move buttons."""

    def answer(page, view: CaseView, username: str) -> dict[int, float]:
        rng = _rng(username, view)
        if username == "reader1":
            target, how = _by_heart_size(view), "keyboard"
        elif username == "reader2":
            target, how = _by_distance(run, view), "drag"
            for i in rng.choice(9, size=2, replace=False):
                target[i], target[i + 1] = target[i + 1], target[i]
        else:
            target, how = [view.candidates[i] for i in rng.permutation(10)], "buttons"
        _arrange(page, view, target, how)
        expect(page.locator("#grid .tile").first.locator(".badge")).to_have_text("1")
        page.click("#submit-btn") if how == "buttons" else page.keyboard.press("Enter")
        return {c: float(target.index(c) + 1) for c in view.candidates}

    return answer


def _scale(order: list[int], n: int) -> dict[int, int]:
    """Ratings 5..1 falling with the place in an order (5, 5, 4, 3, 2, 1 for six)."""
    return {c: 5 - (i * 5) // n for i, c in enumerate(order)}


def rate_answers(run):
    """reader1 rates by the run's distance with the buttons; reader2 by true heart size with digits (each digit
    rates the focused candidate and moves on); reader3 seeded random, half buttons, half digits."""

    def answer(page, view: CaseView, username: str) -> dict[int, float]:
        n = len(view.candidates)
        if username == "reader1":
            ratings = _scale(_by_distance(run, view), n)
        elif username == "reader2":
            ratings = _scale(_by_heart_size(view), n)
        else:
            values = _rng(username, view).integers(1, 6, size=n)
            ratings = dict(zip(view.candidates, (int(v) for v in values)))
        ordered = [ratings[c] for c in view.candidates]  # by shown position
        if username == "reader1":
            for p, value in enumerate(ordered, start=1):
                page.click(f"#grid .tile[data-position='{p}'] button.rate[data-rating='{value}']")
        elif username == "reader2":
            page.focus("#grid .tile[data-position='1']")
            for value in ordered:
                page.keyboard.press(str(value))
        else:
            half = n // 2
            for p, value in enumerate(ordered[:half], start=1):
                page.click(f"#grid .tile[data-position='{p}'] button.rate[data-rating='{value}']")
            page.focus(f"#grid .tile[data-position='{half + 1}']")
            for value in ordered[half:]:
                page.keyboard.press(str(value))
        expect(page.locator(".tile.rated")).to_have_count(n)
        page.keyboard.press("Enter")
        return {c: float(v) for c, v in ratings.items()}

    return answer


def _check_stored(study, clicked: dict[str, dict[int, dict[int, float]]]) -> np.ndarray:
    """The database holds exactly what each reader clicked; returns the (C, M, R) answers as stored."""
    field = stored.FIELD[study.mode]
    n_cases = study.cases.count()
    assert Answer.objects.filter(case__study=study).count() == n_cases * len(READERS)
    for username, per_case in clicked.items():
        for case_id, values in per_case.items():
            items = AnswerItem.objects.filter(answer__case_id=case_id, answer__assignment__reader__username=username)
            got = {cid: float(v) for cid, v in items.values_list("candidate_id", field)}
            assert got == values, (username, case_id)
    values = stored.answer_values(study, READERS)
    assert not np.isnan(values).any()
    # the same arrays rebuilt from the clicks alone
    case_ids, _, _ = stored.catalogue(study)
    positions = dict(Candidate.objects.filter(case__study=study).values_list("pk", "position"))
    from_clicks = np.full(values.shape, np.nan)
    for r, username in enumerate(READERS):
        for case_id, per_candidate in clicked[username].items():
            for cid, v in per_candidate.items():
                from_clicks[case_ids.index(case_id), positions[cid], r] = v
    assert np.array_equal(values, from_clicks)
    return values


# --- 3. permissions, blinding and the researcher's report ------------------------------------------


def _check_reader_is_blinded_and_refused(page, study, run) -> None:
    login(page, "reader1", "demo-reader1")
    page.goto(f"/read/{study.pk}/case/1/")
    wait_reader_ready(page)
    html = page.content()
    payload = json.loads(page.request.get(f"/api/reading/studies/{study.pk}/cases/1/").text())
    assert all(set(c) == {"key", "position", "url"} for c in payload["candidates"])
    distances = [e["distance"] for c in Candidate.objects.filter(case__study=study) for e in c.provenance]
    for text in (html, json.dumps(payload)):
        assert run.name not in text and "farthest" not in text and "nearest" not in text
        assert not re.search(r"/images/\d+", text)
        assert not any(f"{d:.6f}" in text for d in distances)
    for address in (
        f"/reports/studies/{study.pk}/",
        f"/reports/studies/{study.pk}/download/json/",
        f"/api/reports/studies/{study.pk}/",
        f"/studies/{study.pk}/",
        f"/api/studies/{study.pk}/",
    ):
        assert page.request.get(address).status == 403, address
    page.context.clear_cookies()


def _report_json(page, study, **params) -> dict:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = page.request.get(f"/reports/studies/{study.pk}/download/json/?{query}")
    assert response.status == 200
    return json.loads(response.text())


def _method_keys(report: dict) -> dict[str, str]:
    return {m["name"]: m["key"] for m in report["methods"]}


def check_choose_k_report(page, study, sel: np.ndarray, runs) -> None:
    """Fleiss κ, pairwise Cohen κ, Krippendorff α, the exactly-k consensus (both tie-breaks), each run's
    k nearest against it (Cohen κ pooled over items) and each reader's % agreement."""
    items = sel.reshape(-1, len(READERS)).astype(int)
    fleiss = ind.fleiss(sel)
    page.goto(f"/reports/studies/{study.pk}/")
    expect(page.locator(".interim-banner")).to_contain_text("Interim report")
    expect(page.locator("tr", has_text="Fleiss κ").locator("td").nth(1)).to_have_text(tables.fmt(fleiss))
    shot(page, "e2e-report-choose-k")
    distances = {r.name: stored.catalogue_distances(r, study) for r in runs}
    for tie_break, tie_ranks in (("index", None), ("model", ind.ranks_of(distances[runs[0].name]))):
        report = _report_json(page, study, tie_break=tie_break)
        s = report["choose_k"]
        assert s["readers"] == READERS and s["n_cases"] == 3 and s["n_items"] == 30
        assert s["fleiss_kappa"]["estimate"] == pytest.approx(fleiss)
        assert np.allclose(s["pairwise_cohen_kappa"], ind.pairwise_cohen(items))
        assert s["krippendorff_alpha"]["estimate"] == pytest.approx(ind.alpha(items))
        consensus = ind.consensus(sel, 5, tie_ranks)
        assert (consensus.sum(axis=1) == 5).all()
        votes = -np.sort(-sel.sum(-1), axis=1)
        assert s["consensus"]["n_cases_tie_broken"] == int((votes[:, 4] == votes[:, 5]).sum())
        for r, name in enumerate(READERS):
            assert s["consensus"]["reader_agreement"][name]["estimate"] == pytest.approx(
                ind.percent(sel[..., r], consensus)
            )
        keys = _method_keys(report)
        for run in runs:
            model = ind.k_nearest(distances[run.name], 5)
            m = s["methods"][keys[run.name]]
            assert m["available"] and m["n_cases"] == 3
            assert m["cohen_kappa_vs_consensus"]["estimate"] == pytest.approx(
                cohen_kappa_score(consensus.ravel(), model.ravel())
            )
            assert m["agreement_with_consensus"]["estimate"] == pytest.approx(ind.percent(consensus, model))
            per_reader = [ind.percent(sel[..., r], model) for r in range(len(READERS))]
            for r, name in enumerate(READERS):
                assert m["reader_agreement"][name]["estimate"] == pytest.approx(per_reader[r])
            assert m["mean_reader_agreement"]["estimate"] == pytest.approx(np.mean(per_reader))
    # the readers' policies make the numbers informative: reader1 is the model (run A), reader3 is not
    run_a = s["methods"][keys[RUN_A]]["reader_agreement"]
    assert run_a["reader1"]["estimate"] == 100.0 and run_a["reader3"]["estimate"] < 100.0
    assert -1 < fleiss < 1


def check_ranking_report(page, study, ranks: np.ndarray, runs) -> None:
    """nDCG@3/@10 (scikit-learn, gain 2^rel − 1 with rel = (N+1−rank)/2 + 0.5), Kendall τ and Spearman ρ
    (scipy) of each run and each other reader against the ground-truth reader, reader1."""
    report = _report_json(page, study)
    s = report["ranking"]
    truth = ranks[..., 0].astype(int)
    assert s["ground_truth"] == "reader1" and s["ground_truth_source"] == "set on the study"
    keys = _method_keys(report)
    compared = {keys[r.name]: ind.ranks_of(stored.catalogue_distances(r, study)) for r in runs}
    compared |= {name: ranks[..., r].astype(int) for r, name in enumerate(READERS) if r}
    assert set(s["compared"]) == set(compared)
    for name, order in compared.items():
        got = s["compared"][name]["metrics"]
        for p in (3, 10):
            assert got[f"ndcg@{p}"]["estimate"] == pytest.approx(ind.ndcg(order, truth, p).mean()), (name, p)
        assert got["kendall_tau"]["estimate"] == pytest.approx(ind.kendall(order, truth).mean()), name
        assert got["spearman_rho"]["estimate"] == pytest.approx(ind.spearman(order, truth).mean()), name
    others = [ind.ndcg(compared[n], truth, 10).mean() for n in READERS[1:]]
    assert s["inter_rater_band"]["ndcg@10"] == pytest.approx([min(others), max(others)])
    assert s["random"]["ndcg@10"] == pytest.approx(0.698, abs=0.001)  # papers README: ≈ 0.70 for N = 10
    assert not np.allclose(compared[keys[RUN_A]], truth)  # the run is not the ground truth: a real comparison


def check_rating_report(page, study, ratings: np.ndarray, runs) -> None:
    """ICC (pingouin), quadratic- and linear-weighted Cohen κ (scikit-learn), correlation with the run (scipy)."""
    report = _report_json(page, study)
    s = report["rating"]
    items = ratings.reshape(-1, len(READERS))
    icc = ind.icc(items)
    assert s["icc"]["ICC(A,1)"]["estimate"] == pytest.approx(icc["ICC2"])
    assert s["icc"]["ICC(C,1)"]["estimate"] == pytest.approx(icc["ICC3"])
    assert s["icc"]["ICC(A,k)"]["estimate"] == pytest.approx(icc["ICC2k"])
    labels = [1, 2, 3, 4, 5]
    quad = ind.pairwise_cohen(items.astype(int), weights="quadratic", labels=labels)
    lin = ind.pairwise_cohen(items.astype(int), weights="linear", labels=labels)
    off = ~np.eye(len(READERS), dtype=bool)
    assert np.allclose(s["weighted_kappa"]["matrix"], quad)
    assert s["weighted_kappa"]["mean"]["estimate"] == pytest.approx(quad[off].mean())
    assert s["weighted_kappa"]["mean_linear"] == pytest.approx(lin[off].mean())
    d = stored.catalogue_distances(runs[0], study)
    m = s["methods"][_method_keys(report)[runs[0].name]]
    assert m["correlation"]["spearman"] == pytest.approx(sps.spearmanr(ratings.mean(-1).ravel(), d.ravel()).statistic)
    for r, name in enumerate(READERS):
        assert m["per_reader_spearman"][name] == pytest.approx(
            sps.spearmanr(ratings[..., r].ravel(), d.ravel()).statistic
        )
    assert m["per_reader_spearman"]["reader1"] < 0  # reader1 rates the run's nearest highest


# --- the journey -------------------------------------------------------------------------------------


def test_demo_studies_built_in_the_wizard_read_by_three_readers_match_independent_statistics(page, live_server):
    dataset, runs = _demo_collection_with_two_runs()
    run_a = runs[0]

    # 1. The coordinator builds every kind of study in the browser and opens it.
    login(page, "coordinator", "demo-coordinator")
    choose = _wizard(
        page,
        name="E2E choose 5 of 10",
        mode="choose_k",
        k=5,
        builder="knn_farthest",
        seed=11,
        sizes={"n_queries": 3, "nearest_k": 5},
        run=RUN_A,
    )
    _check_knn_farthest(choose, dataset, run_a)
    rank = _wizard(
        page,
        name="E2E rank all",
        mode="rank_all",
        builder="stratified_random",
        seed=22,
        sizes={"n_queries": 3, "catalogue_size": 10, "class_label": "Cardiomegaly"},
        ground_truth="reader1",
    )
    assert rank.ground_truth_reader.username == "reader1"
    assert all(len(_candidate_images(c)) == 10 for c in rank.cases.all())
    rate = _wizard(
        page,
        name="E2E rate top 6",
        mode="rate",
        builder="top_n",
        seed=33,
        sizes={"n_queries": 2, "catalogue_size": 6},
        run=RUN_A,
    )
    _check_top_n(rate, dataset, run_a, 6)
    pooled = _wizard(
        page,
        name="E2E pooled",
        mode="choose_k",
        k=3,
        builder="pooled",
        seed=44,
        sizes={"n_queries": 3, "per_method": 5},
        runs=(RUN_A, RUN_B),
    )
    _check_pooled(pooled, dataset, runs, 5)
    data, first, second = _case_list_csv(dataset)
    case_list = _wizard(
        page, name="E2E case list", mode="rank_all", builder="case_list", seed=55, sizes={}, case_list=data
    )
    _check_case_list(case_list, data, first, second)
    page.goto("/studies/")
    for study in (choose, rank, rate, pooled, case_list):
        expect(page.locator("main")).to_contain_text(study.name)
    page.context.clear_cookies()

    # 2. Three readers complete three of them, mouse and keyboard mixed.
    sessions = {choose: choose_answers(run_a), rank: rank_answers(run_a), rate: rate_answers(run_a)}
    clicked = {study: {u: _read_study(page, study, u, answer) for u in READERS} for study, answer in sessions.items()}
    values = {study: _check_stored(study, clicked[study]) for study in sessions}

    # 3. Readers are blinded and refused the results; the researcher's report equals independent numbers.
    _check_reader_is_blinded_and_refused(page, choose, run_a)
    login(page, "researcher", "demo-researcher")
    check_choose_k_report(page, choose, values[choose].astype(bool), runs)
    check_ranking_report(page, rank, values[rank], runs)
    check_rating_report(page, rate, values[rate], runs)
