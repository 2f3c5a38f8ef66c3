"""`search best --refit --ensemble K`: the final-model candidates of a real tiny study with
held-out test rows, registered and used the way a user meets them; the refit keeps the test
rows out of training; bad flags are one line, exit 2, nothing registered."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import optuna
import pytest

from search import cli

from conftest import TINY_SPACE

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

STUDY, NAME = "final", "final-model"
ALIASES = ("champion", "best-trial", "refit", "ensemble", "per-head", "selection")
PREDICT_ALL = f"""
import contextlib, io, json, sys
from search import cli
runs, name, *images = sys.argv[1:]
answers = {{}}
for alias in {list(ALIASES[1:])!r}:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["predict", "--runs-dir", runs, "--model", f"models:/{{name}}@{{alias}}",
                         *images])
    assert code == 0, alias
    answers[alias] = [json.loads(line) for line in printed.getvalue().splitlines()]
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def final(tmp_path_factory, tiny_csv):
    """A 3-trial study with --test-fraction (all 3 models kept), then `best --register NAME
    --refit --ensemble 2` (its table output)."""
    runs = tmp_path_factory.mktemp("final") / "runs"
    common = ["--study", STUDY, "--runs-dir", str(runs)]
    assert cli.main(["run", "--trials", "3", "--space", str(TINY_SPACE), "--data",
                     str(tiny_csv), "--test-fraction", "0.2", "--keep-models", "3",
                     "--no-progress", *common]) == 0
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["best", "--register", NAME, "--refit", "--ensemble", "2",
                         *common]) == 0
    return runs, common, printed.getvalue()


def _client(runs):
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")


def _study(runs):
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{runs / 'optuna.db'}")


def _test_csv(runs, tiny_csv):
    """The study's held-out test rows as a CSV beside the images, and their count."""
    from search.final import retrain
    from search.settings import Settings
    from search.study import trial_record

    study = _study(runs)
    session = retrain.study_session(Settings.resolve(str(runs)), study,
                                    trial_record.read(study.best_trial))
    frame = session.table.frame.iloc[session.test_rows]
    out = tiny_csv.with_name("final-test.csv")
    frame[["image_path", *session.table.heads]].to_csv(out, index=False)
    return out, len(session.test_rows)


