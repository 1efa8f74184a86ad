"""The report of a real tiny run, opened offline in headless Chromium: no console
errors, no network requests, every figure drawn, a screenshot that is not blank."""

from __future__ import annotations

import io as _io
import re

import pandas as pd
import pytest
from PIL import Image

from tests.e2e.cdp import chromium, visit

pytestmark = pytest.mark.slow

PLOTS = (
    "document.querySelectorAll('.js-plotly-plot .main-svg').length > 0 ? "
    "document.querySelectorAll('.js-plotly-plot').length : 0"
)
HEADINGS = "Array.from(document.querySelectorAll('h2')).map(h => h.textContent)"


def check_page(report, min_plots: int):
    assert chromium(), "chromium is not installed: run 'make browser' (the README's test command does)"
    page = visit(report, evaluate={"plots": PLOTS, "headings": HEADINGS})
    assert page.errors == []
    assert page.remote_requests == [] and page.requests[0].startswith("file:")
    assert page.evaluated["plots"] >= min_plots
    shot = Image.open(_io.BytesIO(page.screenshot)).convert("L")
    lo, hi = shot.getextrema()
    assert hi - lo > 100 and len(set(shot.getdata())) > 20  # drawn, not a blank page
    return page


def test_ablation_report_in_chromium(ablation_run):
    _, _, run, proc = ablation_run
    report = run / "report.html"
    assert f"report: {report}" in proc.stdout and report.exists()
    page = check_page(report, min_plots=4)
    text = " ".join(page.evaluated["headings"]).lower()
    assert "ablation" in text and "learning curves" in text


def test_search_report_in_chromium(search_run):
    page = check_page(search_run / "run" / "report.html", min_plots=4)
    text = " ".join(page.evaluated["headings"]).lower()
    assert "optimisation history" in text and "importance" in text


LEGENDS = (
    "Object.fromEntries(['curves', 'terms'].map(id => [id, Array.from("
    "document.querySelectorAll('#' + id + ' .legendtext')).map(e => e.textContent)]))"
)
PANEL_TITLES = "Array.from(document.querySelectorAll('#terms .annotation-text')).map(e => e.textContent)"


def test_legends_and_progress_lines_carry_group_names(ablation_run):
    _, _, run, proc = ablation_run
    assert chromium(), "chromium is not installed: run 'make browser' (the README's test command does)"
    page = visit(run / "report.html", evaluate={"legends": LEGENDS, "panels": PANEL_TITLES})
    trials = pd.read_parquet(run / "trials.parquet")  # other tests may have grown the run with seeds
    ids = set(trials.trial_id.astype(str))
    expected = {f"{group} · seed {seed}" for group, seed in zip(trials.group, trials.seed)}
    assert {g for g in trials.group} == {"baseline", "ce_only"} and len(expected) == len(trials) >= 4
    for section in ("curves", "terms"):
        texts = page.evaluated["legends"][section]
        assert set(texts) == expected, (section, texts)
        assert not any(tid in text for text in texts for tid in ids)
    # each loss-term panel says what its term is (the supervised method's registration)
    assert any("supervised loss" in t for t in page.evaluated["panels"]), page.evaluated["panels"]
    progress = [ln for ln in proc.stdout.splitlines() if re.match(r"\[\d+/4\] ", ln)]
    assert len(progress) == 4 and all(any(f"] {name} completed" in ln for name in expected) for ln in progress)


HEADLINE_BOX = """(() => {
  const t = document.querySelector('#ablation table.ablation');
  const wrap = t.parentElement;
  const cells = Array.from(t.querySelectorAll('th, td'));
  return {inner: window.innerWidth, page: document.documentElement.scrollWidth,
          overflow: wrap.scrollWidth - wrap.clientWidth, wrapRight: wrap.getBoundingClientRect().right,
          right: Math.max(...cells.map(c => c.getBoundingClientRect().right)),
          left: Math.min(...cells.map(c => c.getBoundingClientRect().left)),
          headers: Array.from(t.querySelectorAll('thead th')).map(h => h.textContent)};
})()"""


def test_ablation_headline_visible_without_scrolling(ablation_run, tmp_path):
    """At a 1400 px window the headline table (verdict columns first) needs no sideways
    scrolling: for the real tiny ablation and for 13 organ classes (FLARE22) with long names."""
    from tests.results.test_table import FLARE, results, write_run
    from vrsearch.report.html import write_report

    _, _, run, _ = ablation_run
    flare = write_run(
        tmp_path / "flare",
        results(groups=("baseline", "no_dvcl", "dvcl_without_memory_bank"), classes=list(enumerate(FLARE, 1))),
    )
    for report in (run / "report.html", write_report(flare)):
        page = visit(report, evaluate={"box": HEADLINE_BOX})
        box = page.evaluated["box"]
        assert page.errors == [] and box["inner"] == 1400
        assert box["headers"][:6] == ["Group", "n", "Dice (%) ± CI", "Δ Dice (pp) ± CI", "p (Holm)", "MDD (pp)"]
        assert box["overflow"] <= 0 and box["page"] <= box["inner"], box  # nothing scrolls sideways
        assert 0 <= box["left"] and box["right"] <= min(box["wrapRight"], box["inner"]), box
