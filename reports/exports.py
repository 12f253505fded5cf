"""Exports of an agreement report: long CSV, questions CSV, JSON, iMRMC-style CSV, printable HTML and PDF.

Every export is computed from the same objects as the report page (reports.build and the arrays
of reports.inputs), so a number in a download is the number on the page. Column meanings:
docs/reports.md, "Exports and their columns". Every CSV is written by `core.csvsafe.csv_text`: a text cell a
spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a leading apostrophe.

iMRMC mapping (one row per reader × case × modality, columns readerID, caseID, modalityID, score;
no truth rows: the scores are not ROC ratings but per-case performance, for iMRMC's
``uStat11.jointD(df, modalitiesToCompare = c(A, B), kernelFlag = 1)`` reader-and-case averaged
mean with its MRMC variance):

* choose-k: modalityID = method; score = the fraction (0-1) of the case's catalogue on which the
  reader's selection agrees with the method's k nearest. Its mean over cases is the report's
  per-reader % agreement / 100 (Table 2), its mean over readers and cases the mean agreement.
* rank-all: modalityID = "<method>@ndcg<p>"; score = nDCG@p of the method's order (tie-averaged with the
  option ndcg_ties=averaged) against that
  reader's ranking. Rows of the ground-truth reader reproduce the report's nDCG of each method;
  the other readers' rows the "by reader" subgroup table.
* rate: modalityID = method; score = Spearman ρ, within the case, between the reader's ratings
  and the method's distances (negative = the reader rates the model's near images higher);
  undefined ρ (a reader giving one rating to the whole catalogue) is left out.
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Iterable
from typing import Any

import numpy as np
from django.template.loader import render_to_string
from django.utils.text import slugify
from matplotlib.backends.backend_pdf import PdfPages

from annotations.models import Answer, AnswerItem, CaseFlag, CaseVisit, ImageAnswer
from core.csvsafe import csv_text
from core.errors import ApplicationError
from readerstudy.models import AnswerMode, StudyQuestion
from reports import stats as S
from reports.analysis import Analysis, ReportInputs, analysed_cases, analysis_for, quiet, report_inputs
from reports.choose_k import per_case_agreement
from reports.figures import new_figure, report_figure_uris, report_figures
from reports.inputs import VALUE_FIELD, StudyArrays, query_classes, study_arrays
from reports.jobs import report_latest
from reports.options import ReportOptions
from reports.ranking import cutoffs, method_ndcg
from reports.tables import report_tables

IMRMC_COLUMNS = ["readerID", "caseID", "modalityID", "score"]


# ============================================================================================
# JSON
# ============================================================================================


def report_json(report: dict) -> str:
    """Strict JSON (no NaN) of the whole report."""
    return json.dumps(report, indent=1, allow_nan=False, ensure_ascii=False)


# ============================================================================================
# Long CSV: one row per reader × case × candidate
# ============================================================================================


def _answer_meta(study) -> tuple[dict, dict, dict]:
    """Per (assignment, case): answer fields, visit active ms, and the flag's comment (flagged pairs only)."""
    answers = {
        (a, c): {"submitted_at": t.isoformat(), "active_ms": ms, "revision": rev}
        for a, c, t, ms, rev in Answer.objects.filter(assignment__study=study).values_list(
            "assignment_id", "case_id", "submitted_at", "active_ms", "revision"
        )
    }
    visits = {
        (a, c): ms
        for a, c, ms in CaseVisit.objects.filter(assignment__study=study).values_list(
            "assignment_id", "case_id", "active_ms"
        )
    }
    flags = {
        (a, c): comment
        for a, c, comment in CaseFlag.objects.filter(assignment__study=study).values_list(
            "assignment_id", "case_id", "comment"
        )
    }
    return answers, visits, flags


def _shown_positions(study) -> dict[tuple[int, int], int | None]:
    return {
        (a, c): pos
        for a, c, pos in AnswerItem.objects.filter(answer__assignment__study=study).values_list(
            "answer__assignment_id", "candidate_id", "shown_position"
        )
    }


