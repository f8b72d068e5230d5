"""StudySearcher against a real SQLite Optuna study and a fake Tune experiment state (no Ray, no sweep).

What a killed-then-resumed sweep relies on: a Tune trial restored from the experiment state gets its own Optuna trial
back, an Optuna trial suggested before the crash but never saved by Tune (an orphan) is adopted by the next new Tune
trial, and the study ends with exactly one Optuna trial per Tune trial. The end-to-end kill and `--resume` is
tests/tune/test_sweep.py.
"""

from __future__ import annotations

import json

import optuna
import pytest

from fusionlab.tune.study_searcher import TUNE_TRIAL_ATTR, StudySearcher, tune_trials_in_state

SPACE = {"model.params.lambda": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
         "model.params.portion": optuna.distributions.FloatDistribution(0.1, 0.5)}


def searcher(tmp_path, seed: int = 3, name: str = "study") -> StudySearcher:
    return StudySearcher(name, f"sqlite:///{tmp_path / 'optuna.db'}", SPACE, metric="val/miou", mode="max",
                         seed=seed, sweep_dir=str(tmp_path))


def write_experiment_state(sweep_dir, stamp: str, trial_ids: list[str]) -> None:
    """As Tune writes it: each trial a JSON document inside a JSON string (so its quotes are escaped)."""
    trials = [[json.dumps({"stub": False, "trainable_name": "trial_fn", "trial_id": trial_id}, indent=2), "{}"]
              for trial_id in trial_ids]
    (sweep_dir / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": trials}))


def by_tune_id(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    return {t.user_attrs[TUNE_TRIAL_ATTR]: t for t in study.get_trials()}


def load(tmp_path, name: str = "study") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def test_suggestions_are_recorded_in_the_study_and_completed_by_their_tune_trial(tmp_path):
    search = searcher(tmp_path)
    first, second, third = (search.suggest(trial_id) for trial_id in ("aaaa0001", "aaaa0002", "aaaa0003"))
    for params in (first, second, third):
        assert set(params) == set(SPACE)
        assert 1e-4 <= params["model.params.lambda"] <= 1e-1 and 0.1 <= params["model.params.portion"] <= 0.5
    assert search.suggest("aaaa0001") == first, "asking again for a known Tune trial returns its parameters"

    search.on_trial_complete("aaaa0001", {"val/miou": 0.42})
    search.on_trial_complete("aaaa0002", error=True)
    search.on_trial_complete("aaaa0003", {"train/loss": 1.0})  # finished without the metric: a failure
    search.on_trial_complete("aaaa0001", {"val/miou": 0.99})  # already told: ignored
    search.on_trial_complete("ffff9999", {"val/miou": 0.5})  # unknown to the study: ignored
    trials = by_tune_id(load(tmp_path))
    assert len(trials) == 3
    assert trials["aaaa0001"].state == optuna.trial.TrialState.COMPLETE and trials["aaaa0001"].value == 0.42
    assert trials["aaaa0001"].params == first
    assert trials["aaaa0002"].state == trials["aaaa0003"].state == optuna.trial.TrialState.FAIL


def test_after_a_crash_restored_trials_keep_theirs_and_an_orphan_is_adopted_by_the_next_new_trial(tmp_path):
    before = searcher(tmp_path)
    done, saved, orphan = (before.suggest(trial_id) for trial_id in ("aaaa0001", "aaaa0002", "aaaa0003"))
    before.on_trial_complete("aaaa0001", {"val/miou": 0.3})
    # The crash: Tune's last saved state knows aaaa0001 and aaaa0002; aaaa0003 was suggested after it was saved.
    write_experiment_state(tmp_path, "2026-01-01_00-00-00", ["aaaa0001"])  # an older state: not the one read
    write_experiment_state(tmp_path, "2026-01-01_00-05-00", ["aaaa0001", "aaaa0002"])
    assert tune_trials_in_state(str(tmp_path)) == {"aaaa0001", "aaaa0002"}
    checkpoint = tmp_path / "searcher.pkl"
    before.save(str(checkpoint))

    after = StudySearcher("other", "sqlite:///elsewhere.db", {}, metric="x", mode="min")
    after.restore(str(checkpoint))  # as Tune restores a searcher: its state is only where the study is
    assert after.suggest("aaaa0002") == saved, "a restored Tune trial gets its own Optuna trial back"
    assert after.orphans() == [2]  # aaaa0003's Optuna trial: RUNNING, neither restored nor suggested here
    adopted = after.suggest("bbbb0004")
    assert adopted == orphan, "the next new Tune trial takes the orphan's parameters"
    fresh = after.suggest("bbbb0005")  # nothing left to adopt: a new Optuna trial
    assert fresh != orphan and fresh != done
    for trial_id, value in (("aaaa0002", 0.4), ("bbbb0004", 0.5), ("bbbb0005", 0.6)):
        after.on_trial_complete(trial_id, {"val/miou": value})

    trials = load(tmp_path).get_trials()
    assert len(trials) == 4, "one Optuna trial per Tune trial, the orphan not left behind"
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [t.user_attrs[TUNE_TRIAL_ATTR] for t in trials] == ["aaaa0001", "aaaa0002", "bbbb0004", "bbbb0005"]
    assert [t.value for t in trials] == [0.3, 0.4, 0.5, 0.6]


def test_draws_are_seeded_and_a_resumed_study_does_not_replay_them(tmp_path):
    for name in ("one", "two", "three"):
        (tmp_path / name).mkdir()
    original = searcher(tmp_path / "one")
    first = original.suggest("aaaa0001")
    original.on_trial_complete("aaaa0001", {"val/miou": 0.5})  # finished: nothing for a new process to adopt
    assert searcher(tmp_path / "two").suggest("aaaa0001") == first, "the same seed draws the same first trial"
    assert searcher(tmp_path / "three", seed=4).suggest("aaaa0001") != first
    resumed = searcher(tmp_path / "one")  # a new process on the same study: one finished trial already there
    assert resumed.suggest("aaaa0002") != first


def test_the_pickled_searcher_holds_no_study_connection(tmp_path):
    search = searcher(tmp_path)
    search.suggest("aaaa0001")
    state = search.__getstate__()
    assert state["_study"] is None and state["_orphans"] is None and state["_suggested"] == set()
    assert search._study is not None, "pickling leaves the live searcher as it was"


@pytest.mark.parametrize("mode, direction", [("max", optuna.study.StudyDirection.MAXIMIZE),
                                              ("min", optuna.study.StudyDirection.MINIMIZE)])
def test_the_study_direction_follows_the_mode(tmp_path, mode, direction):
    search = StudySearcher("study", f"sqlite:///{tmp_path / 'optuna.db'}", SPACE, metric="m", mode=mode)
    search.suggest("aaaa0001")
    assert load(tmp_path).direction == direction
