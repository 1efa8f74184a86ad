"""GPU-speed flags on CPU: precision (autocast, loss scaling), channels-last,
torch.compile, pinned/persistent loaders, and a loop without per-step host syncs."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torch import nn

from vrsearch.data import pipeline
from vrsearch.engine import monitor as monitor_module
from vrsearch.engine import trainer as trainer_module
from vrsearch.engine.performance import CompileError, resolve_precision
from vrsearch.engine.trainer import Trainer
from vrsearch.errors import VrsearchError
from vrsearch.study import load_study

#: the training loop's own files (the loop and its loss monitor)
LOOP_FILES = {trainer_module.__file__, monitor_module.__file__}


def quick(tiny_study, iterations: int = 3, **train):
    """A study that trains ``iterations`` steps, evaluating once at the end."""
    eval_cfg = {"every": 1000, "at_start": False, "sw_batch_size": 4}
    return load_study(tiny_study(train={"iterations": iterations, "eval": eval_cfg, **train}))


def conv_dtypes(trainer: Trainer) -> list[tuple[bool, torch.dtype]]:
    """Record (grad enabled, output dtype) of every convolution the method runs."""
    seen: list[tuple[bool, torch.dtype]] = []
    for m in trainer.method.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            m.register_forward_hook(lambda _m, _i, out: seen.append((torch.is_grad_enabled(), out.dtype)))
    return seen


def finite_losses(fit) -> list[float]:
    losses = pd.DataFrame(fit.history).loss.dropna().tolist()
    assert losses and all(math.isfinite(x) for x in losses)
    return losses


# -- precision ----------------------------------------------------------------
def test_auto_precision_is_fp32_on_cpu(tiny_study, tmp_path):
    trainer = Trainer(quick(tiny_study, 2), tmp_path)
    assert trainer.precision.name == "fp32" and trainer.precision.dtype is None and trainer.scaler is None
    seen = conv_dtypes(trainer)
    assert trainer.fit().status == "completed"
    assert {dt for _, dt in seen} == {torch.float32}


def test_auto_precision_on_cuda_prefers_bf16(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    p = resolve_precision("auto", cuda)
    assert (p.name, p.dtype, p.scaled) == ("bf16", torch.bfloat16, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    p = resolve_precision("auto", cuda)
    assert (p.name, p.dtype, p.scaled) == ("fp16", torch.float16, True)
    with pytest.raises(VrsearchError, match="bf16 is not supported by this GPU"):
        resolve_precision("bf16", cuda)
    assert resolve_precision("fp32", cuda).dtype is None


def test_bf16_autocast_on_cpu_trains_in_bf16(tiny_study, tmp_path):
    trainer = Trainer(quick(tiny_study, 3, precision="bf16"), tmp_path)
    assert trainer.precision.dtype == torch.bfloat16 and trainer.scaler is None
    seen = conv_dtypes(trainer)
    fit = trainer.fit()
    assert fit.status == "completed", fit.error
    finite_losses(fit)
    train_dtypes = {dt for grad, dt in seen if grad}
    eval_dtypes = {dt for grad, dt in seen if not grad}
    assert train_dtypes == {torch.bfloat16}  # the forward ran in bf16
    assert eval_dtypes == {torch.bfloat16}  # so did evaluation's network (metrics are fp32)
    assert all(p.dtype == torch.float32 for p in trainer.method.parameters())  # master weights stay fp32
    assert math.isfinite(fit.final_val["dice"])


def test_fp16_with_grad_scaler_on_cpu(tiny_study, tmp_path):
    trainer = Trainer(quick(tiny_study, 3, precision="fp16"), tmp_path)
    assert trainer.precision.dtype == torch.float16
    assert isinstance(trainer.scaler, torch.amp.GradScaler) and trainer.scaler.is_enabled()
    seen = conv_dtypes(trainer)
    fit = trainer.fit()
    assert fit.status == "completed", fit.error
    finite_losses(fit)
    assert {dt for grad, dt in seen if grad} == {torch.float16}
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0  # the scaler's state is checkpointed (bit-exact resume)


def test_fp16_without_a_grad_scaler_is_a_clear_error(tiny_study, tmp_path, monkeypatch):
    def unavailable(*a, **k):
        raise RuntimeError("no GradScaler for this device")

    monkeypatch.setattr(torch.amp, "GradScaler", unavailable)
    with pytest.raises(VrsearchError, match=r"train.precision: fp16 needs torch.amp.GradScaler on cpu"):
        Trainer(quick(tiny_study, 2, precision="fp16"), tmp_path)


def test_unknown_precision_is_a_schema_error(tiny_study):
    with pytest.raises(VrsearchError, match="precision"):
        quick(tiny_study, 2, precision="fp8")


# -- channels-last ------------------------------------------------------------
def _convs(module: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)]


def test_channels_last_3d_weights(tiny_study, tmp_path):
    trainer = Trainer(quick(tiny_study, 2, channels_last=True), tmp_path)
    weights = _convs(trainer.method)
    assert weights and all(w.dim() == 5 for w in weights)
    assert all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in weights)
    # (a weight with one input channel is both layouts; the others really were permuted)
    assert any(not w.is_contiguous() for w in weights)
    fit = trainer.fit()
    assert fit.status == "completed", fit.error
    finite_losses(fit)
    assert all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in _convs(trainer.method))


def test_channels_last_2d_weights(tiny_study, tmp_path):
    study = load_study(
        tiny_study(
            model={"spatial_dims": 2},
            dataset={"patch_size": [16, 16, 1]},
            train={"iterations": 2, "channels_last": True, "eval": {"every": 1000, "at_start": False}},
        )
    )
    trainer = Trainer(study, tmp_path)
    weights = _convs(trainer.method)
    assert weights and all(w.dim() == 4 and w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert trainer.input_format is None  # 5D [B, C, X, Y, 1] batches: the slices follow the weights
    assert trainer.fit().status == "completed"


# -- loader -------------------------------------------------------------------
def test_loader_pins_memory_and_keeps_workers(monkeypatch):
    made: list[dict] = []

    class FakeLoader:
        def __init__(self, dataset, **kw):
            made.append(kw)

        def __iter__(self):
            return iter(())

    monkeypatch.setattr(torch.utils.data, "DataLoader", FakeLoader)
    pipeline.batches(object(), 2, pin_memory=True)
    pipeline.batches(object(), 2)
    assert made[0]["persistent_workers"] is True and made[0]["pin_memory"] is True
    assert made[1]["persistent_workers"] is True and made[1]["pin_memory"] is False


def test_batches_are_pinned_without_workers_too(monkeypatch):
    from vrsearch.methods.base import Batch

    pinned: list[Batch] = []
    monkeypatch.setattr(Batch, "pin_memory", lambda self: pinned.append(self) or self)
    src = [Batch(torch.zeros(1), torch.zeros(1)), Batch(torch.ones(1), torch.ones(1))]
    assert list(pipeline.batches(src, 0, pin_memory=True)) == src and pinned == src
    pinned.clear()
    assert list(pipeline.batches(src, 0)) == src and pinned == []


def test_ddp_wrap_uses_bucket_views():
    import inspect

    from vrsearch.orchestrate import trainable

    assert "gradient_as_bucket_view=True" in inspect.getsource(trainable.train_worker)


# -- no host syncs in the step -------------------------------------------------
def count_host_syncs(monkeypatch) -> list[str]:
    """Count ``item``/``__float__``/``__bool__`` calls made from the loop's frames."""
    calls: list[str] = []
    for name in ("item", "__float__", "__bool__"):
        real = getattr(torch.Tensor, name)

        def wrapper(self, *a, _real=real, _name=name, **k):
            if sys._getframe(1).f_code.co_filename in LOOP_FILES:
                calls.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return calls


