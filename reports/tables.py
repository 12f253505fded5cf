"""The tables of an agreement report (the page, the printable HTML and the PDF share them): report dict in,
{title, columns, rows of strings, note} out. No database: every number comes from the report dict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reports.stats import TIES_RULE


def fmt(value: Any, digits: int = 3) -> str:
    """A number, or an estimate dict as 'value [low, high]', or '—'."""
    if isinstance(value, dict):
        est = fmt(value.get("estimate"), digits)
        if value.get("ci_low") is None or est == "—":
            return est
        return f"{est} [{fmt(value['ci_low'], digits)}, {fmt(value['ci_high'], digits)}]"
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_p(p: float | None) -> str:
    """A p-value with three decimals, '< 0.001' below that."""
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _table(title: str, columns: list[str], rows: list[list], note: str = "") -> dict:
    return {
        "title": title,
        "columns": columns,
        "rows": [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows],
        "note": note,
    }


def _readers_table(report: dict) -> dict:
    rows = [
        [
            r["name"],
            r["n_answered"],
            r["n_answered_complete"],
            r["complete"],
            fmt(r["median_active_s"], 1),
            r["n_flags"],
        ]
        + (["yes" if r["is_ground_truth"] else ""] if report["section"] == "ranking" else [])
        for r in report["readers"]
    ]
    columns = ["reader", "answers", "complete answers", "answered every case", "median active s", "flags"]
    columns += ["ground truth"] if report["section"] == "ranking" else []
    return _table("Readers", columns, rows, report["data"]["note"])


def _methods_table(report: dict) -> dict:
    rows = [
        [m["name"], m["source"], m["run_id"] if m["run_id"] is not None else "—", m["n_cases"], m["reason"] or ""]
        for m in report["methods"]
    ]
    note = (
        "A method ranks a catalogue by its distances (lower = closer): model runs of the dataset and "
        "methods named in the candidates' provenance."
    )
    return _table("Methods", ["method", "source", "run", "cases it can rank", "note"], rows, note)


def _matrix_table(title: str, readers: list[str], matrix: list | None, note: str = "") -> list[dict]:
    if not matrix:
        return []
    return [_table(title, ["reader"] + readers, [[r] + row for r, row in zip(readers, matrix)], note)]


def _choose_tables(report: dict) -> list[dict]:
    s = report["choose_k"]
    ck = s["consensus"]
    inter = _table(
        "Agreement between readers",
        ["statistic", "value"],
        [
            ["Fleiss κ", fmt(s["fleiss_kappa"])],
            ["Mean pairwise % agreement", fmt(s["mean_pairwise_agreement"], 1)],
            ["Krippendorff α (nominal)", fmt(s["krippendorff_alpha"])],
            ["Mean pairwise Cohen κ", fmt(s["mean_pairwise_cohen_kappa"])],
            ["Chance agreement of two random selections of k (%)", fmt(s["chance_agreement"], 1)],
        ],
        f"{s['n_items']} items = {s['n_cases']} cases × {s['n_candidates']} candidates, each selected or not "
        f"by every reader (k = {s['k']})." + _readers_note(s),
    )
    avail = {k: m for k, m in s["methods"].items() if m["available"]}
    methods = _table(
        "Consensus against each method (pooled over items)",
        ["method", "cases", "Cohen κ vs consensus", "% agreement with consensus", "mean reader % agreement"],
        [
            [
                k,
                m["n_cases"],
                fmt(m["cohen_kappa_vs_consensus"]),
                fmt(m["agreement_with_consensus"], 1),
                fmt(m["mean_reader_agreement"], 1),
            ]
            for k, m in avail.items()
        ],
        f"Consensus: the k candidates with most votes; ties: {ck['tie_break']}; "
        f"{ck['n_cases_tie_broken']} cases needed the tie-break. "
        "Each method selects its k nearest in the catalogue; "
        + _ties_note({k: m["n_cases_with_tied_distances"] for k, m in avail.items()}),
    )
    per_reader = [
        [r, fmt(ck["reader_agreement"][r], 1)] + [fmt(m["reader_agreement"][r], 1) for m in avail.values()]
        for r in s["readers"]
    ]
    per_reader.append(
        ["mean", fmt(ck["mean_reader_agreement"], 1)] + [fmt(m["mean_reader_agreement"], 1) for m in avail.values()]
    )
    table2 = _table(
        "% agreement of each reader (Table 2)",
        ["reader", "consensus"] + list(avail),
        per_reader,
        "Share of the reader's (case, candidate) items that match the reference selection.",
    )
    return [inter, methods, table2] + _matrix_table("Pairwise Cohen κ", s["readers"], s["pairwise_cohen_kappa"])


def _ranking_tables(report: dict) -> list[dict]:
    s = report["ranking"]
    metrics = s["metrics"]
    rows = [
        [name, c["kind"], c["n_cases"]] + [fmt(c["metrics"][m]) for m in metrics] for name, c in s["compared"].items()
    ]
    rows.append(["random order (expected)", "baseline", ""] + [fmt(s["random"].get(m)) for m in metrics])
    if s["other_readers_mean"]:
        rows.append(["other readers (mean)", "inter-rater", ""] + [fmt(s["other_readers_mean"][m]) for m in metrics])
        rows.append(
            ["inter-rater band (min–max)", "inter-rater", ""]
            + [f"{fmt(s['inter_rater_band'][m][0])}–{fmt(s['inter_rater_band'][m][1])}" for m in metrics]
        )
    averaged = s.get("ndcg_ties") == "averaged"
    alternative = s.get("tie_broken", {}) if averaged else s["tie_averaged"]
    for name, t in alternative.items():
        row = [f"{name} ({'ties broken' if averaged else 'tie-averaged'})", "method", t["n_cases_with_ties"]]
        rows.append(row + [fmt(t.get(m)) if m.startswith("ndcg@") else "—" for m in metrics])
    conv = s["conventions"]
    alternative_note = (
        "; the 'ties broken' rows give the default nDCG (ties broken by the lower catalogue position)"
        if averaged
        else "; the tie-averaged rows give the expected nDCG over every order of the tied candidates"
    )
    main = _table(
        f"Orders scored against {s['ground_truth']}'s ranking"
        + (" (methods' nDCG tie-averaged: ndcg_ties=averaged)" if averaged else ""),
        ["compared", "kind", "cases"] + metrics,
        rows,
        f"Ground truth: {s['ground_truth']} ({s['ground_truth_source']}). Relevance {s['relevance']}, "
        f"gain {s['gain']}, discount {s['discount']}. A random order already scores the baseline row. "
        f"nDCG ties (option ndcg_ties={s.get('ndcg_ties', 'broken')}): {conv['ties']}"
        + (
            alternative_note + " (their 'cases' column: cases with ties)"
            if alternative
            else " (no method has tied distances here)"
        )
        + f". {conv['tau_rho']}."
        + (f" The {conv['cutoffs']}." if conv["cutoffs"] else "")
        + _readers_note(s),
    )
    return [main] + _matrix_table("Mean Kendall τ between readers", s["readers"], s["reader_kendall_tau"])


def _icc_rule_note(icc: dict) -> str:
    """How the ICC(A,1) interval treats the readers as random (only with readers too and 3 or more readers)."""
    if not icc.get("readers_rule"):
        return ""
    return f" ICC(A,1) interval: {icc['readers_rule']}."


def _readers_note(section: dict) -> str:
    """The note of intervals for which readers too was declined (2 readers), once per table."""
    notes: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if value.get("readers_note"):
                notes.add(value["readers_note"])
            for v in value.values():
                walk(v)

    walk(section)
    return "".join(f" Readers too: {n}." for n in sorted(notes))


def _ties_note(tied: dict[str, int]) -> str:
    """Ties in the methods' distances: the rule and how many cases have them, per method."""
    counts = ", ".join(f"{k}: {n}" for k, n in tied.items())
    return f"ties in a method's distances: {TIES_RULE}" + (f" (cases with ties: {counts})." if counts else ".")


