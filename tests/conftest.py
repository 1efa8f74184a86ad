"""Shared fixtures: a tiny phantom dataset and a tiny study built on it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from vrsearch.data.phantom import PhantomConfig, write_phantom

TINY_PHANTOM = PhantomConfig(cases=8, unlabeled=3, test=2, seed=3, size=(40, 32, 24), spacing=(8.5, 8.5, 10.5))


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory) -> Path:
    """8 labeled + 3 unlabeled + 2 test cases, 40×32×24 voxels (coarse)."""
    return write_phantom(tmp_path_factory.mktemp("phantom") / "ds", TINY_PHANTOM)


def tiny_study_dict(root: Path, out: Path, **sections) -> dict:
    study = {
        "name": "tiny",
        "method": {"name": "supervised"},
        "dataset": {
            "layout": "msd",
            "root": str(root),
            "labeled_ratio": 0.5,
            "val_fraction": 0.25,
            "test_fraction": 0.25,
            "patch_size": [16, 16, 16],
        },
        "model": {"channels": [4, 8], "feature_dim": 4, "num_res_units": 0},
        "train": {
            "iterations": 6,
            "batch": {"labeled": 2, "unlabeled": 1},
            "optimizer": {"name": "adam", "lr": 0.01},
            "eval": {"every": 3, "sw_batch_size": 4},
            "log_every": 1,
            "threads": 1,
        },
        "output": {"dir": str(out)},
    }
    for key, value in sections.items():
        study[key] = {**study.get(key, {}), **value} if isinstance(value, dict) else value
    return copy.deepcopy(study)


@pytest.fixture
def tiny_study(tiny_phantom, tmp_path):
    """Factory: ``tiny_study(**section_overrides) -> Path`` of a study file."""

    def make(**sections) -> Path:
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(tiny_study_dict(tiny_phantom, tmp_path / "run", **sections)))
        return path

    return make


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: intra-op threading only costs time (badly so on a busy machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


#: session fixtures that run a tiny study through real Ray (tests/e2e/conftest.py), by the group of
#: test files that use them: ``make test`` runs each group in one xdist process, so each study runs once
SHARED_STUDIES = {
    "shared-studies": {"ablation_run", "search_run"},
    "ddp-twins": {"ddp_twins_run"},
}
SHARED_STUDY_FILES = {
    "shared-studies": frozenset(
        {
            "tests/e2e/test_ablation.py",
            "tests/e2e/test_mirror_restore.py",
            "tests/e2e/test_notebooks.py",
            "tests/e2e/test_replay.py",
            "tests/e2e/test_report_browser.py",
        }
    ),
    "ddp-twins": frozenset({"tests/e2e/test_determinism.py", "tests/e2e/test_autoscale.py"}),
}


def xdist_scope(nodeid: str) -> str:
    """The unit ``make test``'s processes take whole: a test file (its module fixtures, e.g. the
    autoscaling cluster, start once), or the files of one group of :data:`SHARED_STUDY_FILES` together."""
    path = nodeid.split("::")[0]
    return next((group for group, files in SHARED_STUDY_FILES.items() if path in files), path)


#: the scopes that take longest, with their test-seconds in a timeline of ``make test`` on 2
#: cores (2026-12-06): they are handed out first, longest first, so that the short ones fill the
#: end of both processes' queues (xdist would order scopes by their number of tests, and a scope of
#: two 30-s tests came last). Only the order matters; an unlisted scope keeps its place after them.
LONGEST_SCOPES = {
    "tests/e2e/test_faults.py": 309,
    "ddp-twins": 296,
    "tests/e2e/test_run.py": 171,
    "shared-studies": 128,
    "tests/e2e/test_fault_injection.py": 60,
    "tests/e2e/test_cli.py": 59,
    "tests/storage/test_storage.py": 53,
    "tests/methods/test_contract.py": 33,
    "tests/e2e/test_dvcl_flare.py": 29,
    "tests/e2e/test_realfiles.py": 22,
}


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scope scheduler with :func:`xdist_scope` as the scope (its ``xdist_group``
    marks are ignored under pytest 9.2: pytest-xdist#1386), taking the scopes in collection
    order (:func:`pytest_collection_modifyitems` puts :data:`LONGEST_SCOPES` first)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    config.option.loadscopereorder = False
    return ByFile(config, log)


def pytest_collection_modifyitems(items):
    """Longest scopes first (:data:`LONGEST_SCOPES`; a stable sort, so each file's tests keep
    their order). A test file that uses a shared study must be listed in its group of
    :data:`SHARED_STUDY_FILES`."""
    items.sort(key=lambda item: -LONGEST_SCOPES.get(xdist_scope(item.nodeid), 0))
    for group, fixtures in SHARED_STUDIES.items():
        using = {item.nodeid.split("::")[0] for item in items if fixtures & set(item.fixturenames)}
        if using - SHARED_STUDY_FILES[group]:
            missing = sorted(using - SHARED_STUDY_FILES[group])
            raise pytest.UsageError(f"add {missing} to SHARED_STUDY_FILES[{group!r}] in tests/conftest.py")