def _method_columns(inputs: ReportInputs) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Per method: (distances, ranks, choose-k selection) over all loaded cases (NaN where unavailable)."""
    study = inputs.arrays.study
    out = {}
    for m in inputs.methods:
        ok = m.available
        ranks = S.ranks_from_scores(np.nan_to_num(m.distances, nan=np.inf), higher_is_closer=False).astype(float)
        ranks[~ok] = np.nan
        chosen = None
        if study.mode == AnswerMode.CHOOSE_K:
            chosen = np.where(ok[:, None], ranks <= study.k, np.nan)
        out[m.key] = (m.distances, ranks, chosen)
    return out


def long_columns(inputs: ReportInputs) -> list[str]:
    """Column names of the long CSV (method columns per method of the report)."""
    columns = ["study_id", "reader_id", "reader", "case_id", "case_position", "query_image_id", "query_modality"]
    columns += ["query_class"] if inputs.classes is not None else []
    columns += [
        "candidate_id",
        "candidate_image_id",
        "candidate_position",
        "shown_position",
        "selected",
        "rank",
        "rating",
        "answered",
        "in_analysis",
        "submitted_at",
        "answer_active_ms",
        "visit_active_ms",
        "revision",
        "flagged",
        "flag_comment",
        "provenance",
    ]
    for m in inputs.methods:
        columns += [f"{m.key}__distance", f"{m.key}__rank"]
        columns += [f"{m.key}__selected"] if inputs.arrays.study.mode == AnswerMode.CHOOSE_K else []
    return columns


def _cell(value: float) -> Any:
    """A float array cell as CSV text: integers without '.0', NaN as empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return int(value) if float(value).is_integer() else float(value)


def long_rows(inputs: ReportInputs) -> Iterable[dict]:
    """Rows of the long CSV (every analysed reader × every loaded case × every candidate)."""
    a = inputs.arrays
    study = a.study
    answers, visits, flags = _answer_meta(study)
    shown = _shown_positions(study)
    use = analysed_cases(a)
    methods = _method_columns(inputs)
    field = VALUE_FIELD[study.mode]
    for r, reader in enumerate(a.readers):
        for c, case_id in enumerate(a.case_ids.tolist()):
            key = (reader.assignment_id, case_id)
            ans = answers.get(key)
            base = {
                "study_id": study.pk,
                "reader_id": reader.user_id,
                "reader": reader.name,
                "case_id": case_id,
                "case_position": c,
                "query_image_id": int(a.query_ids[c]),
                "query_modality": a.modality[c],
                "answered": int(ans is not None),
                "in_analysis": int(use[c]),
                "submitted_at": ans["submitted_at"] if ans else "",
                "answer_active_ms": ans["active_ms"] if ans else "",
                "visit_active_ms": visits.get(key, ""),
                "revision": ans["revision"] if ans else "",
                "flagged": int(key in flags),
                "flag_comment": flags.get(key, ""),
            }
            if inputs.classes is not None:
                base["query_class"] = inputs.classes[c]
            for j, cand_id in enumerate(a.candidate_ids[c].tolist()):
                row = dict(
                    base,
                    candidate_id=cand_id,
                    candidate_image_id=int(a.image_ids[c, j]),
                    candidate_position=j,
                    shown_position=shown.get((reader.assignment_id, cand_id), "") or "",
                    selected="",
                    rank="",
                    rating="",
                    provenance=json.dumps(a.provenance[c][j]),
                )
                row[field] = _cell(a.values[c, j, r])
                for mkey, (dist, ranks, chosen) in methods.items():
                    row[f"{mkey}__distance"], row[f"{mkey}__rank"] = _cell(dist[c, j]), _cell(ranks[c, j])
                    if chosen is not None:
                        row[f"{mkey}__selected"] = _cell(chosen[c, j])
                yield row


def long_csv(inputs: ReportInputs) -> str:
    """The long-format CSV as text."""
    return csv_text(long_rows(inputs), header=long_columns(inputs), dicts=True)


# ============================================================================================
# Questions CSV: one row per reader × case × image × per-image question
# ============================================================================================

QUESTION_COLUMNS = [
    "study_id",
    "reader_id",
    "reader",
    "case_id",
    "case_position",
    "query_image_id",
    "query_modality",
    "query_class",
    "image",
    "image_id",
    "candidate_id",
    "candidate_position",
    "shown_position",
    "question",
    "question_text",
    "value",
    "answered",
    "in_analysis",
]


