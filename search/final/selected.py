"""The `selection` candidate of `search best --ensemble K`: the members and weights that
`search.final.selection` chooses from every kept trial's stored probabilities, their
test-time flips, scored through the members' saved models and saved as one Keras model
(members weighted by Rescaling, mirrored by `search.model.preprocess.Mirror`) logged like
the other candidates (search.final.candidates builds them all)."""

from __future__ import annotations

import hashlib

from search.final.champion import BEST_TRIAL, SELECTION, Candidate, member
from search.final.runs import log, where
from search.track.tags import KIND_TAG, MEMBERS_TAG


def build(session, kept: list, members, rows, out) -> Candidate | None:
    """Per-head ensemble selection over every kept trial that stored its probabilities, with
    test-time flips where they help; None (and one line why) when it cannot be built.
    `members` and `rows` are search.final.candidates' loaded models and scored rows."""
    import keras

    from search.final import selection
    from search.model.preprocess import Mirror
    from search.track import probabilities

    client = session.tracking.tracker.client
    split = {"val": session.val_rows, "test": session.test_rows}
    shapes = {h: (len(session.val_rows), len(v)) for h, v in session.table.vocab.items()}
    stored = {}
    for trial in kept:
        found = probabilities.read(client, trial.run_id) if trial.run_id else None
        if found is not None and found.matches(split) and found.fits("val", shapes):
            stored[trial.number] = found.probs["val"]
    if not stored:
        print(f"{SELECTION}: not built: none of the {len(kept)} kept trials stored its "
              f"validation probabilities ({probabilities.FILE}: trials made before they were "
              f"stored, or on another split or labels); the other candidates stand", file=out)
        return None
    weights = selection.select(stored, rows.labels["val"])
    by_number = {t.number: t for t in kept}
    champion = kept[0].number
    if selection.members(weights) == [champion]:
        print(f"{SELECTION}: every head chose trial #{champion} alone: the same model as "
              f"{BEST_TRIAL}, not built", file=out)
        return None
    checked = selection.cross_validated(stored, rows.labels["val"])
    # members that share an image size one after the other: one size of images is in memory
    chosen = sorted((by_number[n] for n in selection.members(weights)),
                    key=lambda t: (str((t.config or {}).get("image_size")),
                                   str((t.config or {}).get("crop")), t.number))
    vocab = members.shared_vocab(chosen)
    plain, mirrored = {}, {}
    for t in chosen:
        plain[t.number] = members.probs(t)
        mirrored[t.number] = members.probs(t, mirrored=True)
    chosen.sort(key=lambda t: t.number)
    flipped = selection.flips(weights, {n: p["val"] for n, p in plain.items()},
                              {n: p["val"] for n, p in mirrored.items()}, rows.labels["val"])
    candidate = Candidate(SELECTION, SELECTION, [
        {**member(t), "heads": {h: round(w[t.number], 4) for h, w in weights.items()
                                 if t.number in w}} for t in chosen])
    rows.score(candidate, {part: selection.combine(
        weights, {n: p[part] for n, p in plain.items()},
        {n: p[part] for n, p in mirrored.items()}, flipped) for part in rows.labels})
    unflipped = Candidate(SELECTION, SELECTION, [])
    rows.score(unflipped, {part: selection.combine(weights, {n: p[part] for n, p in
                                                            plain.items()})
                           for part in rows.labels})
    candidate.note = f"flips: {', '.join(flipped) or 'none'}"
    candidate.details = {"cross_validated": checked, "flips": list(flipped), "without_flips": {
        "val": unflipped.val, "test": unflipped.test, "val_mean_accuracy": unflipped.val_mean,
        "test_mean_accuracy": unflipped.test_mean}}
    key = ";".join(f"{h}=" + ",".join(f"{n}:{w:.4f}" for n, w in sorted(per.items()))
                   for h, per in weights.items()) + f";flips={','.join(flipped)}"
    heads = list(vocab)
    names = {h: f"head{i}" for i, h in enumerate(heads)}  # layer names: heads may not be

    def model():
        inputs = keras.Input((None, None, 3), name="raw_image")
        outputs = {t.number: members.net(t)(inputs) for t in chosen}
        if flipped:
            mirror = Mirror(name="mirror")(inputs)
            flips = {n for h in flipped for n in weights[h]}
            seen = {t.number: members.net(t)(mirror) for t in chosen if t.number in flips}
        result = {}
        for h in heads:
            terms = []
            for n, w in weights[h].items():
                p = outputs[n][h]
                if h in flipped:
                    p = keras.layers.Average(name=f"{names[h]}_flip_{n}")([p, seen[n][h]])
                if len(weights[h]) > 1:
                    p = keras.layers.Rescaling(w, name=f"{names[h]}_weight_{n}")(p)
                terms.append(p)
            result[h] = (keras.layers.Add(name=f"{names[h]}_selection")(terms)
                         if len(terms) > 1 else terms[0])
        return keras.Model(inputs, result, name="search_selection")

    config = {"final": SELECTION, "weights": {h: {str(n): w for n, w in per.items()}
                                              for h, per in weights.items()},
              "flips": list(flipped), "pool": sorted(stored),
              "members": [{**member(t), "config": t.config} for t in chosen]}
    log(session, candidate, {KIND_TAG: SELECTION, MEMBERS_TAG: _digest(key)}, model, vocab,
        config, {"members": ",".join(f"#{t.number}" for t in chosen),
                 "pool": len(stored), "flips": ",".join(flipped) or "none",
                 **{f"member_{t.number}.run_id": t.run_id for t in chosen}})
    size = sum(members.net(t).count_params() for t in chosen)
    test = (f", test {candidate.test_mean:.4f} (without flips {unflipped.test_mean:.4f})"
            if rows.has_test else "")
    print(f"{SELECTION}: {len(chosen)} of the {len(stored)} kept trials with stored "
          f"probabilities ({', '.join(f'#{t.number}' for t in chosen)}); test-time flips on "
          f"{', '.join(flipped) or 'no head'}; validation {candidate.val_mean:.4f} (without "
          f"flips {unflipped.val_mean:.4f}){test}; 2-fold cross-validated on the validation "
          f"rows: {checked['selection']:.4f} vs the single best trial's "
          f"{checked['best_trial']:.4f}; {size / 1e6:.1f} M parameters{where(candidate)}",
          file=out)
    return candidate


def _digest(key: str) -> str:
    """A short stable name for a long members key (MLflow tags are searched by equality)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]
