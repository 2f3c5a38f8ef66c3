"""Per-head ensemble selection (search.final.selection) on probabilities made here: it finds
the members that carry each head, weighs them, beats its best member where members err on
different rows, decides flips on validation rows, and never reads test rows."""

from __future__ import annotations

import numpy as np

from search.final import selection
from search.track import probabilities


def _onehot(labels, k, confidence):
    p = np.full((len(labels), k), (1 - confidence) / (k - 1))
    p[np.arange(len(labels)), labels] = confidence
    return p


def _member(y, k, right, rng, confidence=0.7):
    """Probabilities that are right on the rows where `right` is true, a random wrong class
    elsewhere."""
    wrong = (y + rng.integers(1, k, len(y))) % k
    return _onehot(np.where(right, y, wrong), k, confidence)


def _library(n=600, seed=0):
    """Three trials: #0 good at head a, #1 good at head b, #2 right where the others err on a
    third of the rows each (so a vote of the three beats each one at head c)."""
    rng = np.random.default_rng(seed)
    y = {"a": rng.integers(0, 3, n), "b": rng.integers(0, 4, n), "c": rng.integers(0, 2, n)}
    thirds = np.arange(n) % 3
    val = {
        0: {"a": _member(y["a"], 3, rng.random(n) < 0.9, rng),
            "b": _member(y["b"], 4, rng.random(n) < 0.4, rng),
            "c": _member(y["c"], 2, thirds != 0, rng)},
        1: {"a": _member(y["a"], 3, rng.random(n) < 0.4, rng),
            "b": _member(y["b"], 4, rng.random(n) < 0.9, rng),
            "c": _member(y["c"], 2, thirds != 1, rng)},
        2: {"a": _member(y["a"], 3, rng.random(n) < 0.3, rng),
            "b": _member(y["b"], 4, rng.random(n) < 0.3, rng),
            "c": _member(y["c"], 2, thirds != 2, rng)},
    }
    return val, y


def test_each_head_leans_on_the_trial_best_at_it_and_weights_sum_to_one():
    val, y = _library()
    weights = selection.select(val, y)
    assert set(weights) == {"a", "b", "c"}
    for per_head in weights.values():
        assert abs(sum(per_head.values()) - 1) < 1e-9
    assert max(weights["a"], key=weights["a"].get) == 0
    assert max(weights["b"], key=weights["b"].get) == 1
    assert selection.members(weights) == sorted({t for w in weights.values() for t in w})


def test_selection_beats_every_member_where_they_err_on_different_rows():
    val, y = _library()
    weights = selection.select(val, y)
    mixed = selection.combine(weights, val)
    best_single = max(selection.score(val[t]["c"], y["c"])[0] for t in val)
    assert selection.score(mixed["c"], y["c"])[0] > best_single + 0.2
    for head in ("a", "b"):  # not below the best member's accuracy on the rows chosen on
        best = max(selection.score(val[t][head], y[head])[0] for t in val)
        assert selection.score(mixed[head], y[head])[0] >= best


def test_same_inputs_same_selection():
    val, y = _library()
    assert selection.select(val, y) == selection.select(val, y)


def test_flips_are_chosen_per_head_where_the_mirror_helps():
    val, y = _library()
    weights = selection.select(val, y)
    rng = np.random.default_rng(1)
    # The mirror is a confident right answer at head a, noise at head b, the same at head c.
    mirrored = {t: {"a": _onehot(y["a"], 3, 0.99),
                    "b": _member(y["b"], 4, rng.random(len(y["b"])) < 0.1, rng, 0.99),
                    "c": val[t]["c"]} for t in val}
    assert selection.flips(weights, val, mirrored, y) == ("a",)


def test_the_choice_never_reads_the_test_rows():
    """Members, weights and flips come from validation rows: permuting the stored test-row
    probabilities (as read back from a trial's probabilities.npz) changes none of them."""
    val, y = _library()
    rng = np.random.default_rng(2)
    test = {t: {h: rng.random((50, p.shape[1])) for h, p in heads.items()}
            for t, heads in val.items()}
    mirrored = {t: {h: np.roll(p, 1, axis=0) for h, p in heads.items()}
                for t, heads in val.items()}

    def choose(test_probs):
        stored = {t: probabilities.Stored({"val": np.arange(600), "test": np.arange(50)},
                                          {"val": val[t], "test": test_probs[t]})
                  for t in val}
        weights = selection.select({t: s.probs["val"] for t, s in stored.items()}, y)
        return weights, selection.flips(weights, val, mirrored, y)

    permuted = {t: {h: p[rng.permutation(len(p))] for h, p in heads.items()}
                for t, heads in test.items()}
    assert choose(test) == choose(permuted)


def test_stored_probabilities_round_trip_and_check_their_rows(tmp_path):
    arrays = {"val/rows": np.array([3, 1, 2]), "val/gender": np.eye(3)[:, :2],
              "test/rows": np.array([0]), "test/gender": np.array([[0.2, 0.8]])}
    np.savez_compressed(tmp_path / probabilities.FILE, **arrays)
    with np.load(tmp_path / probabilities.FILE) as data:
        stored = probabilities.parse({k: data[k] for k in data.files})
    assert stored.probs["test"]["gender"].tolist() == [[0.2, 0.8]]
    assert stored.matches({"val": np.array([3, 1, 2]), "test": np.array([0])})
    assert not stored.matches({"val": np.array([1, 2, 3]), "test": np.array([0])})
    assert stored.matches({"val": np.array([3, 1, 2]), "test": np.array([], int)})


def test_cross_validation_scores_each_on_rows_it_was_not_chosen_on():
    """Where members err on different rows the selection's held-out score beats the best
    trial's; with one trial there is nothing to gain, and both score the same."""
    val, y = _library()
    checked = selection.cross_validated(val, y)
    assert checked["selection"] > checked["best_trial"] + 0.05
    alone = selection.cross_validated({0: val[0]}, y)
    assert alone["selection"] == alone["best_trial"]


def test_without_test_rows_the_selection_is_champion_only_where_its_check_says_so():
    from search.final.champion import Candidate, choose

    def made(name, alias, val, **details):
        return Candidate(name=name, alias=alias, members=[], details=details,
                         val={"gender": {"accuracy": val}})

    best, refit = made("best-trial", "best-trial", 0.70), made("refit", "refit", 0.70)
    wins = made("selection", "selection", 0.72,
                cross_validated={"selection": 0.71, "best_trial": 0.69})
    chosen, why = choose([best, refit, wins], 0)
    assert chosen is wins
    assert "0.7100 vs the single best trial's (chosen the same way) 0.6900" in why
    loses = made("selection", "selection", 0.75,
                 cross_validated={"selection": 0.68, "best_trial": 0.69})
    assert choose([best, refit, loses], 0)[0] is refit
