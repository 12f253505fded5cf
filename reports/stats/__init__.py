"""Agreement and ranking statistics for reader studies: arrays in, numbers out (no Django).

Conventions used throughout
---------------------------
* Axes: ``(n_cases, n_candidates, n_readers)`` for choose-k selections and reader rankings,
  ``(n_cases, n_candidates)`` for one method; functions that take a flat list of items use
  ``(n_items, n_readers)``.
* Ranks are 1-based and 1 means *most similar* (the model's nearest image has rank 1).
* Percentages are on the 0-100 scale; kappas, alphas and nDCG on their usual scale.
* Confidence intervals resample **cases** (queries), never the items inside a case: the items of
  one query are correlated and the item bootstrap is too narrow (papers README).  The statistic
  functions therefore work on per-case sufficient statistics so that one bootstrap resample is a
  weighted sum over cases (``case_weights`` = how often each case was drawn), not a recomputation.

Consensus tie-break rule (choose-k studies)
-------------------------------------------
The consensus selects exactly ``k`` candidates, ordered by number of reader votes (descending).
Candidates with equal votes at the cut-off are ordered by ``tie_break``:

* ``'index'`` (the report's default, ``ReportOptions.tie_break``): the lower catalogue index wins
  (model-independent).
* ``'model'`` (the default of ``consensus_selection`` and ``choose_k_summary`` called directly): the
  candidate the model ranks closer (lower model rank) wins; remaining ties (equal model ranks) go to
  the lower catalogue index.  Falls back to ``'index'`` when no model ranks are given.  Note that this
  favours the tie-breaking model when consensus is later compared with that same model, so the
  number of tie-broken cases is always reported.

Ties in a method's distances
----------------------------
``ranks_from_scores`` breaks equal distances by the lower catalogue position (``TIES_RULE``); the
k nearest of choose-k, nDCG@p, Kendall τ and Spearman ρ all use these tie-broken ranks.
``ndcg_tie_averaged`` is the alternative: the expected nDCG over every order of the tied candidates
(McSherry & Najork 2008); the report shows it beside nDCG when a method has ties.

Modules
-------
The package is split by subject; ``from reports import stats as S`` and ``S.<name>`` reach every public
name, as before the split:

* ``reports.stats.agreement``: Fleiss κ (from per-case sufficient statistics), Cohen κ, Krippendorff α,
  % agreement;
* ``reports.stats.consensus``: the exactly-k consensus and its tie-break rule, the model's k nearest,
  ``choose_k_summary``;
* ``reports.stats.ranking``: ranks from distances, nDCG@p (tie-broken and tie-averaged), random-order
  expectation, Kendall τ / Spearman ρ, ``ranking_summary``;
* ``reports.stats.icc``: ICCs, the readers-too ICC statistic, rating–distance correlation;
* ``reports.stats.bootstrap``: the case (and reader) bootstrap, percentile and BCa-expanded intervals;
* ``reports.stats.permutation``: permutation and paired tests, exact or Monte Carlo p-values;
* ``reports.stats.groups``: per-subgroup means.
"""

from __future__ import annotations

from reports.stats.agreement import (
    AgreementStats,
    agreement_stats,
    cohen_kappa,
    confusion_matrix,
    fleiss_kappa,
    fleiss_kappa_from_stats,
    kappa_from_confusion,
    krippendorff_alpha,
    mean_pairwise_agreement,
    paired_confusion,
    pairwise_cohen_kappa,
    percent_agreement,
    reader_agreement,
)
from reports.stats.bootstrap import (
    READERS_RANDOM_RULE,
    bootstrap_ci,
    fleiss_statistic,
    kappa_statistic,
    mean_statistic,
    reader_jackknife_case_noise,
    readers_random_interval,
)
from reports.stats.consensus import (
    TIE_BREAK_RULES,
    choose_k_summary,
    consensus_selection,
    consensus_tied,
    model_selection,
    tie_break_rule,
)
from reports.stats.groups import (
    by_group,
)
from reports.stats.icc import (
    distance_rating_correlation,
    icc,
    icc_statistic,
)
from reports.stats.permutation import (
    EXACT_MAX_CASES,
    monte_carlo_p,
    paired_permutation_test,
    paired_ttest,
    permutation_test_vs_random,
)
from reports.stats.ranking import (
    TIES_RULE,
    expected_random_ndcg,
    kendall_tau,
    ndcg_at,
    ndcg_tie_averaged,
    ranking_summary,
    ranks_from_order,
    ranks_from_scores,
    relevance_from_ranks,
    spearman_rho,
    tied_cases,
)

__all__ = [
    "READERS_RANDOM_RULE",
    "reader_jackknife_case_noise",
    "readers_random_interval",
    "fleiss_kappa",
    "AgreementStats",
    "agreement_stats",
    "fleiss_kappa_from_stats",
    "mean_pairwise_agreement",
    "kappa_from_confusion",
    "confusion_matrix",
    "cohen_kappa",
    "pairwise_cohen_kappa",
    "krippendorff_alpha",
    "percent_agreement",
    "reader_agreement",
    "paired_confusion",
    "TIE_BREAK_RULES",
    "tie_break_rule",
    "consensus_selection",
    "consensus_tied",
    "model_selection",
    "choose_k_summary",
    "TIES_RULE",
    "relevance_from_ranks",
    "ranks_from_scores",
    "ranks_from_order",
    "ndcg_at",
    "tied_cases",
    "ndcg_tie_averaged",
    "expected_random_ndcg",
    "kendall_tau",
    "spearman_rho",
    "ranking_summary",
    "icc",
    "icc_statistic",
    "distance_rating_correlation",
    "bootstrap_ci",
    "mean_statistic",
    "fleiss_statistic",
    "kappa_statistic",
    "EXACT_MAX_CASES",
    "monte_carlo_p",
    "permutation_test_vs_random",
    "paired_permutation_test",
    "paired_ttest",
    "by_group",
]
