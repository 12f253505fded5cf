"""The pure case builders on synthetic embeddings: right images, right provenance, reproducible."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from readerstudy import builders
from readerstudy.builders import BuildError

N = 60
IDS = list(range(100, 100 + N))
VECTORS = np.random.default_rng(3).normal(size=(N, 8))
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)
CLASSES = {i: ("a" if n < 30 else "b" if n < 50 else "c") for n, i in enumerate(IDS)}  # 30 / 20 / 10


def brute_force_distances(query_id: int) -> dict[int, float]:
    """Cosine distances from the query to every other image, straight from the vectors."""
    q = VECTORS[IDS.index(query_id)]
    return {i: float(1 - VECTORS[n] @ q) for n, i in enumerate(IDS) if i != query_id}


def neighbours_fn(pool=IDS):
    """A neighbours function in the shape of retrieval.runs.ranking.neighbours_fn's (rank 1 = nearest)."""

    def fn(query_id, k, farthest=False):
        d = {i: v for i, v in brute_force_distances(query_id).items() if i in pool}
        order = sorted(d, key=d.get)
        ranks = {i: r for r, i in enumerate(order, start=1)}
        chosen = order[::-1][:k] if farthest else order[:k]
        return [(i, ranks[i], d[i]) for i in chosen]

    return fn


# --- sample_queries ---------------------------------------------------------------------------


def test_random_queries_are_distinct_members_of_the_pool_and_reproducible():
    a = builders.sample_queries(IDS, 10, seed=5)
    assert len(set(a)) == 10 and set(a) <= set(IDS)
    assert builders.sample_queries(list(reversed(IDS)), 10, seed=5) == a  # input order does not matter
    assert builders.sample_queries(IDS, 10, seed=6) != a


def test_more_queries_than_the_pool_is_refused():
    with pytest.raises(BuildError, match="only 60"):
        builders.sample_queries(IDS, 61, seed=0)


def test_stratified_queries_keep_class_proportions():
    queries = builders.sample_queries(IDS, 12, seed=1, strata=CLASSES)
    assert Counter(CLASSES[q] for q in queries) == {"a": 6, "b": 4, "c": 2}


def test_stratified_queries_equal_allocation_caps_small_classes():
    queries = builders.sample_queries(IDS, 36, seed=1, strata=CLASSES, allocation="equal")
    assert Counter(CLASSES[q] for q in queries) == {"a": 13, "b": 13, "c": 10}


def test_images_without_class_are_not_drawn_when_stratifying():
    strata = {i: c for i, c in CLASSES.items() if c != "c"}
    queries = builders.sample_queries(IDS, 50, seed=2, strata=strata)
    assert not {q for q in queries if CLASSES[q] == "c"}
    with pytest.raises(BuildError, match="only 50"):
        builders.sample_queries(IDS, 51, seed=2, strata=strata)


@pytest.mark.parametrize(
    "sizes,n,mode,expected",
    [
        ({"a": 30, "b": 20, "c": 10}, 10, "proportional", {"a": 5, "b": 3, "c": 2}),
        ({"a": 1, "b": 1, "c": 1}, 2, "proportional", {"a": 1, "b": 1, "c": 0}),
        ({"a": 1, "b": 10}, 6, "equal", {"a": 1, "b": 5}),
        ({"a": 4, "b": 4, "c": 4}, 9, "equal", {"a": 3, "b": 3, "c": 3}),
    ],
)
def test_allocation(sizes, n, mode, expected):
    assert builders.allocate(sizes, n, mode) == expected


@pytest.mark.parametrize("seed", [-1, 2**63, "7", 1.5, True])
def test_bad_seeds_are_refused(seed):
    with pytest.raises(BuildError, match="seed"):
        builders.sample_queries(IDS, 1, seed=seed)


# --- knn_and_farthest (paper 000) ------------------------------------------------------------


def test_knn_and_farthest_are_the_true_5_nearest_and_5_farthest():
    queries = IDS[:6]
    cases = builders.knn_and_farthest(queries, neighbours_fn(), 5, seed=11, method="vit", run=7)
    assert [q for q, _ in cases] == queries
    for q, catalogue in cases:
        d = brute_force_distances(q)
        by_distance = sorted(d, key=d.get)
        ids = [i for i, _ in catalogue]
        assert len(ids) == 10 and q not in ids
        nearest = {i for i, prov in catalogue if prov[0]["set"] == "nearest"}
        farthest = {i for i, prov in catalogue if prov[0]["set"] == "farthest"}
        assert nearest == set(by_distance[:5])
        assert farthest == set(by_distance[-5:])
        for i, prov in catalogue:
            (entry,) = prov
            assert entry["method"] == "vit" and entry["run"] == 7
            assert entry["rank"] == by_distance.index(i) + 1
            assert entry["distance"] == pytest.approx(d[i])


