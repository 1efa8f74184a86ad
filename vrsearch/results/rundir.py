"""The run directory, named once: every file and folder a study writes, and where
its Optuna study lives.

::

    RUN_DIR/
      study.yaml              the resolved study
      trials.parquet          one row per trial       } compacted from the fragments
      history.parquet         one row per report      } (atomic writes)
      cases.parquet           one row per case × class}
      report.html             the interactive report
      optuna.db               Optuna's study (search designs; unless search.storage names another)
      trials/<trial_id>/      a trial's fragments: meta.json, history.parquet,
                              result.json + cases.parquet when it ended on its own, status.json otherwise;
                              timing.json (its timeline: where its fixed cost went); score.json (a
                              search's trial: the score its proposal counted for it)
      checkpoints/<key>/      last.pt, best.pt — keyed by the trial's configuration, so any
                              later trial of the same configuration continues from them
      tune, tune-2, ...       Ray Tune's experiments (one per run or resume)
      ray_train/              Ray Train's run folders (DDP trials)
      ray/                    a local Ray's temp dir (when the path is short enough)
      cache/                  prepared data (decoded, resampled, normalised cases; per node,
                              never mirrored; see vrsearch.data.prepared)
      driver-error.log        the traceback of an unexpected Tune/Ray error
      .vrsearch.lock          held while a run or resume works here

Nothing outside this module spells these names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

STUDY_FILE = "study.yaml"
TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
CASES_FILE = "cases.parquet"
REPORT_FILE = "report.html"
OPTUNA_FILE = "optuna.db"
DRIVER_LOG = "driver-error.log"
LOCK_FILE = ".vrsearch.lock"
FRAGMENTS_DIR = "trials"
CHECKPOINTS_DIR = "checkpoints"
RAY_TRAIN_DIR = "ray_train"
RAY_TEMP_DIR = "ray"
CACHE_DIR = "cache"
#: a trial's fragment files (inside ``trials/<trial_id>/``; also HISTORY_FILE and CASES_FILE)
META_FILE, RESULT_FILE, STATUS_FILE = "meta.json", "result.json", "status.json"
#: a trial's timeline (process start, imports, data, set-up, first report, result written)
TIMING_FILE = "timing.json"
#: a search's trial: the score the searcher counted for its seed (vrsearch.orchestrate.proposals)
SCORE_FILE = "score.json"
#: the small files a report or table needs (pulled from a storage mirror without checkpoints)
SMALL_FILES = (STUDY_FILE, TRIALS_FILE, HISTORY_FILE, CASES_FILE, OPTUNA_FILE)
#: folders mirrored to output.storage besides the small files
MIRRORED_DIRS = (FRAGMENTS_DIR, CHECKPOINTS_DIR)
_EXPERIMENT = re.compile(r"^tune(?:-(\d+))?$")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory (nothing is created or read here)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def study(self) -> Path:
        return self.path / STUDY_FILE

    @property
    def trials(self) -> Path:
        return self.path / TRIALS_FILE

    @property
    def history(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def cases(self) -> Path:
        return self.path / CASES_FILE

    @property
    def report(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def driver_log(self) -> Path:
        return self.path / DRIVER_LOG

    @property
    def lock(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def fragments(self) -> Path:
        return self.path / FRAGMENTS_DIR

    def fragment(self, trial_id: str) -> Path:
        return self.path / FRAGMENTS_DIR / trial_id

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    def checkpoint(self, key: str) -> Path:
        return self.path / CHECKPOINTS_DIR / key

    @property
    def ray_train(self) -> Path:
        return self.path / RAY_TRAIN_DIR

    @property
    def ray_temp(self) -> Path:
        return self.path / RAY_TEMP_DIR

    @property
    def cache(self) -> Path:
        return self.path / CACHE_DIR

    def optuna_url(self, storage: str | None) -> str:
        """Where the study's Optuna study lives: ``search.storage`` if set, else SQLite here."""
        return storage or f"sqlite:///{self.path / OPTUNA_FILE}"

    @property
    def optuna_file(self) -> Path:
        return self.path / OPTUNA_FILE

    def experiment(self, name: str) -> Path:
        return self.path / name

    def experiments(self) -> list[str]:
        """Tune experiment folders, oldest first (``tune``, ``tune-2``, ...)."""
        found = [
            (int(m.group(1) or 1), p.name)
            for p in self.path.glob("tune*")
            if p.is_dir() and (m := _EXPERIMENT.match(p.name))
        ]
        return [name for _, name in sorted(found)]

    def next_experiment(self) -> str:
        done = self.experiments()
        last = _EXPERIMENT.match(done[-1]) if done else None
        return "tune" if last is None else f"tune-{int(last.group(1) or 1) + 1}"

    def is_run(self) -> bool:
        """Whether this folder holds a vrsearch run (its study or its trials table)."""
        return self.study.is_file() or self.trials.is_file()
