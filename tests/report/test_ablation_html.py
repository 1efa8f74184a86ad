"""The report's ablation tables (``table_html``): headline first, its verdict columns leftmost,
numbers kept on one line, per-class Dice and empty-mask counts after it, user text escaped."""

from __future__ import annotations

import html
import re

from tests.results.test_table import FLARE, results
from vrsearch.report.html import table_html
from vrsearch.results.table import ablation_table


def tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows of cell texts) of every table in ``text``."""
    out = []
    for title, body in re.findall(r"<h4>(.*?)</h4>(.*?)</table>", text, flags=re.S):
        headers = re.findall(r"<th>(.*?)</th>", body)
        rows = [
            [re.sub(r"<.*?>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1])
        ]
        out.append((title, headers, rows))
    return out


def test_headline_first_then_case_level_then_classes():
    tab = ablation_table(results(groups=("baseline", "no_dvcl", "a<b&c"), classes=list(enumerate(FLARE, 1))))
    text = table_html(tab)
    parsed = tables(text)
    assert [t[0] for t in parsed] == [
        "Headline: each arm vs the baseline over seeds",
        "Other metrics",
        "Case-level view: on these trained models",
        "Per-class Dice (%)",
        "Empty masks per class",
    ]
    title, headers, rows = parsed[0]
    assert headers[:6] == ["Group", "n", "Dice (%) ± CI", "Δ Dice (pp) ± CI", "p (Holm)", "MDD (pp)"]
    assert not any(name in headers for name in FLARE)  # organ columns live in their own tables
    assert [r[0] for r in rows] == ["baseline", "no_dvcl", "a&lt;b&amp;c"]  # escaped
    for cells, want in zip(rows, tab.cells(tab.headline_columns())):
        assert cells[:6] == [html.escape(text) for text, _ in want]
    assert parsed[2][2][0][0] == "no_dvcl" and len(parsed[2][2]) == 2  # case-level: arms only
    assert parsed[3][1] == ["Group", *FLARE] and parsed[4][1] == ["Group", "Rows", *FLARE]
    assert text.count('class="num" style="white-space:nowrap"') > 0 and "a<b" not in text
    assert "Holm" in text and "80 % power" in text and "not a verdict about the method" in text