def test_knn_catalogue_order_is_shuffled_and_reproducible():
    cases = builders.knn_and_farthest(IDS[:10], neighbours_fn(), 5, seed=11)
    ranks = [[prov[0]["rank"] for _, prov in cat] for _, cat in cases]
    assert any(r != sorted(r) for r in ranks), "canonical order must not reveal the rank"
    assert builders.knn_and_farthest(IDS[:10], neighbours_fn(), 5, seed=11) == cases
    assert builders.knn_and_farthest(IDS[:10], neighbours_fn(), 5, seed=12) != cases


def test_a_query_catalogue_depends_only_on_seed_and_query():
    alone = builders.knn_and_farthest([IDS[3]], neighbours_fn(), 5, seed=9)
    together = builders.knn_and_farthest([IDS[7], IDS[3]], neighbours_fn(), 5, seed=9)
    assert together[1] == alone[0]


def test_knn_and_farthest_refuses_a_pool_too_small():
    with pytest.raises(BuildError, match="too small"):
        builders.knn_and_farthest([IDS[0]], neighbours_fn(pool=IDS[:8]), 5, seed=0)
    with pytest.raises(BuildError, match="only 3"):
        builders.knn_and_farthest([IDS[0]], neighbours_fn(pool=IDS[:4]), 5, seed=0)


# --- top_n -----------------------------------------------------------------------------------


def test_top_n_is_the_n_nearest_shuffled():
    ((q, catalogue),) = builders.top_n([IDS[0]], neighbours_fn(), 10, seed=4, method="cnn", run=1)
    d = brute_force_distances(q)
    assert {i for i, _ in catalogue} == set(sorted(d, key=d.get)[:10])
    assert sorted(p[0]["rank"] for _, p in catalogue) == list(range(1, 11))
    assert [p[0]["rank"] for _, p in catalogue] != list(range(1, 11))


# --- stratified_random (papers 001/003) ------------------------------------------------------


def test_stratified_random_catalogue_keeps_class_proportions_and_excludes_the_query():
    queries = [IDS[0], IDS[35], IDS[55]]
    cases = builders.stratified_random(queries, IDS, CLASSES, 10, seed=8)
    for q, catalogue in cases:
        ids = [i for i, _ in catalogue]
        assert len(set(ids)) == 10 and q not in ids and set(ids) <= set(IDS)
        assert Counter(CLASSES[i] for i in ids) == {"a": 5, "b": 3, "c": 2}
        assert all(
            p == [{"method": "random", "run": None, "rank": None, "distance": None, "stratum": CLASSES[i]}]
            for i, p in catalogue
        )
    assert builders.stratified_random(queries, IDS, CLASSES, 10, seed=8) == cases
    assert builders.stratified_random(queries, IDS, CLASSES, 10, seed=9) != cases


def test_stratified_random_equal_allocation():
    ((_, catalogue),) = builders.stratified_random([IDS[0]], IDS, CLASSES, 9, seed=1, allocation="equal")
    assert Counter(CLASSES[i] for i, _ in catalogue) == {"a": 3, "b": 3, "c": 3}


def test_stratified_random_refuses_a_pool_too_small():
    with pytest.raises(BuildError, match="only 4"):
        builders.stratified_random([IDS[0]], IDS[:5], CLASSES, 5, seed=1)


# --- pooled ----------------------------------------------------------------------------------


def test_pooled_deduplicates_and_lists_every_proposer():
    near = neighbours_fn()

    def far(query_id, k, farthest=False):
        return near(query_id, k, farthest=True)

    def mixed(query_id, k, farthest=False):  # overlaps both: its 3 nearest + 2 farthest
        return near(query_id, 3) + near(query_id, 2, farthest=True)

    ((q, catalogue),) = builders.pooled(
        [IDS[0]], {"cnn": near, "ig": far, "att": mixed}, 5, seed=3, runs={"cnn": 1, "ig": 2, "att": 3}
    )
    ids = [i for i, _ in catalogue]
    expected = {i for i, _, _ in near(q, 5)} | {i for i, _, _ in far(q, 5)}
    assert len(ids) == len(set(ids)) == len(expected) == 10 and set(ids) == expected
    proposers = {i: sorted(p["method"] for p in prov) for i, prov in catalogue}
    for i, _, _ in near(q, 3):
        assert proposers[i] == ["att", "cnn"]
    for i, _, _ in near(q, 2, farthest=True):
        assert proposers[i] == ["att", "ig"]
    assert all(p["run"] == {"cnn": 1, "ig": 2, "att": 3}[p["method"]] for _, prov in catalogue for p in prov)
    assert builders.pooled(
        [IDS[0]], {"cnn": near, "ig": far, "att": mixed}, 5, seed=3, runs={"cnn": 1, "ig": 2, "att": 3}
    ) == [(q, catalogue)]


