"""A trial's fragment files that cannot be read (a host that lost power can leave a
zero-length or truncated parquet file behind its atomic rename) stop compaction and a
search's plan with one line naming the file and the way out, never a pyarrow traceback."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
import yaml

from tests.conftest import tiny_study_dict
from tests.e2e.test_cli import VRSEARCH
from tests.orchestrate.test_searchers import DIST, SPACE, _fragment, optuna_study, search_study
from vrsearch.errors import VrsearchError
from vrsearch.orchestrate.searchers import plan_search
from vrsearch.results import fragments, io
from vrsearch.results.rundir import RunDir
from vrsearch.study.load import build_study


@pytest.mark.parametrize("damage", ["empty", "truncated"])
@pytest.mark.parametrize("name", [io.HISTORY_FILE, io.CASES_FILE])
def test_an_unreadable_fragment_is_one_line_naming_it(tmp_path, damage, name):
    d = fragments.trial_dir(tmp_path, "t0")
    fragments.write_json(d / "meta.json", {"seed": 0})
    fragments.write_json(d / "result.json", {"status": "completed", "trial_id": "t0"})
    frame = pd.DataFrame({"trial_id": ["t0"] * 3, "iteration": [1, 2, 3], "val_dice": [0.1, 0.2, 0.3]})
    for f in (io.HISTORY_FILE, io.CASES_FILE):
        io.write_frame(d / f, frame)
    fragments.compact(tmp_path)  # intact: compacts
    data = (d / name).read_bytes()
    (d / name).write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(VrsearchError) as err:
        fragments.compact(tmp_path)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"{d / name}: not a readable parquet file")
    assert f"delete {d} and resume to run that trial again" in line


def test_a_searchs_plan_names_an_unreadable_history(tmp_path):
    study, run = search_study(tmp_path), RunDir(tmp_path / "run")
    ost = optuna_study(study, run)
    ost.ask(DIST)
    _fragment(run, "a", 0, 0, "completed", 0.6)
    (run.fragment("a") / io.HISTORY_FILE).write_bytes(b"")
    with pytest.raises(VrsearchError, match=r"trials/a/history.parquet: not a readable parquet file"):
        plan_search(study, run)


def test_resume_over_an_unreadable_fragment_is_one_line(tiny_phantom, tmp_path):
    """Through the console script, before Ray starts: exit 2, one line on stderr."""
    search = {"design": "search", "space": SPACE, "num_samples": 2}
    study = build_study(tiny_study_dict(tiny_phantom, tmp_path / "run", search=search))
    run = RunDir(tmp_path / "run")
    run.path.mkdir(parents=True)
    run.study.write_text(yaml.safe_dump(study.model_dump(mode="json")))
    optuna_study(study, run).ask(DIST)
    _fragment(run, "a", 0, 0, "completed", 0.6)
    (run.fragment("a") / io.HISTORY_FILE).write_bytes(b"")
    proc = subprocess.run([VRSEARCH, "resume", str(run.path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "history.parquet: not a readable parquet file" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
