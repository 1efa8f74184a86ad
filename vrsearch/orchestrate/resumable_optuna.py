"""Ray's ``OptunaSearch``, made safe to restore after a killed driver.

Optuna commits every trial's outcome to its storage at once; Tune's experiment
state is saved every few seconds. A driver killed between the two leaves a
trial that Optuna knows as finished and that the restored experiment runs
again (the trainable replays its stored result without training). Ray's
``OptunaSearch`` then reports the replayed intermediate results to the finished
Optuna trial, Optuna raises ``UpdateFinishedTrialError`` and the whole resumed
study stops — every later ``vrsearch resume`` too. Here such a report is
dropped: Optuna already holds that trial's final value (its completion is
already ignored by Ray in the same situation).
"""

from __future__ import annotations

from optuna.exceptions import UpdateFinishedTrialError
from ray.tune.search.optuna import OptunaSearch


class ResumableOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that ignores intermediate results for trials Optuna has closed."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            pass  # told before the kill; the replay repeats what Optuna already has
