"""The shipped DVCL FLARE22 studies: valid as written, a one-line error without the
data, and ``vrsearch run`` through real Ray on a tiny FLARE22-layout phantom."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from tests.e2e.test_cli import assert_one_line_error, cli
from vrsearch.data.phantom import PhantomConfig
from vrsearch.data.phantom_flare import write_phantom_flare22

REPO = Path(__file__).resolve().parents[2]
STUDIES = REPO / "studies"
TINY_FLARE = PhantomConfig(cases=6, unlabeled=4, test=0, seed=3, size=(32, 32, 16), spacing=(10.0, 10.0, 12.0))


@pytest.mark.parametrize("name", ["dvcl_flare", "dvcl_flare_ablation", "dvcl_phantom", "quickstart"])
def test_shipped_dvcl_studies_validate(name):
    cluster = ["--address", "auto"] if "flare" in name else []  # GPU-cluster studies
    proc = cli("validate", STUDIES / f"{name}.yaml", *cluster)
    assert proc.returncode == 0, proc.stderr
    assert "name: dvcl" in proc.stdout or "name: supervised" in proc.stdout


def test_ablation_arms_are_tables_2_and_3():
    study = yaml.safe_load((STUDIES / "dvcl_flare_ablation.yaml").read_text())
    arms = {a["name"]: a["set"] for a in study["search"]["arms"]}
    table2 = {(a.get("method.params.ebl", True), a.get("method.params.dvcl", True)) for a in arms.values()}
    assert {(False, False), (True, False), (False, True)} <= table2  # plus the baseline (True, True)
    pairs = {(a["method.params.k"], a["method.params.k_prime"]) for a in arms.values() if "method.params.k" in a}
    base = study["method"]["params"]
    assert pairs | {(base["k"], base["k_prime"])} == {(5, 5), (5, 10), (10, 10), (10, 15), (15, 15)}
    assert study["search"]["seeds"] == [0, 1, 2]


def test_run_without_the_data_is_one_line_and_writes_nothing(tmp_path):
    proc = cli("run", STUDIES / "dvcl_flare.yaml", cwd=tmp_path)
    assert_one_line_error(
        proc, "FLARE22 dataset not found at", str(tmp_path / "data" / "FLARE22"), "Training/FLARE22_LabeledCase50"
    )
    assert not (tmp_path / "runs").exists()


def shrunk_flare_study(tmp_path: Path, root: Path) -> Path:
    """studies/dvcl_flare.yaml as shipped, shrunk to a 2-core machine (only sizes change)."""
    study = yaml.safe_load((STUDIES / "dvcl_flare.yaml").read_text())
    study["dataset"].update(
        root=str(root), unlabeled_pool=3, patch_size=[16, 16, 8], spacing=[10.0, 10.0, 12.0], num_workers=0
    )
    study["model"].update(channels=[4, 8], feature_dim=8)
    study["method"]["params"].update(anchors=4, negatives=2, queries=32, queue_size=64, bank_size=16)
    study["train"].update(
        iterations=6,
        batch={"labeled": 1, "unlabeled": 1},
        log_every=1,
        checkpoint_every=None,
        threads=1,
        eval={"every": 3, "overlap": 0.25, "sw_batch_size": 2, "roi_size": None},
    )
    study["search"].update(num_samples=3, grace_period=3)
    study["resources"] = {"concurrent_trials": 2, "workers_per_trial": 1, "cpus_per_worker": 1}
    study["output"] = {"dir": str(tmp_path / "run")}
    path = tmp_path / "dvcl_flare.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.mark.slow
def test_dvcl_flare_runs_on_a_flare22_layout_folder(tmp_path):
    root = write_phantom_flare22(tmp_path / "FLARE22", TINY_FLARE)
    path = shrunk_flare_study(tmp_path, root)
    proc = cli("run", path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 3 and set(trials.status) <= {"completed", "stopped_early"}
    # the first trial is the paper's defaults (search.start_from_defaults)
    first = optuna.load_study(study_name="dvcl_flare", storage=f"sqlite:///{run / 'optuna.db'}").trials[0]
    assert first.params["method.params.k"] == 10 and first.params["method.params.k_prime"] == 15
    assert first.params["method.params.alpha"] == 0.5 and first.params["method.params.tau"] == 1.0
    history = pd.read_parquet(run / "history.parquet")
    for term in ("term_ecps", "term_hqc", "term_dvcl", "term_dvcl_const", "term_dvcl_psi"):
        assert term in history.columns
    cases = pd.read_parquet(run / "cases.parquet")
    assert set(cases.split) >= {"val"} and cases.class_name.nunique() == 13
    meta = [json.loads(p.read_text()) for p in (run / "trials").glob("*/meta.json")]
    assert meta and all("cell" in m for m in meta)
