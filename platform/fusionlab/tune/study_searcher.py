"""A Ray Tune searcher whose whole state is an Optuna study in RDB storage (SQLite in the sweep directory).

Each Optuna trial carries the Tune trial id as a user attribute, so after a crash the study itself says which
trials were in flight. A Tune trial restored from the experiment state completes *its* Optuna trial; an Optuna
trial suggested just before the crash but never saved in Tune's experiment state (an orphan) is adopted by the next
new Tune trial, with its parameters. The study ends with exactly ``num_samples`` trials. (Ray's OptunaSearch keeps
that mapping only in its pickled checkpoint, which lags the database: it leaves orphans RUNNING.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search import Searcher

TUNE_TRIAL_ATTR = "tune_trial_id"


class StudySearcher(Searcher):
    def __init__(self, study_name: str, storage_url: str, space: dict[str, optuna.distributions.BaseDistribution],
                 metric: str, mode: str, seed: int = 0, sweep_dir: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.study_name, self.storage_url, self.space, self.seed = study_name, storage_url, space, seed
        self.sweep_dir = sweep_dir
        self._study: optuna.Study | None = None
        self._suggested: set[str] = set()
        self._orphans: list[int] | None = None

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            storage = optuna.storages.RDBStorage(self.storage_url)
            existing = len(optuna.load_study(study_name=self.study_name, storage=storage).trials) \
                if self.study_name in optuna.get_all_study_names(storage) else 0
            # Seeded, and offset by the trials already there so a resumed sweep does not replay the same draws.
            sampler = optuna.samplers.TPESampler(seed=self.seed + existing)
            self._study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=sampler,
                                              direction="maximize" if self.mode == "max" else "minimize",
                                              load_if_exists=True)
        return self._study

    def _find(self, trial_id: str) -> optuna.trial.FrozenTrial | None:
        for trial in self.study.get_trials(deepcopy=False):
            if trial.user_attrs.get(TUNE_TRIAL_ATTR) == trial_id:
                return trial
        return None

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        known = self._find(trial_id)
        if known is not None:
            return dict(known.params)
        self._suggested.add(trial_id)
        orphans = self.orphans()
        if orphans:
            number = orphans.pop(0)
            trial = optuna.trial.Trial(self.study, self.study.trials[number]._trial_id)
        else:
            trial = self.study.ask(self.space)
        trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return dict(trial.params)

    def orphans(self) -> list[int]:
        """RUNNING Optuna trials that no Tune trial will finish: neither suggested here nor in Tune's saved state."""
        if self._orphans is None:
            saved = tune_trials_in_state(self.sweep_dir) if self.sweep_dir else set()
            self._orphans = [t.number for t in self.study.get_trials(deepcopy=False)
                             if t.state == optuna.trial.TrialState.RUNNING
                             and t.user_attrs.get(TUNE_TRIAL_ATTR) not in saved | self._suggested]
        return self._orphans

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        trial = self._find(trial_id)
        if trial is None or trial.state.is_finished():
            return
        value = (result or {}).get(self.metric)
        if error or value is None:
            self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial.number, float(value))

    # The study is the state: a checkpoint only needs to know where it is.
    def __getstate__(self) -> dict[str, Any]:
        transient = {"_study": None, "_orphans": None, "_suggested": set()}
        return {key: value for key, value in self.__dict__.items() if key not in transient} | transient

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def tune_trials_in_state(sweep_dir: str) -> set[str]:
    """Trial ids in Tune's latest saved experiment state (the trials a restore brings back)."""
    states = sorted(Path(sweep_dir).glob("experiment_state-*.json"))
    if not states:
        return set()
    return set(re.findall(r'trial_id\W+([0-9a-f]{5,})', states[-1].read_text()))
