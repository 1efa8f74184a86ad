"""Every method knob is described (paper symbol, equation), and the CLI shows the descriptions."""

from __future__ import annotations

import pytest

from tests.corpus._util import cli_in_process
from tests.study.test_schema import error_of, with_
from vrsearch.methods import all_methods, get_method


def undescribed() -> dict[str, list[str]]:
    """Registered method -> its knobs without a (non-trivial) ``Field(description=...)``."""
    out = {}
    for spec in all_methods():
        bare = [k for k, f in spec.params.model_fields.items() if len((f.description or "").strip()) < 12]
        if bare:
            out[spec.name] = bare
    return out


def test_every_knob_of_every_method_is_described():
    missing = undescribed()
    assert not missing, "knobs without Field(description=...): " + "; ".join(
        f"{name}: {', '.join(knobs)}" for name, knobs in sorted(missing.items())
    )


@pytest.mark.parametrize("name", ["supervised", "mean_teacher", "cps", "self_training", "lcl"])
def test_baselines_and_lcl_are_described(name):
    """The methods whose knobs this module's authors described (a subset of the test above)."""
    assert name not in undescribed()


def test_methods_command_prints_a_table_with_descriptions(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal (pytest-xdist's workers say 80): one row per knob
    proc = cli_in_process("methods", "lcl")
    assert proc.returncode == 0, proc.stderr
    spec = get_method("lcl")
    assert proc.stdout.splitlines()[0].startswith("lcl")
    assert "mean_teacher" not in proc.stdout  # one method only
    header = next(line for line in proc.stdout.splitlines() if line.startswith("knob"))
    assert header.split() == ["knob", "default", "type", "description"]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("lambda_cont "))
    assert row.split()[1:3] == ["0.1", "float"] and spec.description("lambda_cont") in row
    assert "λ_cont" in spec.description("lambda_cont")


def test_methods_command_lists_every_method_and_refuses_an_unknown_one():
    proc = cli_in_process("methods")
    assert proc.returncode == 0, proc.stderr
    heads = {line.split()[0] for line in proc.stdout.splitlines() if line and not line.startswith(" ")}
    assert {spec.name for spec in all_methods()} <= heads
    bad = cli_in_process("methods", "lc")
    assert (
        bad.returncode == 2
        and bad.stderr.strip().splitlines() == [bad.stderr.strip()]
        and "did you mean 'lcl'" in bad.stderr
        and "Traceback" not in bad.stderr
    )


def test_validate_error_quotes_the_knob_description(tmp_path):
    study = with_("method.name", "lcl")
    study["method"]["params"] = {"tau": -1}
    msg = error_of(tmp_path, study)
    assert msg == ("method.params.tau: Input should be greater than 0 — " + get_method("lcl").description("tau"))
    study["method"]["params"] = {"matching": "both"}
    assert get_method("lcl").description("matching") in error_of(tmp_path, study)


def test_validate_error_quotes_an_arm_knob(tmp_path):
    """A bad value in an ablation arm reaches the same message through the override check."""
    study = with_("method.name", "mean_teacher")
    study["search"] = {"design": "ablation", "arms": [{"name": "hot", "set": {"method.params.ema_decay": 1.5}}]}
    msg = error_of(tmp_path, study)
    assert msg.startswith("search.arms.hot.set.method.params.ema_decay: value 1.5 is invalid")
    assert get_method("mean_teacher").description("ema_decay") in msg
