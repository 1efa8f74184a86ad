"""MONA: heads, views, gradient flow per term, two-stage contract, engine runs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from monai.networks.nets import BasicUNet

from vrsearch.components.views import crop_boxes, crop_means, draw_view, geo_apply, geo_undo
from vrsearch.engine.trainer import Trainer
from vrsearch.engine.trial import run_trial
from vrsearch.errors import VrsearchError
from vrsearch.methods import get_method
from vrsearch.methods.base import Batch, BuildContext
from vrsearch.methods.mona import MONA
from vrsearch.models import build_segnet
from vrsearch.models.embedding import DenseEmbedding
from vrsearch.models.heads import RepresentationHead, capture_outputs, decoder_stages
from vrsearch.study import load_study
from vrsearch.study.load import StudyError
from vrsearch.study.schema import ModelConfig

TINY = ModelConfig(channels=(4, 8, 16), feature_dim=4, num_res_units=0)
SMALL = {
    "embedding_dim": 8,
    "queries": 16,
    "keys": 32,
    "negative_bank_size": 32,
    "local_crops": 4,
    "local_crop_size": 4,
}
STAGE2_TERMS = {"stage", "sup", "unsup", "eqv", "contrast", "contrast_spread", "reflect_outside", "hard_fraction", "nn"}


def build(name: str = "mona", iterations: int = 10, model: ModelConfig = TINY, **params) -> MONA:
    spec = get_method(name)
    torch.manual_seed(0)
    return spec.build(spec.validate({**SMALL, **params}), BuildContext(model, 3, iterations, seed=0)).train()


def batch(seed: int = 0, n_lab: int = 2, n_unl: int = 2, size: int = 8) -> Batch:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n_lab, 1, size, size, size, generator=g)
    label = torch.randint(0, 3, (n_lab, 1, size, size, size), generator=g)
    unl = torch.randn(n_unl, 1, size, size, size, generator=g) if n_unl else None
    return Batch(image, label, unl)


def grads(module: torch.nn.Module) -> list:
    return [p.grad for p in module.parameters()]


def nonzero(module: torch.nn.Module) -> bool:
    return any(g is not None and bool(g.abs().sum() > 0) for g in grads(module))


# -- defaults ---------------------------------------------------------------------------------


def test_defaults_are_the_papers():
    k = get_method("mona").knobs()
    assert (k["tau_s"], k["tau_t"], k["tau"], k["bank_size"]) == (0.1, 0.01, 0.5, 36)
    assert (k["lambda_contrast"], k["lambda_eqv"], k["lambda_unsup"], k["lambda_nn"]) == (0.01, 1.0, 1.0, 1.0)
    assert (k["delta"], k["queries"], k["keys"], k["embedding_dim"], k["nn_k"]) == (0.97, 256, 512, 512, 5)
    assert (k["local_crops"], k["local_crop_size"], k["ema_decay"]) == (36, 64, 0.99)
    assert (k["student_augmentation"], k["teacher_augmentation"]) == ("weak", "strong")
    assert k["tailness"] and k["consistency"] and k["diversity"] and k["stage"] == "both"
    assert k["stage1_fraction"] == 0.25 and k["stage1_checkpoint"] is None and k["sampler"] == "ns"
    assert get_method("mona").data_needs().unlabeled


def test_stage_schedule():
    assert [build(iterations=8).stage_of(i) for i in range(8)] == [1, 1, 2, 2, 2, 2, 2, 2]
    assert build(stage=1, iterations=8).stage1_iters == 8 and build(stage=2).stage1_iters == 0
    with pytest.raises(Exception, match="stage: 1"):
        get_method("mona").validate({"stage": 1, "stage1_checkpoint": "x.pt"})


# -- heads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [2, 3])
def test_fpn_head_fuses_every_decoder_scale(dims):
    cfg = ModelConfig(channels=(4, 8, 16, 32), feature_dim=4, num_res_units=1, spatial_dims=dims)
    net = build_segnet(cfg, 3)
    stages = decoder_stages(net.backbone, cfg.channels)
    assert [(c, f) for _, c, f in stages] == [(4, 2), (8, 4)]
    x = torch.randn(2, 1, 16, 16, 16 if dims == 3 else 1)
    with capture_outputs([m for m, _, _ in stages]) as box:
        h = net.decode(x)
    assert [tuple(b.shape[1:2]) + tuple(b.shape[2:]) for b in box] == [(4,) + (8,) * dims, (8,) + (4,) * dims]
    assert not any(m._forward_hooks for m, _, _ in stages)  # hooks live only inside the block
    head = RepresentationHead([4, 4, 8], 12, dims)
    rep = head([h] + box)
    assert rep.shape == (2, 12) + (16,) * dims
    rep.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.lateral.parameters())


def test_basic_unet_stages():
    cfg = ModelConfig(arch="basic_unet", channels=(4, 4, 8, 16, 32, 4), feature_dim=4)
    net = build_segnet(cfg, 3)
    assert isinstance(net.backbone, BasicUNet)
    stages = decoder_stages(net.backbone, cfg.channels)
    with capture_outputs([m for m, _, _ in stages]) as box:
        net.decode(torch.randn(1, 1, 32, 32, 32))
    assert [(b.shape[1], 32 // b.shape[2]) for b in box] == [(c, f) for _, c, f in stages] == [(4, 2), (8, 4), (16, 8)]
    m = build(model=cfg)
    out = m.student.run(torch.randn(1, 1, 32, 32, 32), rep=True, enc=True)
    assert out["rep"].shape == (1, 8, 32, 32, 32) and out["enc"].shape[1] == 32


def test_predictor_is_the_segnet_without_training_heads():
    m = build()
    net = m.predictor()
    assert net is m.student.segnet and build(evaluate="teacher").predictor() is not None
    calls = []
    heads = [m.student.rep_head, m.student.global_proj, m.student.local_proj]
    hooks = [h.register_forward_hook(lambda *a: calls.append(1)) for h in heads]
    logits = net(torch.randn(1, 1, 8, 8, 8))
    assert logits.shape == (1, 3, 8, 8, 8) and not calls
    for h in hooks:
        h.remove()
    inside = {id(p) for p in net.parameters()}
    assert not inside & {id(p) for h in heads for p in h.parameters()}


# -- views and pooling ---------------------------------------------------------------------------


def test_views_undo_and_pooling_match_references():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 2, 4, 4, 3, generator=g)
    for _ in range(3):
        y, geo = draw_view(x, "weak", True, g)
        assert torch.equal(geo_undo(y, geo), x) and torch.equal(geo_undo(geo_apply(x, geo), geo), x)
    y, geo = draw_view(x, "strong", False, g)
    assert geo[1] == [0] * 6 and not torch.equal(y, x)
    _, geo = draw_view(torch.zeros(8, 1, 4, 6, 2), "weak", True, g)
    assert set(geo[1]) <= {0, 2}  # non-square in-plane: half turns only
    boxes = crop_boxes((4, 4, 3), 5, 2, g, x.device)
    ref = torch.stack([torch.stack([x[b, :, bx[0], bx[1], bx[2]].mean((1, 2, 3)) for bx in boxes]) for b in range(6)])
    assert torch.allclose(crop_means(x, boxes), ref)
    labels = torch.randint(0, 3, (6, 4, 4, 3), generator=g)
    sums, counts = DenseEmbedding(x).class_sums(labels, 3)
    for b in range(6):
        for c in range(3):
            sel = labels[b] == c
            assert counts[b, c] == sel.sum()
            assert torch.allclose(sums[b, c], x[b][:, sel].sum(1), atol=1e-5)
    idx = torch.tensor([0, 47, 48 * 5 + 7])
    assert torch.equal(DenseEmbedding(x).at(idx), x.flatten(2).permute(0, 2, 1).reshape(-1, 2)[idx])


@pytest.mark.parametrize("rows", [3, 400])
def test_dense_rows_by_either_gather_equal_the_reference(rows, monkeypatch):
    """``DenseEmbedding.at`` reads few rows by indexing and many through a channels-last
    copy (``GATHER_COPY``): both give the reference rows and, with repeated rows, the
    same gradient (float64, so the summation order cannot hide a difference)."""
    import vrsearch.models.embedding as emb

    g = torch.Generator().manual_seed(rows)
    x = torch.randn(3, 5, 4, 6, 2, dtype=torch.float64, generator=g)
    idx = torch.randint(0, 3 * 48, (rows,), generator=g)
    w = torch.randn(rows, 5, dtype=torch.float64, generator=g)
    out = []
    for copy_at in (0, 10**9):  # no read through the copy / every read
        monkeypatch.setattr(emb, "GATHER_COPY", copy_at)
        xr = x.clone().requires_grad_(True)
        got = DenseEmbedding(xr).at(idx)
        assert torch.equal(got, x.flatten(2).transpose(1, 2).reshape(-1, 5)[idx])
        (got * w).sum().backward()
        out.append(xr.grad)
    assert torch.allclose(out[0], out[1], rtol=1e-12, atol=1e-12) and out[0].abs().sum() > 0


# -- gradient flow ---------------------------------------------------------------------------


def only(term: str) -> dict:
    switches = {
        "tailness": False,
        "consistency": False,
        "diversity": False,
        "unsup": False,
        "inst_global": False,
        "inst_local": False,
    }
    return {**switches, term: True}


@pytest.mark.parametrize(
    "term, owners",
    [
        ("unsup", ["student.segnet"]),
        ("consistency", ["student.segnet"]),
        ("tailness", ["student.rep_head", "student.segnet.backbone"]),
        ("diversity", ["student.rep_head", "student.segnet.backbone"]),
    ],
)
def test_each_stage2_term_trains_the_student_only(term, owners):
    m = build(stage=2, delta=1.0, **only(term))
    if term == "diversity":  # L_nn needs a non-empty bank: the first step fills it
        m(batch(1), 0)
        assert len(m.nn_bank) > 0
    out = m(batch(), 1)
    m.zero_grad(set_to_none=True)
    (out.loss - out.terms["sup"]).backward()  # = λ·term
    for name in owners:
        assert nonzero(m.get_submodule(name)), f"{term}: no gradient in {name}"
    assert all(g is None for g in grads(m.teacher)) and not any(p.requires_grad for p in m.teacher.parameters())
    assert not any(b.requires_grad for b in m.buffers())
    assert all(g is None for g in grads(m.student.global_proj) + grads(m.predictor_global))


@pytest.mark.parametrize(
    "term, owners",
    [
        ("inst_global", ["predictor_global", "student.global_proj", "student.segnet.backbone"]),
        ("inst_local", ["predictor_local", "student.local_proj", "student.segnet.backbone"]),
    ],
)
def test_each_stage1_term_trains_the_student_only(term, owners):
    m = build(stage=1, **only(term))
    out = m(batch(), 0)
    assert float(out.terms[term]) > 0  # mined views of the other images of the step
    m.zero_grad(set_to_none=True)
    (out.loss - out.terms["sup"]).backward()
    for name in owners:
        assert nonzero(m.get_submodule(name)), f"{term}: no gradient in {name}"
    assert all(g is None for g in grads(m.teacher) + grads(m.student.rep_head))
    assert len(m.global_bank if term == "inst_global" else m.local_bank) > 0


def test_knn_term_decreases_under_its_own_gradient():
    m = build(stage=2, **only("diversity"))
    m(batch(1), 0)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.02)
    out = m(batch(), 1)
    opt.zero_grad()
    (out.loss - out.terms["sup"]).backward()
    opt.step()
    m.nn_bank.load_state_dict({k.removeprefix("nn_bank."): v for k, v in state.items() if k.startswith("nn_bank.")})
    assert float(m(batch(), 1).terms["nn"]) < float(out.terms["nn"])


def test_ablation_switches_remove_their_terms():
    full = build(stage=2)(batch(), 0).terms
    assert set(full) == STAGE2_TERMS
    for switch, gone in [
        ("tailness", {"contrast", "contrast_spread", "reflect_outside", "hard_fraction"}),
        ("consistency", {"eqv"}),
        ("diversity", {"nn"}),
        ("unsup", {"unsup"}),
    ]:
        assert set(build(stage=2, **{switch: False})(batch(), 0).terms) == STAGE2_TERMS - gone
    assert set(build(stage=1)(batch(), 0).terms) == {"stage", "sup", "inst_global", "inst_local"}
    assert set(build(stage=1, inst_local=False, inst_global=False)(batch(), 0).terms) == {"stage", "sup"}


def test_hard_queries_delta_and_sampler_knobs():
    fracs = [float(build(stage=2, delta=d)(batch(), 0).terms["hard_fraction"]) for d in (0.0, 0.5, 1.0)]
    assert fracs[0] == 0.0 and fracs[2] == 1.0 and fracs[0] <= fracs[1] <= fracs[2]
    outs = {
        s: build(stage=2, sampler=s, grid=9, delta=1.0, queries=256)(batch(size=12), 0).terms
        for s in ("ns", "sg", "sag")
    }  # 2-3 queries per (image, cell) group: SAG pairs exist
    assert len({float(t["contrast"]) for t in outs.values()}) == 3
    assert float(outs["sag"]["reflect_outside"]) > 0 and float(outs["sg"]["reflect_outside"]) == 0
    assert all(float(t["contrast_spread"]) > 0 for t in outs.values())


@pytest.mark.parametrize("name", ["mona", "arco"])
def test_the_spread_is_drawn_once_per_log_window_and_changes_no_training_draw(name):
    """With ``log_every`` 3 over 8 iterations the second draw is made at iterations 3, 6
    and 8 (1-based) only, and every step's loss, terms and gradients equal those of a
    method that draws it at every step (log_every 1)."""

    def run(log_every: int) -> list:
        spec = get_method(name)
        torch.manual_seed(0)
        ctx = BuildContext(TINY, 3, 8, seed=0, log_every=log_every)
        m = spec.build(spec.validate({**SMALL, "stage": 2}), ctx).train()
        opt, out = torch.optim.SGD(m.trainable_parameters(), lr=0.02), []
        for it in range(8):
            step = m(batch(it), it)
            opt.zero_grad()
            step.loss.backward()
            out.append((step.terms, [p.grad.clone() for p in m.trainable_parameters() if p.grad is not None]))
            opt.step()
            m.after_step(it)
        return out

    every, windowed = run(1), run(3)
    assert [it + 1 for it, (t, _) in enumerate(windowed) if "contrast_spread" in t] == [3, 6, 8]
    assert all("contrast_spread" in t for t, _ in every)
    for (t1, g1), (t3, g3) in zip(every, windowed, strict=True):
        assert {k: float(v) for k, v in t3.items()} == {k: float(v) for k, v in t1.items() if k in t3}
        assert len(g1) == len(g3) and all(torch.equal(a, b) for a, b in zip(g1, g3, strict=True))


@pytest.mark.parametrize("name", ["mona", "arco"])
def test_2d_model_with_batchnorm_runs_both_stages(name):
    cfg = ModelConfig(channels=(4, 8, 16), feature_dim=4, num_res_units=1, spatial_dims=2, norm="batch")
    m = build(name, model=cfg, iterations=4, stage1_fraction=0.5, local_crop_size=8, sampler="sag", grid=9)
    g = torch.Generator().manual_seed(0)
    b = Batch(
        torch.randn(2, 1, 16, 16, 1, generator=g),
        torch.randint(0, 3, (2, 1, 16, 16, 1), generator=g),
        torch.randn(2, 1, 16, 16, 1, generator=g),
    )
    for it in range(4):
        out = m(b, it)
        out.loss.backward()
        m.after_step(it)
        assert math.isfinite(float(out.loss.detach())) and float(out.terms["stage"]) == m.stage_of(it)
    assert out.terms["contrast"] > 0 and m.predictor()(b.image).shape == (2, 3, 16, 16, 1)


# -- two-stage contract ------------------------------------------------------------------------------


def test_stage1_checkpoint_errors(tmp_path):
    with pytest.raises(VrsearchError, match="nope.pt.*not found"):
        build(stage1_checkpoint=str(tmp_path / "nope.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(VrsearchError, match="junk.pt.*cannot be read"):
        build(stage1_checkpoint=str(tmp_path / "junk.pt"))
    src = build(stage=1)
    torch.save({"format": 1, "method": src.state_dict()}, tmp_path / "fresh.pt")
    with pytest.raises(VrsearchError, match="fresh.pt.*no stage-1 iteration"):
        build(stage1_checkpoint=str(tmp_path / "fresh.pt"))
    src.stage1_done += 1
    torch.save(src.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(VrsearchError, match="bare.pt.*incompatible.*another shape"):
        build(stage1_checkpoint=str(tmp_path / "bare.pt"), embedding_dim=16)
    loaded = build(stage1_checkpoint=str(tmp_path / "bare.pt"))
    assert loaded.stage1_iters == 0
    for k, v in loaded.state_dict().items():
        if k.startswith(MONA.STAGE1_PREFIXES):
            assert torch.equal(v, src.state_dict()[k]), k


def fit(path, ckpt, **kw):
    return run_trial(load_study(path), "t", ckpt, **kw)


def test_stage2_trial_starts_from_exactly_the_stage1_checkpoint(tiny_study, tmp_path):
    train = {"iterations": 3, "eval": {"every": 3, "sw_batch_size": 4, "at_start": False}}
    stage1 = fit(tiny_study(method={"name": "mona", "params": {**SMALL, "stage": 1}}, train=train), tmp_path / "s1")
    assert stage1.trial["status"] == "completed"
    assert set(pd.DataFrame(stage1.history).dropna(subset=["loss"]).term_stage) == {1.0}
    ckpt = tmp_path / "s1" / "last.pt"
    saved = torch.load(ckpt, weights_only=True)["method"]
    assert int(saved["stage1_done"]) == 3
    params = {**SMALL, "stage1_checkpoint": str(ckpt)}  # stage: both, but the checkpoint means stage 2 only
    study = load_study(tiny_study(method={"name": "mona", "params": params}, train=train))
    trainer = Trainer(study, tmp_path / "s2")
    keys = [k for k in trainer.method.state_dict() if k.startswith(MONA.STAGE1_PREFIXES)]
    assert any(k.startswith("teacher.") for k in keys) and any(k.startswith("student.segnet.") for k in keys)
    for k in keys:
        assert torch.equal(trainer.method.state_dict()[k], saved[k]), k
    out = run_trial(study, "t", tmp_path / "s2", trainer=trainer)
    hist = pd.DataFrame(out.history).dropna(subset=["loss"])
    assert out.trial["status"] == "completed" and set(hist.term_stage) == {2.0} and len(hist) == 3
    assert "term_inst_global" not in hist and int(trainer.method.stage1_done) == 0


# -- engine ---------------------------------------------------------------------------------------------


def test_trains_through_engine_deterministically_and_resumes_bit_exactly(tiny_study, tmp_path):
    params = {**SMALL, "stage1_fraction": 0.3, "sampler": "sag", "grid": 9}  # 2 stage-1 + 4 stage-2 iterations
    path = tiny_study(method={"name": "mona", "params": params}, train={"checkpoint_every": 3})
    a, b = fit(path, tmp_path / "a"), fit(path, tmp_path / "b")
    assert a.trial["status"] == "completed", a.trial["error"]
    hist = pd.DataFrame(a.history).dropna(subset=["loss"])
    assert hist.loss.map(math.isfinite).all() and list(hist.term_stage) == [1, 1, 2, 2, 2, 2]
    assert {f"term_{t}" for t in STAGE2_TERMS | {"inst_global", "inst_local"}} <= set(hist)
    cols = lambda out: pd.DataFrame(out.history).drop(columns="time_s")  # noqa: E731
    assert cols(a).equals(cols(b))
    first = Trainer(load_study(path), tmp_path / "split").fit(stop_at=3)  # pause inside stage 2
    assert first.status == "paused" and first.iterations == 3
    resumed = fit(path, tmp_path / "split")
    assert cols(a).equals(cols(resumed))
    assert pd.DataFrame(a.cases).equals(pd.DataFrame(resumed.cases))


def test_unknown_knob_is_a_study_error(tiny_study):
    with pytest.raises(StudyError, match="tailnes"):
        load_study(tiny_study(method={"name": "mona", "params": {"tailnes": False}}))
