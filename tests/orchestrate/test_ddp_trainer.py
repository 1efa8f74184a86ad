"""The DDP trial's trainer: Ray Train's ``TorchTrainer`` less the dataset-manager actor.

That none starts in a real DDP trial (and that Train's placement-group cleaner does) is
checked on the Ray session's own logs in
``tests/e2e/test_run.py::test_kill_driver_then_resume_loses_and_reruns_nothing``."""

from __future__ import annotations

import ray.train
from ray.train.v2._internal.callbacks import DatasetsCallback
from ray.train.v2.torch.torch_trainer import TorchTrainer

from vrsearch.orchestrate.ddp import LeanTorchTrainer


def _loop(config: dict) -> None:
    """Never run: the trainers below are only built."""


def _callbacks(cls: type[TorchTrainer], tmp_path, **kw) -> list[str]:
    trainer = cls(
        _loop,
        scaling_config=ray.train.ScalingConfig(num_workers=2),
        run_config=ray.train.RunConfig(name="t", storage_path=str(tmp_path)),
        **kw,
    )
    return [type(c).__name__ for c in trainer._create_default_callbacks()]


def test_without_datasets_only_the_datasets_callback_is_left_out(tmp_path):
    ray_own = _callbacks(TorchTrainer, tmp_path)
    ours = _callbacks(LeanTorchTrainer, tmp_path)
    assert DatasetsCallback.__name__ in ray_own  # what Ray Train 2.60 does, and why the subclass exists
    assert ours == [name for name in ray_own if name != DatasetsCallback.__name__]
    # the placement-group cleaner (a stopped trial's CPUs come back) and the backend set-up stay
    assert {"PlacementGroupCleanerCallback", "BackendSetupCallback"} <= set(ours)


def test_with_datasets_it_is_rays_trainer_unchanged(tmp_path):
    data = {"train": lambda: None}  # a dataset factory; never called here
    assert _callbacks(LeanTorchTrainer, tmp_path, datasets=data) == _callbacks(TorchTrainer, tmp_path, datasets=data)
    assert not ray.is_initialized()
