"""Security properties of the package and what it writes.

(a) study files are loaded with a safe YAML loader; (b) checkpoints are read
with ``torch.load(..., weights_only=True)``; (c) no ``eval``/``exec``;
(d) the HTML report escapes user-controlled names; (e) a local Ray listens on
loopback only — checked where Ray really runs, by
``tests/e2e/test_run.py::test_kill_driver_then_resume_loses_and_reruns_nothing``
(it collects ``listening_sockets()`` of the driver's process tree and asserts
every address is loopback), so it is not repeated here; (f) no secret from the
environment ends up in a run directory.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from plotly.offline import get_plotlyjs

import vrsearch
from tests.conftest import tiny_study_dict
from tests.e2e.test_cli import VRSEARCH, assert_one_line_error, cli

PACKAGE = Path(vrsearch.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _trees():
    for path in SOURCES:
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


# ------------------------------------------------------------ (a) safe YAML


def test_python_yaml_tags_are_rejected_and_never_run(tmp_path):
    pwned = tmp_path / "PWNED"
    study = tmp_path / "evil.yaml"
    study.write_text(f'name: !!python/object/apply:os.system ["touch {pwned}"]\nmethod: {{name: supervised}}\n')
    assert_one_line_error(cli("validate", study, cwd=tmp_path), str(study), "python/object/apply:os.system")
    assert not pwned.exists()
    # a --set value is parsed safely too: the tag stays text (and is no valid name)
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: ok\n")
    proc = cli("validate", plain, "--set", f'name=!!python/object/apply:os.system ["touch {pwned}"]', cwd=tmp_path)
    assert_one_line_error(proc, "name:")
    assert not pwned.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.yaml", "plain.yaml"]


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/new:os.system [echo]",
        "!!python/name:os.system",
        "!!python/module:os",
        "!!python/object:argparse.Namespace {}",
    ],
)
def test_every_python_tag_is_refused(tmp_path, tag):
    from vrsearch.study import StudyError
    from vrsearch.study.load import read_yaml

    path = tmp_path / "s.yaml"
    path.write_text(f"name: {tag}\n")
    with pytest.raises(StudyError, match="YAML"):
        read_yaml(path)


def test_yaml_is_only_parsed_with_safe_loaders():
    """Every yaml.load names a SafeLoader (sub)class; no unsafe_load/full_load/UnsafeLoader anywhere."""
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml":
                assert node.attr not in (
                    "unsafe_load",
                    "full_load",
                    "full_load_all",
                    "unsafe_load_all",
                    "UnsafeLoader",
                    "FullLoader",
                    "Loader",
                    "load_all",
                ), f"{path}:{node.lineno}: yaml.{node.attr}"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "yaml"
            ):
                loader = {k.arg: k.value for k in node.keywords}.get("Loader")
                assert isinstance(loader, ast.Name) and loader.id in ("_UniqueKeyLoader", "SafeLoader"), (
                    f"{path}:{node.lineno}: yaml.load without a safe Loader"
                )


# ------------------------------------------------ (b) torch.load, (c) eval/exec


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def test_every_torch_load_is_weights_only():
    calls = 0
    for path, tree in _trees():
        aliases = {"torch.load"}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "torch":
                aliases |= {a.asname or a.name for a in node.names if a.name == "load"}
            if isinstance(node, ast.Import):
                aliases |= {f"{a.asname}.load" for a in node.names if a.name == "torch" and a.asname}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _dotted(node.func) in aliases:
                calls += 1
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, (
                    f"{path}:{node.lineno}: torch.load without weights_only=True"
                )
    assert calls >= 1  # the scan sees the checkpoint loader


def test_no_eval_or_exec():
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                assert name not in ("eval", "exec", "builtins.eval", "builtins.exec"), f"{path}:{node.lineno}: {name}("


# ---------------------------------------------------- (d) the report escapes

EVIL = "<script>alert(1)</script>"


def _evil_run(path: Path, design: str) -> Path:
    from tests.report.test_figures import synthetic
    from vrsearch.results import io

    trials, history, cases = synthetic()
    knob = f"method.params.{EVIL}"
    names = {"t1": "baseline", "t2": EVIL, "t3": EVIL.replace("1", "2")}
    trials[f"config.{knob}"] = trials.trial_id.str[:2].map({"t1": 1, "t2": 2, "t3": 3})
    if design == "ablation":
        trials["arm"] = trials["group"] = trials.trial_id.str[:2].map(names)
        trials["cell"] = "{}"
        search = {
            "design": "ablation",
            "arms": [{"name": EVIL, "set": {knob: 2}}, {"name": EVIL.replace("1", "2"), "set": {knob: 3}}],
        }
    else:
        trials["cell"] = [
            json.dumps({**json.loads(c), knob: int(v)}) for c, v in zip(trials["cell"], trials[f"config.{knob}"])
        ]
        trials["group"] = trials["cell"]
        search = {
            "design": "grid",
            "space": {
                knob: {"type": "categorical", "choices": [1, 2, 3]},
                "train.optimizer.lr": {"type": "categorical", "choices": [0.001, 0.01, 0.1]},
            },
        }
    trials["study"] = trials["method"] = EVIL
    trials.loc[trials.status != "completed", "error"] = EVIL
    cases["class_name"] = cases["class_name"].where(cases.class_index != 1, EVIL)
    cases["case_id"] = cases["case_id"].where(cases.case_id != "case0", EVIL)
    path.mkdir(parents=True)
    io.write_frame(path / io.TRIALS_FILE, trials)
    io.write_frame(path / io.HISTORY_FILE, history)
    io.write_frame(path / io.CASES_FILE, cases)
    (path / io.STUDY_FILE).write_text(
        yaml.safe_dump({"name": EVIL, "description": EVIL, "method": {"name": EVIL}, "search": search})
    )
    return path


@pytest.mark.parametrize("design", ["ablation", "grid"])
def test_report_escapes_arm_group_knob_and_study_names(tmp_path, design):
    from vrsearch.report.html import build_report

    text = build_report(_evil_run(tmp_path / design, design))
    js = get_plotlyjs()
    assert text.count(js) == 1
    rest = text.replace(js, "")
    assert "Could not render" not in rest
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rest  # the names are shown, escaped
    for n in ("1", "2"):
        raw = EVIL.replace("1", n)
        assert raw not in rest and f"alert({n})</script>" not in rest and f"alert({n})</" not in rest
    # the scripts outside the bundle are the bundle's own tag and one per plotly figure, none from a name
    tags = re.findall(r"<script[^>]*>", rest, re.I)
    assert set(tags) <= {"<script>", '<script type="text/javascript">'}, set(tags)
    assert len(tags) == rest.count("</script>") == rest.count('class="plotly-graph-div"') + 1


# ------------------------------------------------- (f) no secrets written


@pytest.mark.slow
def test_secrets_in_the_environment_are_not_written(tiny_phantom, tmp_path):
    secret = "sekrit-4f2c9e1a7b3d-do-not-write"
    run = tmp_path / "run"
    study = tmp_path / "study.yaml"
    base = tiny_study_dict(tiny_phantom, run)
    study.write_text(
        yaml.safe_dump(
            tiny_study_dict(
                tiny_phantom, run, train={**base["train"], "iterations": 2, "eval": {"every": 2, "sw_batch_size": 4}}
            )
        )
    )
    env = {
        **os.environ,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_ACCESS_KEY_ID": f"AKIA-{secret}",
        "AWS_SESSION_TOKEN": f"token-{secret}",
        "HF_TOKEN": f"hf-{secret}",
    }
    proc = subprocess.run(
        [VRSEARCH, "train", str(study)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert secret not in proc.stdout + proc.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".pt" for p in files)
    needle = secret.encode()
    for path in files:
        assert needle not in path.read_bytes(), path
        if path.suffix == ".parquet":  # compressed pages: look at the decoded values and metadata too
            meta = pq.read_schema(path).metadata or {}
            assert all(needle not in v for v in meta.values()), path
            frame = pd.read_parquet(path)
            assert not frame.astype(str).apply(lambda col: col.str.contains(secret, regex=False)).any().any(), path