def _case_spearman_rules(s: dict) -> list[str]:
    return [m["mean_case_spearman"]["rule"] for m in s["methods"].values() if m["available"]][:1]


def _rating_tables(report: dict) -> list[dict]:
    s = report["rating"]
    wk = s["weighted_kappa"] or {}
    inter = _table(
        "Agreement between readers",
        ["statistic", "value"],
        [
            *[[name, fmt(v)] for name, v in s["icc"].items()],
            ["Mean quadratic-weighted κ", fmt(wk.get("mean"))],
            ["Mean linear-weighted κ", fmt(wk.get("mean_linear"))],
            ["Krippendorff α (ordinal)", fmt(s["krippendorff_alpha_ordinal"])],
            ["Krippendorff α (interval)", fmt(s["krippendorff_alpha_interval"])],
        ],
        f"{s['n_items']} items (case × candidate) rated {s['scale'][0]}–{s['scale'][1]} by every reader; "
        "ICC(A,1) = two-way random, absolute agreement, single rater (Shrout & Fleiss ICC2)."
        + _icc_rule_note(s["icc"]["ICC(A,1)"])
        + _readers_note(s),
    )
    rows = [
        [
            k,
            m["n_cases"],
            fmt(m["correlation"]["spearman"]),
            fmt_p(m["correlation"]["spearman_p"]),
            fmt(m["correlation"]["pearson"]),
            fmt_p(m["correlation"]["pearson_p"]),
            fmt(m["mean_case_spearman"]),
        ]
        for k, m in s["methods"].items()
        if m["available"]
    ]
    corr = _table(
        "Ratings against model distances",
        ["method", "cases", "Spearman ρ", "p", "Pearson r", "p", "mean per-case Spearman ρ"],
        rows,
        "Mean rating over readers per item against the method's distance; a negative correlation means "
        "readers rate the images the model finds close as more similar. Mean per-case Spearman ρ: "
        + "; ".join(
            f"{k}: {m['mean_case_spearman']['n_left_out']} reader-cases left out"
            for k, m in s["methods"].items()
            if m["available"]
        )
        + "".join(f" ({rule})." for rule in _case_spearman_rules(s)),
    )
    means = _table(
        "Mean rating per reader",
        ["reader", "mean rating"],
        [[r, fmt(v, 2)] for r, v in s["reader_mean_rating"].items()],
    )
    return [inter, corr, means] + _matrix_table("Quadratic-weighted κ between readers", s["readers"], wk.get("matrix"))


