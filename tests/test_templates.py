"""Template hygiene: Django's {# … #} comments end on their own line (a multi-line one is printed as text)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "templates"


def test_single_line_comments_close_on_their_line():
    unclosed = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted(ROOT.rglob("*.html"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if line.count("{#") > line.count("#}")
    ]
    assert unclosed == [], "use {% comment %}…{% endcomment %} for comments over several lines"
