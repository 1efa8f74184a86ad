"""The README stands on its own: every repository path it names exists, and it points
outside the repository nowhere (no ``../`` links)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
TOP = ("vrsearch/", "studies/", "tests/", "benchmarks/", "notebooks/", "clusters/", ".ci/")
ROOT_FILES = ("Makefile", "pyproject.toml", "README.md")


def named_paths(text: str) -> set[str]:
    """Repository paths in inline code and links: ``studies/quickstart.yaml``,
    ``vrsearch/methods/``, ``benchmarks/RESULTS.md`` (brace and glob patterns expanded
    to their fixed prefix)."""
    spans = re.findall(r"`([^`\n]+)`", text) + re.findall(r"\]\(([^)\s]+)\)", text)
    out = set()
    for span in spans:
        for token in re.split(r"[\s,;=]+", span):
            token = token.strip("'\"()")
            if token.startswith(TOP) or token in ROOT_FILES:
                out.add(re.split(r"[{<\[]", token)[0])
    return out


def exists(path: str) -> bool:
    return any(REPO.glob(path)) if "*" in path else (REPO / path).exists()


def test_every_named_path_exists():
    paths = named_paths(README)
    assert len(paths) > 20  # the README does name its files
    missing = sorted(p for p in paths if not exists(p))
    assert not missing, f"README names files that are not in the repository: {missing}"


def test_every_named_file_exists_somewhere():
    """Bare file names (``method_step.py``, ``table.md`` written into a run dir excepted)."""
    written = {
        "table.md",
        "table.tex",
        "table.csv",
        "report.html",
        "study.yaml",
        "summary.json",
        "driver-error.log",
        "trials.parquet",
        "history.parquet",
        "cases.parquet",
        "optuna.db",
        "last.pt",
        "best.pt",
        "dataset.json",
        "result.json",
        "meta.json",
        "Info.cfg",
        "phantom.json",
        "timing.json",
        "status.json",
        "score.json",
    }
    names = {
        t
        for span in re.findall(r"`([^`\n]+)`", README)
        for t in re.split(r"[\s,;()]+", span)
        if re.fullmatch(r"[\w.-]+\.(py|yaml|md|ipynb|json|toml)", t) and t not in written
    }
    files = {p.name for p in REPO.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts}
    assert names and not sorted(names - files), sorted(names - files)


def test_nothing_outside_the_repository():
    assert "../" not in README
