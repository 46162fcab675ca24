"""A chunk of trials that runs again (its Dask worker died, or Prefect retried it) owes only the rest."""

from __future__ import annotations

import optuna

from tasks.training.tuning import (
    ABANDONED_ATTR,
    CHUNK_ATTR,
    count_finished,
    create_study,
    open_storage,
    summarize_study,
)
from tests.tasks.training.test_tuning import C_SPACE, run


def test_a_chunk_started_again_runs_only_its_remaining_trials_and_abandons_the_dead_one() -> None:
    create_study("resume", None, "accuracy")
    study = optuna.load_study(study_name="resume", storage=open_storage())
    for value in (0.8, 0.7):  # the first attempt of chunk 0 finished two trials...
        trial = study.ask()
        trial.set_user_attr(CHUNK_ATTR, 0)
        study.tell(trial, value)
    dead = study.ask()  # ...and died in the third
    dead.set_user_attr(CHUNK_ATTR, 0)
    other = run("resume", 2, C_SPACE, chunk=1)
    again = run("resume", 3, C_SPACE, chunk=0)
    assert len(other["trials"]) == 2 and len(again["trials"]) == 1
    assert run("resume", 3, C_SPACE, chunk=0)["trials"] == []  # a third attempt owes nothing
    frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert frozen[dead.number].state == optuna.trial.TrialState.FAIL
    assert frozen[dead.number].user_attrs[ABANDONED_ATTR] == "its worker stopped"
    summary = summarize_study("resume", None)
    assert summary["trials"] == 5 == count_finished("resume", None) and summary["abandoned"] == 1
    assert dead.number not in {row["trial"] for row in summary["rows"]}