def synced_fit(tiny_study, tmp_path, monkeypatch, iterations: int, log_every: int) -> int:
    trainer = Trainer(quick(tiny_study, iterations, log_every=log_every), tmp_path / f"{iterations}-{log_every}")
    with monkeypatch.context() as m:
        calls = count_host_syncs(m)
        fit = trainer.fit()
    assert fit.status == "completed", fit.error
    assert pd.DataFrame(fit.history).dropna(subset=["loss"]).iteration.tolist() == list(
        range(log_every, iterations + 1, log_every)
    )
    return len(calls)


def test_host_syncs_grow_with_log_points_not_iterations(tiny_study, tmp_path, monkeypatch):
    ten_by_5 = synced_fit(tiny_study, tmp_path, monkeypatch, 10, 5)  # 2 log points
    ten_by_10 = synced_fit(tiny_study, tmp_path, monkeypatch, 10, 10)  # 1 log point
    twenty_by_10 = synced_fit(tiny_study, tmp_path, monkeypatch, 20, 10)  # 2 log points
    assert 0 < ten_by_10 <= ten_by_5 <= ten_by_10 + 2  # one more log point: a bounded few more syncs
    assert twenty_by_10 == ten_by_5  # twice the iterations, same log points: the same syncs
    assert ten_by_5 < 10


def test_logged_means_match_the_per_step_values(tiny_study, tmp_path, monkeypatch):
    from vrsearch.methods.supervised import Supervised

    steps: list[float] = []
    real = Supervised.forward

    def spy(self, batch, it):
        out = real(self, batch, it)
        steps.append(float(out.loss.detach()))
        return out

    monkeypatch.setattr(Supervised, "forward", spy)
    fit = Trainer(quick(tiny_study, 6, log_every=4), tmp_path).fit()
    hist = pd.DataFrame(fit.history).dropna(subset=["loss"]).set_index("iteration")
    assert hist.index.tolist() == [4, 6]
    assert hist.loss[4] == pytest.approx(sum(steps[:4]) / 4, rel=1e-12)
    assert hist.loss[6] == pytest.approx(sum(steps[4:]) / 2, rel=1e-12)
    assert hist.term_sup[6] == hist.loss[6]


