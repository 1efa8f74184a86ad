"""Every study file shipped in studies/ passes ``vrsearch validate`` — the checks
``vrsearch run`` makes before Ray starts. Studies sized for a 2-core machine
(the phantom ones) are checked against this machine's resources; the real-data
studies are for a GPU cluster (``--address``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vrsearch.cli import app

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.yaml"))
LAPTOP = ("phantom", "quickstart", "smoke", "labeled_only")


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_shipped_study_validates(path):
    cluster = [] if any(word in path.stem for word in LAPTOP) else ["--address", "auto"]
    res = CliRunner().invoke(app, ["validate", str(path), *cluster])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("name:")  # the resolved study


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_the_resolved_study_validates_again(path):
    """``resume`` reads the resolved study.yaml, where every default is spelled out: keys
    the design ignores appear there at their defaults and must not be refused."""
    import yaml

    from vrsearch.study import build_study, load_study, study_to_yaml

    resolved = study_to_yaml(load_study(path))
    assert study_to_yaml(build_study(yaml.safe_load(resolved))) == resolved


def test_quickstart_labeled_only_shares_what_it_is_compared_on():
    """``make quickstart`` compares the search with studies/quickstart_labeled_only.yaml: both
    must train on the same data with the same model, schedule, evaluation and seed."""
    from vrsearch.study import load_study

    search, base = (
        load_study(p).model_dump(mode="json")
        for p in (STUDIES[0].parent / "quickstart.yaml", STUDIES[0].parent / "quickstart_labeled_only.yaml")
    )
    for section in ("dataset", "model", "train"):
        assert base[section] == search[section], section
    assert base["search"]["seeds"] == search["search"]["seeds"]
    assert base["method"]["params"]["loss"] == search["method"]["params"]["loss"]