def test_candidates_are_registered_and_champion_is_best_on_test(final, tiny_csv, capsys):
    runs, common, printed = final
    client = _client(runs)
    versions = client.search_model_versions(f"name = '{NAME}'")
    aliases = client.get_registered_model(NAME).aliases
    assert set(ALIASES) <= set(aliases)
    # Run again, as JSON: everything reused, no version registered twice.
    capsys.readouterr()
    assert cli.main(["best", "--register", NAME, "--refit", "--ensemble", "2",
                     "--format", "json", *common]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(client.search_model_versions(f"name = '{NAME}'")) == len(versions)
    candidates = {c["name"]: c for c in document["final"]["candidates"]}
    assert set(candidates) == {"best-trial", "refit", "ensemble-2", "per-head", "selection"}
    assert all(c["reused"] for n, c in candidates.items() if n != "best-trial")
    assert candidates["refit"]["val_mean_accuracy"] is None  # it trained on those rows
    ensemble = candidates["ensemble-2"]["members"]
    ranked = sorted(_study(runs).trials, key=lambda t: t.value, reverse=True)
    assert [m["trial"] for m in ensemble] == [t.number for t in ranked[:2]]
    # The printed choice is the best mean test accuracy, recomputed by `search evaluate`.
    chosen = document["final"]["champion"]
    assert f"champion: {chosen}: best mean accuracy on the" in printed
    assert f"{chosen:<13}" in next(line for line in printed.splitlines()
                                   if line.endswith("<- champion"))
    test_csv, n_test = _test_csv(runs, tiny_csv)
    recomputed = {}
    for name, c in candidates.items():
        out = runs / f"{name}.json"
        assert cli.main(["evaluate", "--model", f"models:/{NAME}@{c['alias']}", "--data",
                         str(test_csv), "--bootstrap", "10", "--json", str(out),
                         "--runs-dir", str(runs)]) == 0
        heads = json.loads(out.read_text())["heads"]
        assert {s["n"] for s in heads.values()} == {n_test}
        recomputed[name] = np.mean([s["accuracy"] for s in heads.values()])
        assert recomputed[name] == pytest.approx(c["test_mean_accuracy"], abs=1e-6)
    assert recomputed[chosen] == max(recomputed.values())
    assert aliases["champion"] == aliases[candidates[chosen]["alias"]]


def test_every_candidate_predicts_in_a_fresh_process_and_ensembles_combine(final, tiny_csv):
    from search.data.table import decode
    from search.track import registry
    from search.track.tracking import using

    runs, _, _ = final
    images = [str(p) for p in sorted((tiny_csv.parent / "images").iterdir())[:3]]
    # One fresh interpreter (nothing the study's process built or loaded) runs `search
    # predict` on every candidate in turn: one TensorFlow start instead of four.
    done = subprocess.run([sys.executable, "-c", PREDICT_ALL, str(runs), NAME, *images],
                          cwd=runs.parent, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(answers) == set(ALIASES[1:])
    for alias, lines in answers.items():
        assert [line["image"] for line in lines] == images and "bodypose" in lines[0], alias
    arrays = [decode(p) for p in images]
    trials = {t.number: t for t in _study(runs).trials}
    with using(f"sqlite:///{runs / 'mlflow.db'}"):
        def probs(uri):
            return registry.predict_probs(registry.load(uri)[0], arrays)

        run = _client(runs).get_model_version_by_alias(NAME, "ensemble").run_id
        params = _client(runs).get_run(run).data.params
        members = [trials[int(n.lstrip("#"))] for n in params["members"].split(",")]
        assert [params[f"member_{t.number}.run_id"] for t in members] == [
            t.user_attrs["mlflow_run_id"] for t in members]
        each = [probs(t.user_attrs["model_uri"]) for t in members]
        for head, p in probs(f"models:/{NAME}@ensemble").items():
            assert np.allclose(p, np.mean([m[head] for m in each], axis=0), atol=1e-6)
        run = _client(runs).get_model_version_by_alias(NAME, "per-head").run_id
        params = _client(runs).get_run(run).data.params
        for head, p in probs(f"models:/{NAME}@per-head").items():
            member = trials[int(params[f"head.{head}"])]
            assert np.allclose(p, probs(member.user_attrs["model_uri"])[head], atol=1e-6)
        # selection: per head the weighted mean of its members, image and mirror averaged
        # on the flipped heads (the weights and flips in the model's config.json).
        from search.track import model_card

        version = _client(runs).get_model_version_by_alias(NAME, "selection")
        recipe = model_card._config(_client(runs), version.source)
        flipped = set(recipe["flips"])
        assert _client(runs).get_run(version.run_id).data.params["flips"] == (
            ",".join(recipe["flips"]) or "none")
        mirrored = [a[:, ::-1] for a in arrays]
        for head, p in probs(f"models:/{NAME}@selection").items():
            expected = 0
            for number, weight in recipe["weights"][head].items():
                uri = trials[int(number)].user_attrs["model_uri"]
                member = probs(uri)[head]
                if head in flipped:
                    member = (member + registry.predict_probs(registry.load(uri)[0],
                                                              mirrored)[head]) / 2
                expected = expected + weight * member
            assert np.allclose(p, expected, atol=1e-5), head


def test_refit_keeps_the_test_rows_out_of_training(final, tiny_csv):
    """Regression (issue 19): the study's `:test=F` split was dropped, so a retrain on all
    data trained on the held-out test rows."""
    from search.final import retrain
    from search.settings import Settings
    from search.study import trial_record

    runs, _, _ = final
    study = _study(runs)
    assert retrain.study_split(study).test_fraction == 0.2
    champion = study.best_trial
    session = retrain.study_session(Settings.resolve(str(runs)), study,
                                    trial_record.read(champion))
    n_test = champion.user_attrs["test_scores"]["gender"]["n"]
    assert len(session.test_rows) == n_test > 0
    trained = retrain.train_and_validation(session)
    assert not set(trained) & set(session.test_rows)
    assert len(trained) + n_test == len(session.table)
    client = _client(runs)
    refit = client.get_run(client.get_model_version_by_alias(NAME, "refit").run_id).data
    assert refit.params["train_rows"] == str(len(trained))
    assert refit.params["test_rows_held_out"] == str(n_test)
    assert refit.params["refit_of"] == f"{STUDY}:{champion.number}"
    assert refit.params["rows.train"] == str(len(trained))
    # Built after the refit, the ensemble trained on nothing: its card counts the study's own
    # train rows (the refit once left its train + validation rows on the shared session).
    ensemble = client.get_run(client.get_model_version_by_alias(NAME, "ensemble").run_id).data
    assert ensemble.params["rows.train"] == str(len(session.train_rows)) != str(len(trained))


def test_refit_epochs_follow_the_best_epoch_per_stage():
    from search.final.refit import refit_epochs
    from search.study import trial_record

    config = {"backbone": "pretrained", "fine_tune_fraction": 0.3, "probe_epochs": 3,
              "epochs": 5, "patience": 2}
    stages = {"probe.epochs": "3", "fine_tune.epochs": "4"}  # fine-tuning stopped by patience

    def trial(best):
        return trial_record.read(optuna.trial.create_trial(
            value=0.5, user_attrs={"config": config, "best_epoch": best}))

    refit, text = refit_epochs(trial(5), stages)  # best: the 2nd fine-tune epoch
    assert (refit.probe_epochs, refit.epochs, refit.patience) == (3, 2, 0)
    assert text == "3 probe + 2 fine-tune epochs"
    refit, text = refit_epochs(trial(2), stages)  # best before fine-tuning: probe only
    assert (refit.fine_tune_fraction, refit.epochs) == (0.0, 2)
    config = {"backbone": "separable", "epochs": 6}
    refit, text = refit_epochs(trial(4), {"train.epochs": "6"})  # one stage
    assert (refit.epochs, text) == (4, "4 epochs")


@pytest.mark.parametrize("flags, says", [
    (["--ensemble", "0"], "--ensemble K must be 2 or more"),
    (["--refit"], "has no kept models"),
])
def test_bad_final_flags_say_one_line_and_register_nothing(final, capsys, flags, says):
    from search.track.tracking import MODEL_DELETED_TAG

    runs, common, _ = final
    client = _client(runs)
    trial_runs = [t.user_attrs["mlflow_run_id"] for t in _study(runs).trials]
    deleting = flags == ["--refit"]
    if deleting:  # as if keep_models had deleted every model
        for run_id in trial_runs:
            client.set_tag(run_id, MODEL_DELETED_TAG, "true")
    try:
        capsys.readouterr()
        assert cli.main(["best", "--register", "refused", *flags, *common]) == 2
        captured = capsys.readouterr()
    finally:
        if deleting:
            for run_id in trial_runs:
                client.delete_tag(run_id, MODEL_DELETED_TAG)
    assert says in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    assert captured.out == ""
    assert not client.search_registered_models("name = 'refused'")


def test_run_builds_the_final_model_after_its_search(final, tiny_csv, capsys):
    """`search run --register NAME --ensemble K`: the search (here: its target already met),
    then the final model, as `best --register` would build it."""
    runs, common, _ = final
    assert cli.main(["run", "--trials", "3", "--space", str(TINY_SPACE), "--data",
                     str(tiny_csv), "--test-fraction", "0.2", "--keep-models", "3",
                     "--no-progress", "--register", "after-run", "--ensemble", "2",
                     *common]) == 0
    assert {"champion", "ensemble"} <= set(_client(runs).get_registered_model(
        "after-run").aliases)
    assert cli.main(["run", "--trials", "3", "--space", str(TINY_SPACE), "--data",
                     str(tiny_csv), "--ensemble", "2", *common]) == 2
    assert "add --register NAME" in capsys.readouterr().err


def test_without_test_rows_the_refit_wins_and_per_head_is_never_chosen():
    """No held-out rows: validation figures were selected on those rows, so the order is
    fixed (refit, then the mean ensemble, then the best trial), whatever they say."""
    from search.final.champion import Candidate, choose

    def made(name, alias, val):
        return Candidate(name=name, alias=alias, members=[], val=None if val is None else {
            "gender": {"accuracy": val}})

    best, refit = made("best-trial", "best-trial", 0.70), made("refit", "refit", None)
    mean, per_head = made("ensemble-3", "ensemble", 0.71), made("per-head", "per-head", 0.75)
    assert choose([best, refit, mean, per_head], 0)[0] is refit
    assert choose([best, mean, per_head], 0)[0] is mean
    chosen, why = choose([best, per_head], 0)
    assert chosen is best and "--test-fraction" in why


def test_every_registered_version_carries_its_model_card(final, tiny_csv):
    """The card on the version page: data digest, rows, per-head validation and test accuracy
    beside the majority baseline, trial and study, the command that rebuilds it, the config;
    every figure as its run logged it."""
    runs, _, _ = final
    client = _client(runs)
    study = _study(runs)
    best = client.get_model_version_by_alias(NAME, "best-trial")
    trial = study.best_trial
    run = client.get_run(best.run_id)
    tags, text = best.tags, best.description
    dataset = run.inputs.dataset_inputs[0].dataset
    assert tags["data.digest"] == dataset.digest and dataset.digest in text
    assert tags["data.name"] == tiny_csv.name
    n_test = trial.user_attrs["test_scores"]["gender"]["n"]
    assert tags["rows.test"] == str(n_test)
    assert int(tags["rows.train"]) + int(tags["rows.validation"]) + n_test == 160
    assert (tags["search.study"], tags["search.trial"]) == (STUDY, str(trial.number))
    assert tags["search.command"] == f"search train --from-trial {STUDY}:{trial.number} " \
                                     f"--register {NAME}"
    for head, acc in trial.user_attrs["head_accuracy"].items():
        test = trial.user_attrs["test_scores"][head]
        row = next(line for line in text.splitlines() if line.startswith(f"| {head} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{acc:.4f}" and cells[3] == f"{test['accuracy']:.4f}"
        assert cells[4] == f"{test['majority']:.4f}"
        assert cells[2] == f"{run.data.metrics[f'final_{head}_majority']:.4f}"
    mean = np.mean(list(trial.user_attrs["head_accuracy"].values()))
    assert float(tags["validation_mean_accuracy"]) == pytest.approx(mean, abs=1e-4)
    assert json.loads(text.split("```json\n")[1].split("\n```")[0]) == trial.user_attrs["config"]

    refit = client.get_model_version_by_alias(NAME, "refit")
    assert refit.tags["search.kind"] == "refit" and "trained on" in refit.description
    assert refit.tags["search.command"] == f"search best --study {STUDY} --register {NAME} " \
                                           f"--refit"
    assert "test_mean_accuracy" in refit.tags and refit.tags["data.digest"] == dataset.digest
    ensemble = client.get_model_version_by_alias(NAME, "ensemble")
    assert ensemble.tags["search.command"].endswith("--ensemble 2")
    assert len(ensemble.description) <= 5000
    selected = client.get_model_version_by_alias(NAME, "selection")
    assert selected.tags["search.kind"] == "selection"
    flips = selected.tags["search.flips"]
    assert ("Test-time flips (each member averages the image and its mirror) on: "
            f"{flips.replace(',', ', ')}.") in selected.description


def test_a_study_without_stored_probabilities_builds_the_other_candidates(final, capsys):
    """Trials made before probabilities were stored: `selection` is not built, one line
    says why, every other candidate still is (run last: it deletes the stored files).
    --ensemble K is the most the mean ensemble averages: with 3 kept models, 3, said once."""
    from pathlib import Path
    from urllib.parse import urlparse

    from search.track.probabilities import FILE

    runs, common, _ = final
    client = _client(runs)
    for trial in _study(runs).trials:
        folder = Path(urlparse(client.get_run(trial.user_attrs["mlflow_run_id"])
                               .info.artifact_uri).path)
        (folder / FILE).unlink()
    capsys.readouterr()
    assert cli.main(["best", "--ensemble", "5", "--format", "json", *common]) == 0
    captured = capsys.readouterr()
    said = [line for line in captured.err.splitlines() if line.startswith("selection:")]
    assert len(said) == 1 and "stored its validation probabilities" in said[0], captured.err
    assert ("--ensemble 5: the study kept 3 models; the mean ensemble averages those 3"
            in captured.err)
    names = {c["name"] for c in json.loads(captured.out)["final"]["candidates"]}
    assert names == {"best-trial", "ensemble-3", "per-head"}