def test_pooled_order_does_not_reveal_the_method():
    near = neighbours_fn()

    def far(query_id, k, farthest=False):
        return near(query_id, k, farthest=True)

    cases = builders.pooled(IDS[:8], {"cnn": near, "ig": far}, 5, seed=1)
    first_half_methods = [{prov[0]["method"] for _, prov in cat[:5]} for _, cat in cases]
    assert any(len(m) == 2 for m in first_half_methods)


# --- case lists ------------------------------------------------------------------------------


def resolver(names: dict[str, int]):
    return names.get


def test_case_list_parses_and_groups_rows():
    data = b"query,candidate\nq1.png,a.png\nq1.png,b.png\nq2.png,a.png\nq1.png,c.png\n"
    rows = builders.parse_case_list_csv(data)
    assert [(r.line, r.query, r.candidate) for r in rows] == [
        (2, "q1.png", "a.png"),
        (3, "q1.png", "b.png"),
        (4, "q2.png", "a.png"),
        (5, "q1.png", "c.png"),
    ]
    names = {"q1.png": 1, "q2.png": 2, "a.png": 10, "b.png": 11, "c.png": 12}
    cases = builders.case_list_specs(rows, resolver(names), seed=0)
    assert [(q, sorted(i for i, _ in cat)) for q, cat in cases] == [(1, [10, 11, 12]), (2, [10])]
    assert cases[0][1][0][1][0]["method"] == "case_list"
    assert builders.case_list_specs(rows, resolver(names), seed=0) == cases


def test_case_list_positions_fix_the_order_and_provenance_columns_are_kept():
    data = (
        "\ufeffQuery;Candidate;Position;Method;Rank;Distance\n1;12;2;ssim;1;0.1\n1;10;3;ssim;2;0.2\n1;11;1;ssim;3;0.3\n"
    ).encode()
    ((q, catalogue),) = builders.case_list_specs(builders.parse_case_list_csv(data), lambda ref: int(ref), seed=0)
    assert q == 1 and [i for i, _ in catalogue] == [11, 12, 10]
    assert catalogue[0][1] == [{"method": "ssim", "run": None, "rank": 3, "distance": 0.3, "line": 4}]


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "the file is empty"),
        (b"query,image\n1,2\n", "line 1: the header needs the column candidate"),
        (b"query,candidate\n", "the file has a header but no rows"),
        (b"query,candidate\n1,\n,2\n", "line 2: the candidate cell is empty; line 3: the query cell is empty"),
        (
            b"query,candidate,position\n1,2,x\n1,3,0\n",
            "line 2: position 'x' is not a whole number; line 3: position must be at least 1",
        ),
        (b"query,candidate,distance\n1,2,far\n", "line 2: distance 'far' is not a number"),
        (b"query,candidate\n\xff\xfe1,2\n", "not UTF-8"),
    ],
)
def test_case_list_errors_name_the_line(data, message):
    with pytest.raises(builders.CaseListError) as exc:
        builders.parse_case_list_csv(data)
    assert message in exc.value.message


@pytest.mark.parametrize(
    "data,message",
    [
        (b"query,candidate\n1,2\n1,99\n", "line 3: no image '99' in the dataset"),
        (b"query,candidate\n1,2\n1,1\n", "line 3: the candidate is the query image itself"),
        (b"query,candidate\n1,2\n1,3\n1,2\n", "line 4: candidate '2' is already listed for query '1' on line 2"),
        (
            b"query,candidate,position\n1,2,1\n1,3,\n",
            "line 3: query '1' gives positions on some lines but not on this one",
        ),
        (b"query,candidate,position\n1,2,1\n1,3,1\n", "line 3: position 1 is already used for query '1' on line 2"),
        (b"query,candidate,position\n1,2,1\n1,3,5\n", "line 3: position 5 is beyond the 2 candidates"),
    ],
)
def test_case_list_resolution_errors_name_the_line(data, message):
    known = {str(i): i for i in range(1, 10)}
    with pytest.raises(builders.CaseListError) as exc:
        builders.case_list_specs(builders.parse_case_list_csv(data), known.get, seed=0)
    assert message in exc.value.message


def test_case_list_reports_every_bad_line_at_once():
    data = b"query,candidate\n" + b"".join(b"1,%d\n" % (100 + n) for n in range(60))
    with pytest.raises(builders.CaseListError) as exc:
        builders.case_list_specs(builders.parse_case_list_csv(data), {"1": 1}.get, seed=0)
    assert len(exc.value.errors) == 60
    assert exc.value.message.startswith("The case list has 60 problems") and "and 10 more" in exc.value.message