def question_rows(arrays: StudyArrays, classes: list[str] | None = None) -> Iterable[dict]:
    """Rows of the questions CSV: the long CSV's readers and cases, each image a question applies to.

    `image` is "query" or "candidate" (then `candidate_id`/`candidate_position` join the long CSV);
    `value` is the reader's answer, empty when they gave none (`answered` = 0: no answer to the case).
    """
    study = arrays.study
    questions = list(StudyQuestion.objects.filter(study=study).order_by("position", "pk"))
    if not questions:
        return
    values = {
        (a, c, q, i): v
        for a, c, q, i, v in ImageAnswer.objects.filter(answer__assignment__study=study).values_list(
            "answer__assignment_id", "answer__case_id", "question_id", "image_id", "value"
        )
    }
    answered = set(Answer.objects.filter(assignment__study=study).values_list("assignment_id", "case_id"))
    shown = _shown_positions(study)
    use = analysed_cases(arrays)
    for reader in arrays.readers:
        for c, case_id in enumerate(arrays.case_ids.tolist()):
            key = (reader.assignment_id, case_id)
            base = {
                "study_id": study.pk,
                "reader_id": reader.user_id,
                "reader": reader.name,
                "case_id": case_id,
                "case_position": c,
                "query_image_id": int(arrays.query_ids[c]),
                "query_modality": arrays.modality[c],
                "query_class": classes[c] if classes is not None else "",
                "answered": int(key in answered),
                "in_analysis": int(use[c]),
            }
            images = [("query", int(arrays.query_ids[c]), "", "", "")] + [
                ("candidate", int(arrays.image_ids[c, j]), cand, j, shown.get((reader.assignment_id, cand)) or "")
                for j, cand in enumerate(arrays.candidate_ids[c].tolist())
            ]
            for kind, image_id, cand, position, seen in images:
                for q in questions:
                    if q.applies_to != StudyQuestion.AppliesTo.ALL and q.applies_to != (
                        "query" if kind == "query" else "candidates"
                    ):
                        continue
                    yield dict(
                        base,
                        image=kind,
                        image_id=image_id,
                        candidate_id=cand,
                        candidate_position=position,
                        shown_position=seen,
                        question=q.key,
                        question_text=q.text,
                        value=values.get((*key, q.pk, image_id), ""),
                    )


def questions_csv(arrays: StudyArrays, classes: list[str] | None = None) -> str:
    """The questions CSV as text (a header only when the study asks no per-image question)."""
    return csv_text(question_rows(arrays, classes), header=QUESTION_COLUMNS, dicts=True)


# ============================================================================================
# iMRMC-style CSV
# ============================================================================================


def _imrmc_choose(an: Analysis) -> Iterable[tuple]:
    sel = an.values.astype(bool)
    for key, m in an.methods.items():
        if not m.mask.any():
            continue
        scores = per_case_agreement(sel[m.mask], S.model_selection(m.ranks[m.mask], an.k)) / 100.0
        for c, case_id in enumerate(an.case_ids[m.mask].tolist()):
            for r, reader in enumerate(an.readers):
                yield reader, case_id, key, float(scores[c, r])


def _imrmc_rank(an: Analysis, p: tuple[int, ...], ties: str = "broken") -> Iterable[tuple]:
    ranks = an.values.astype(int)
    for key, m in an.methods.items():
        if not m.mask.any():
            continue
        for q in cutoffs(p, ranks.shape[1]):
            for r, reader in enumerate(an.readers):
                scores = method_ndcg(m, ranks[..., r], q, ties)
                for case_id, score in zip(an.case_ids[m.mask].tolist(), np.atleast_1d(scores)):
                    yield reader, case_id, f"{key}@ndcg{q}", float(score)


def _imrmc_rate(an: Analysis) -> Iterable[tuple]:
    x = an.values.astype(float)
    for key, m in an.methods.items():
        if not m.mask.any():
            continue
        rho = quiet(S.spearman_rho, np.moveaxis(x[m.mask], -1, 1), m.distances[m.mask][:, None, :])
        for c, case_id in enumerate(an.case_ids[m.mask].tolist()):
            for r, reader in enumerate(an.readers):
                if not np.isnan(rho[c, r]):
                    yield reader, case_id, key, float(rho[c, r])


def imrmc_rows(inputs: ReportInputs, options: ReportOptions) -> list[tuple]:
    """(readerID, caseID, modalityID, score) rows over the analysed cases (mapping: module docstring)."""
    an = analysis_for(inputs, analysed_cases(inputs.arrays))
    mode = inputs.arrays.study.mode
    if mode == AnswerMode.CHOOSE_K:
        return list(_imrmc_choose(an))
    if mode == AnswerMode.RANK_ALL:
        return list(_imrmc_rank(an, options.p, options.ndcg_ties))
    return list(_imrmc_rate(an))


def imrmc_csv(inputs: ReportInputs, options: ReportOptions) -> str:
    """The iMRMC-style CSV as text (header readerID,caseID,modalityID,score)."""
    return csv_text(imrmc_rows(inputs, options), header=IMRMC_COLUMNS)


# ============================================================================================
# Printable HTML and PDF
# ============================================================================================


