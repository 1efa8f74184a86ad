"""The sampled representation path of MONA / ARCO equals the dense one.

:class:`~vrsearch.models.embedding.SampledEmbedding` evaluates the FPN head's
last 1×1 stages only at the sampled voxels (norm statistics from the trunk's
mean and covariance) and undoes geometric views on coordinates;
``MONA.dense_reference`` builds today's dense maps instead. Two copies of one
method, stepped on the same batches and iterations (so the same seeds), must
give the same loss, terms, gradients, banks and BatchNorm running statistics.
"""

from __future__ import annotations

import copy

import pytest
import torch

from vrsearch.components.views import draw_view
from vrsearch.methods import get_method
from vrsearch.methods.base import Batch, BuildContext
from vrsearch.methods.mona import patch_frame
from vrsearch.models.embedding import DenseEmbedding, SampledEmbedding
from vrsearch.models.heads import RepresentationHead
from vrsearch.study.schema import ModelConfig

REL = 1e-5
SMALL = {
    "embedding_dim": 24,
    "queries": 16,
    "keys": 32,
    "negative_bank_size": 32,
    "nn_bank_size": 8,
    "nn_k": 2,
    "stage": 2,
    "delta": 0.99,
}


def build(name: str, norm: str, **params):
    spec = get_method(name)
    torch.manual_seed(0)
    model = ModelConfig(channels=(4, 8, 16), feature_dim=4, num_res_units=0, norm=norm)
    return spec.build(spec.validate({**SMALL, **params}), BuildContext(model, 3, 10, seed=3)).train().double()


def make_batch(seed: int, shape=(12, 12, 8)) -> Batch:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(2, 1, *shape, generator=g, dtype=torch.float64)
    label = torch.randint(0, 3, (2, 1, *shape), generator=g)
    return Batch(image, label, torch.randn(2, 1, *shape, generator=g, dtype=torch.float64))


def close(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-12) -> bool:
    """``|a − b| ≤ 1e-5·|b|`` (Frobenius norms), or both below ``floor``."""
    return float((a - b).detach().norm()) <= max(REL * float(b.detach().norm()), floor)


def step(m, batch: Batch, it: int):
    m.zero_grad(set_to_none=True)
    out = m(batch, it)
    out.loss.backward()
    grads = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    with torch.no_grad():
        for p in m.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    m.after_step(it)
    return out, grads


@pytest.mark.parametrize(
    "name,norm", [("mona", "instance"), ("arco", "instance"), ("mona", "batch"), ("arco", "batch")]
)
def test_sampled_steps_equal_dense_steps(name, norm):
    dense = build(name, norm)
    sampled = copy.deepcopy(dense)
    dense.dense_reference = True
    for it in range(2):  # the kNN bank is empty at step 0: step 1 exercises L_nn against it
        b = make_batch(it)
        (od, gd), (os_, gs) = step(dense, b, it), step(sampled, b, it)
        assert close(os_.loss, od.loss), (it, float(os_.loss), float(od.loss))
        assert od.terms.keys() == os_.terms.keys()
        for k in od.terms:
            assert close(os_.terms[k].double(), od.terms[k].double()), (it, k)
        assert any(k.startswith("student.rep_head.fuse.6") for k in gs)
        # a bias right before a norm (W1's, the backbone's) has zero gradient: rounding noise in
        # both paths, and none at all for W1's bias in the sampled path
        noise = 1e-9 * max(float(v.norm()) for v in gd.values())
        assert all(float(gd[k].norm()) <= noise for k in gd.keys() - gs.keys()) and gs.keys() <= gd.keys()
        bad = [k for k in gs if not close(gs[k], gd[k], noise)]
        assert not bad, (it, bad)
    assert float(od.terms["nn"]) > 0 and float(od.terms["contrast"]) > 0
    for (k, bd), bs in zip(dense.state_dict().items(), sampled.state_dict().values(), strict=True):
        assert close(bs.double(), bd.double()), k  # banks, teacher, running statistics


def test_a_wrong_statistic_is_caught():
    """Teeth: dropping the covariance term (variance of W1·a assumed diagonal in a) breaks equality."""
    torch.manual_seed(1)
    head = RepresentationHead([4, 4, 8], 16, 3).double().train()
    feats = [
        torch.randn(2, 4, 6, 6, 6, dtype=torch.float64),
        torch.randn(2, 4, 3, 3, 3, dtype=torch.float64),
        torch.randn(2, 8, 2, 2, 2, dtype=torch.float64),
    ]
    labels = torch.randint(0, 3, (2, 6, 6, 6))
    index = torch.randperm(2 * 216)[:40]
    ref, fast = DenseEmbedding(head(feats)), head.sampled(feats)
    assert close(fast.at(index), ref.at(index))
    assert close(fast.class_sums(labels, 3)[0], ref.class_sums(labels, 3)[0])
    a = fast.a
    broken = copy.copy(fast)
    mu = a.mean(2)
    var = (head.fuse[3].weight.flatten(1) ** 2 @ a.var(2, unbiased=False).T).T  # ignores cross-covariances
    scale = torch.rsqrt(var + head.fuse[4].eps) * head.fuse[4].weight
    broken.weight = head.fuse[3].weight.flatten(1).T.unsqueeze(0) * scale.unsqueeze(1)
    broken.shift = -(mu @ head.fuse[3].weight.flatten(1).T) * scale + head.fuse[4].bias
    assert not close(broken.at(index), ref.at(index))


@pytest.mark.parametrize("geometric", [True, False])
def test_patch_frame_reads_the_undone_map(geometric):
    """Coordinates mapped through a view = the dense map undone, at every voxel."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, 6, 6, 3, dtype=torch.float64)
    view, geo = draw_view(x, "weak", geometric, g)
    head = RepresentationHead([5], 7, 3).double()
    labels = torch.randint(0, 4, (4, 6, 6, 3), generator=g)
    index = torch.arange(4 * 108)
    dense, fast = patch_frame(head([view]), geo, x.shape[2:]), patch_frame(head.sampled([view]), geo, x.shape[2:])
    assert isinstance(fast.emb, SampledEmbedding)
    assert close(fast.at(index), dense.at(index))
    assert close(fast.class_sums(labels, 4)[0], dense.class_sums(labels, 4)[0])


def test_statistics_and_counts_stay_exact_under_low_precision():
    """Under autocast (bf16/fp16 on a GPU) the norm statistics are sums over every voxel: in
    the activation dtype they would overflow (fp16) or keep ~3 digits (bf16), and a class
    count of 70001 voxels would read 70144 in bf16. They are computed in float32 with
    autocast off, as a norm layer computes them: a bf16 trunk gives the statistics and
    counts of its float32 copy."""
    torch.manual_seed(2)
    head = RepresentationHead([4], 8, 3).train()
    trunk = torch.relu(torch.randn(1, 4, 48, 48, 32) * 3 + 5).to(torch.bfloat16)  # 73728 voxels
    labels = torch.zeros(1, 48, 48, 32, dtype=torch.long)
    labels.view(-1)[70001:] = 1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = SampledEmbedding(head, trunk)
        _, counts = low.class_sums(labels, 2)
    ref = SampledEmbedding(head, trunk.float())
    assert low.shift.dtype == torch.float32 and counts.tolist() == [[70001.0, 73728 - 70001.0]]
    assert torch.allclose(low.shift, ref.shift, rtol=1e-5, atol=1e-6)
    assert torch.allclose(low.weight, ref.weight, rtol=1e-5, atol=1e-6)