# -- divergence with deferred checks -------------------------------------------
def explode_from(monkeypatch, bad_it: int, factor: float = math.nan, raise_at: int | None = None) -> list[dict]:
    """Make Supervised's loss non-finite from 0-based iteration ``bad_it``; the terms
    the step returned are kept for the assertions."""
    from vrsearch.methods.supervised import Supervised

    real = Supervised.forward
    terms: list[dict] = []

    def explode(self, batch, it):
        if raise_at is not None and it >= raise_at:
            raise RuntimeError("a later step fails (e.g. sampling from NaN probabilities)")
        out = real(self, batch, it)
        if it >= bad_it:
            out.loss = out.loss * torch.tensor(factor)
        terms.append({k: float(v) for k, v in out.terms.items()})
        return out

    monkeypatch.setattr(Supervised, "forward", explode)
    return terms


def test_divergence_is_found_at_its_iteration_between_log_points(tiny_study, tmp_path, monkeypatch):
    terms = explode_from(monkeypatch, bad_it=2)
    trainer = Trainer(quick(tiny_study, 8, log_every=5), tmp_path)
    fit = trainer.fit()
    assert fit.status == "failed" and fit.iterations == 2
    sup = terms[2]["sup"]  # the terms of iteration 3, the first non-finite one
    assert fit.error == f"loss became nan at iteration 3 (sup={sup:.4g})"
    assert "loss" not in pd.DataFrame(fit.history).columns  # nothing of the diverged window is logged
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()


def test_divergence_to_inf_names_inf(tiny_study, tmp_path, monkeypatch):
    explode_from(monkeypatch, bad_it=1, factor=math.inf)
    fit = Trainer(quick(tiny_study, 4, log_every=4), tmp_path).fit()
    assert fit.status == "failed" and fit.error.startswith("loss became inf at iteration 2 (sup=")
    assert fit.iterations == 1


def test_a_step_that_fails_after_a_divergence_reports_the_divergence(tiny_study, tmp_path, monkeypatch):
    explode_from(monkeypatch, bad_it=1, raise_at=3)
    fit = Trainer(quick(tiny_study, 8, log_every=8), tmp_path).fit()
    assert fit.status == "failed" and fit.error.startswith("loss became nan at iteration 2 (")


def test_a_step_that_fails_without_divergence_raises(tiny_study, tmp_path, monkeypatch):
    explode_from(monkeypatch, bad_it=100, raise_at=3)
    with pytest.raises(RuntimeError, match="a later step fails"):
        Trainer(quick(tiny_study, 8, log_every=8), tmp_path).fit()


# -- torch.compile --------------------------------------------------------------
def test_compile_failure_is_one_clear_line_before_training(tiny_study, tmp_path, monkeypatch):
    def broken(*a, **k):
        def run(*x, **y):
            raise RuntimeError("C++ compile error\n\nCommand:\ng++ /tmp/x.cpp -shared -o x.so\n\nOutput: ...")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(CompileError) as err:
        Trainer(quick(tiny_study, 2, compile=True), tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == (
        "train.compile: torch.compile failed on cpu (RuntimeError: C++ compile error); set train.compile: false"
    )


def test_compile_errors_in_a_step_become_one_line(tiny_study, tmp_path, monkeypatch):
    import torch._dynamo.exc

    monkeypatch.setattr(trainer_module, "compile_networks", lambda module, device: 1)  # no real compilation
    trainer = Trainer(quick(tiny_study, 2, compile=True), tmp_path)

    def fails(batch, it):
        raise torch._dynamo.exc.InternalTorchDynamoError("dynamo broke\nlong traceback")

    trainer.step_module.forward = fails
    with pytest.raises(
        CompileError,
        match=r"^train.compile: torch.compile failed on cpu "
        r"\(InternalTorchDynamoError: dynamo broke\); set train.compile: false$",
    ):
        trainer.fit()


@pytest.mark.slow
def test_compile_trains_two_iterations(tiny_study, tmp_path):
    study = quick(tiny_study, 2, compile=True)
    try:
        trainer = Trainer(study, tmp_path)
        fit = trainer.fit()
    except CompileError as err:  # no usable toolchain: fail with the one-line reason, never a traceback
        assert "\n" not in str(err) and str(err).startswith("train.compile: ")
        pytest.fail(str(err))
    assert fit.status == "completed", fit.error
    finite_losses(fit)
    net = trainer.method.net
    assert net._compiled_call_impl is not None  # compiled in place ...
    assert "backbone.model.0.conv.weight" in net.state_dict()  # ... so checkpoint keys are unchanged


@pytest.mark.slow
def test_missing_compiler_is_reported_before_training(tmp_path):
    """A real toolchain failure (no C++ compiler) gives the one-line error."""
    env = {
        **os.environ,
        "CXX": "/nonexistent/g++",
        "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1",
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
    }
    code = (
        "import torch\nfrom vrsearch.engine.performance import CompileError, check_compiler\n"
        "try:\n    check_compiler(torch.device('cpu'))\nexcept CompileError as e:\n    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("ERR ")]
    assert len(lines) == 1, out.stdout + out.stderr
    assert lines[0].startswith("ERR train.compile: torch.compile failed on cpu (")
    assert lines[0].endswith("; set train.compile: false")