def report_html(report: dict, *, group: str = "") -> str:
    """A standalone HTML page (inline CSS, figures as base64 PNG) to print or archive."""
    return render_to_string(
        "reports/printable.html",
        {
            "report": report,
            "tables": report_tables(report, group=group),
            "figures": report_figure_uris(report),
        },
    )


def _text_lines(report: dict, group: str) -> list[str]:
    """The report's header and tables as fixed-width text lines (PDF pages)."""
    s = report["study"]
    lines = [
        f"Agreement report: {s['name']}",
        f"mode {s['mode']} · status {s['status']}"
        + (" · INTERIM (the study is not closed)" if report["interim"] else "")
        + f" · generated {report['generated_at']}",
        report["data"]["note"],
        _uncertainty_text(report),
        "",
    ]
    for t in report_tables(report, group=group):
        widths = [max(len(str(x)) for x in [c] + [row[i] for row in t["rows"]]) for i, c in enumerate(t["columns"])]
        lines += [t["title"], "  ".join(c.ljust(w) for c, w in zip(t["columns"], widths))]
        lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in t["rows"]]
        lines += _wrap(t["note"], 150) + [""]
    return lines


def _uncertainty_text(report: dict) -> str:
    u = report.get("uncertainty")
    if not u:
        return "Uncertainty: not computed (no bootstrap)."
    return (
        f"Uncertainty: {int(u['level'] * 100)} % {u['method']} over {u['unit']}, "
        f"{u['n_resamples']} resamples, seed {u['seed']}."
    )


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width) if text else []


def report_pdf(report: dict, *, group: str = "") -> bytes:
    """A PDF (matplotlib PdfPages): text pages with the tables, then one page per figure."""
    buf = io.BytesIO()
    lines = _text_lines(report, group)
    per_page = 62
    with PdfPages(buf, metadata={"Title": f"Agreement report: {report['study']['name']}"}) as pdf:
        for start in range(0, len(lines), per_page):
            fig = new_figure(11.69, 8.27)
            fig.set_layout_engine(None)
            fig.text(
                0.03,
                0.97,
                "\n".join(lines[start : start + per_page]),
                va="top",
                ha="left",
                family="monospace",
                fontsize=6.5,
            )
            pdf.savefig(fig)
        for _, title, fig in report_figures(report):
            fig.suptitle(title, fontsize=9)
            pdf.savefig(fig)
    return buf.getvalue()


# ============================================================================================
# One entry point for the downloads and the command line
# ============================================================================================

FORMATS = {
    "json": ("application/json", "json"),
    "csv": ("text/csv; charset=utf-8", "csv"),
    "imrmc": ("text/csv; charset=utf-8", "imrmc.csv"),
    "questions": ("text/csv; charset=utf-8", "csv"),
    "html": ("text/html; charset=utf-8", "html"),
    "pdf": ("application/pdf", "pdf"),
}


_FILE_KIND = {"csv": "long", "questions": "questions"}


def export_filename(study, fmt: str, *, interim: bool) -> str:
    """A safe file name: the study id and a slug of its name, never anything from the answers."""
    slug = slugify(study.name)[:40] or "study"
    return f"study-{study.pk}-{slug}{'-interim' if interim else ''}-{_FILE_KIND.get(fmt, 'report')}.{FORMATS[fmt][1]}"


def export_file(
    *, study, options: ReportOptions, fmt: str, run=None, group: str = "", report: dict | None = None
) -> tuple[bytes, str, str]:
    """(body, content type, file name) of one download; `report` = an already computed report dict."""
    if fmt not in FORMATS:
        raise ApplicationError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    interim = study.status != "closed"
    if fmt == "questions":
        arrays = study_arrays(study=study)
        classes = query_classes(arrays=arrays, label=options.class_label) if options.class_label else None
        return questions_csv(arrays, classes).encode(), FORMATS[fmt][0], export_filename(study, fmt, interim=interim)
    if fmt in ("csv", "imrmc"):
        inputs = report_inputs(study=study, options=options)
        text = long_csv(inputs) if fmt == "csv" else imrmc_csv(inputs, options)
        return text.encode(), FORMATS[fmt][0], export_filename(study, fmt, interim=interim)
    if report is None:
        report, _ = report_latest(study=study, options=options, run=run)
    body = {
        "json": lambda: report_json(report).encode(),
        "html": lambda: report_html(report, group=group).encode(),
        "pdf": lambda: report_pdf(report, group=group),
    }[fmt]()
    return body, FORMATS[fmt][0], export_filename(study, fmt, interim=report["interim"])