def _mc_se(se: float | None) -> str:
    """The Monte Carlo standard error of a simulated p-value, or 'exact' (every sign pattern enumerated)."""
    return "exact" if se is None else f"{se:.4f}"


def _tests_table(report: dict) -> list[dict]:
    tests = report.get("tests")
    if not tests:
        return []
    rows = []
    for method, res in tests["vs_random"].items():
        if "permutation_p" in res:
            rows.append(
                [
                    f"{method} vs random",
                    res["statistic"],
                    res["n"],
                    fmt(res["mean_difference"]),
                    fmt_p(res["permutation_p"]),
                    _mc_se(res["permutation_mc_se"]),
                    fmt_p(res["ttest_p"]),
                ]
            )
        else:
            for metric, r in res.items():
                rows.append(
                    [
                        f"{method} vs random",
                        metric,
                        report["ranking"]["compared"][method]["n_cases"],
                        fmt(r["statistic"] - r["null_mean"]),
                        fmt_p(r["p_value"]),
                        _mc_se(r["mc_se"]),
                        "—",
                    ]
                )
    for r in tests["method_vs_method"]:
        rows.append(
            [
                f"{r['a']} vs {r['b']}",
                r["metric"],
                r["n"],
                fmt(r["mean_difference"]),
                fmt_p(r["permutation_p"]),
                _mc_se(r["permutation_mc_se"]),
                fmt_p(r["ttest_p"]),
            ]
        )
    u = report["uncertainty"]
    return [
        _table(
            "Hypothesis tests",
            [
                "comparison",
                "statistic",
                "cases",
                "difference",
                "permutation p",
                "Monte Carlo s.e. of p",
                "paired t-test p",
            ],
            rows,
            f"{u['n_permutations']} permutations, seed {u['seed']}. {u['permutation_p_values']} "
            "Methods vs random: choose-k compares the "
            "per-case reader agreement with the chance level of a random k (one-sided sign-flip test); "
            "rankings permute each catalogue's order (one-sided); ratings test the per-case Spearman ρ "
            "against 0. Methods against each other: two-sided sign-flip test on their common cases. "
            f"Intervals: {u['failed_resamples']}.",
        )
    ]


def _readers_random_table(report: dict) -> list[dict]:
    """Method vs method with readers and cases random (Obuchowski–Rockette, Hillis ddf), Holm-adjusted."""
    rr = (report.get("tests") or {}).get("readers_random")
    if not rr or not rr["method_vs_method"]:
        return []
    rows = [
        [
            f"{r['a']} vs {r['b']}",
            r["metric"],
            r["n_readers"],
            r["n_cases"],
            fmt(r["mean_difference"]),
            f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]",
            fmt(r["df"], 1),
            fmt_p(r["p_value"]),
            fmt_p(r["p_holm"]),
        ]
        for r in rr["method_vs_method"]
    ]
    level = round(100 * report["uncertainty"]["level"])
    return [
        _table(
            "Methods compared with readers as a random effect",
            ["comparison", "figure of merit", "readers", "cases", "difference", f"{level} % CI", "df", "p", "Holm p"],
            rows,
            f"{rr['method']}. FOM {rr['fom']}. The difference generalises to other readers and other cases; "
            "Holm's adjustment is over the pairs of methods of one figure of merit.",
        )
    ]


def subgroup_table(report: dict, group: str) -> list[dict]:
    """The subgroup table of one split ('modality', 'query_class' or 'reader'): one row per group × block."""
    split = (report.get("subgroups") or {}).get(group)
    if not split or not split["groups"]:
        return [_table(f"By {group.replace('_', ' ')}", ["group"], [], (split or {}).get("note") or "Not computed.")]
    blocks = [b for g in split["groups"].values() for b in g["statistics"].values()]
    columns = list(dict.fromkeys(c for b in blocks for c in b))
    rows = [
        [name, g["n_cases"], row] + [fmt(stats.get(c)) for c in columns]
        for name, g in split["groups"].items()
        for row, stats in g["statistics"].items()
    ]
    return [
        _table(
            f"By {split['key']}",
            ["group", "cases", "row"] + columns,
            rows,
            (split.get("note") or "") + " Point estimates recomputed on each group's cases.",
        )
    ]


MODE_TABLES = {"choose_k": _choose_tables, "ranking": _ranking_tables, "rating": _rating_tables}


def report_tables(report: dict, *, group: str = "") -> list[dict]:
    """Every table of the report as {title, columns, rows (strings), note}."""
    tables = [_readers_table(report), _methods_table(report)]
    if report.get(report["section"]):
        tables += MODE_TABLES[report["section"]](report) + _tests_table(report) + _readers_random_table(report)
    if group and report.get("subgroups"):
        tables += subgroup_table(report, group)
    return tables
