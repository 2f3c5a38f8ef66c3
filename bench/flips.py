"""Test-time flips on and off, per head, for a registered `selection` model (issue 30).

A selection averages each image's probabilities with its mirror's on the heads where that
helped on the validation rows (search.final.selected). Its own report of the gain is on those
validation rows, which chose the flips. This scores the same saved model on other labelled
rows twice: as saved, and with each flip layer answering the unmirrored image only. So the
flips' gain per head is read on rows that had no say in choosing them.

    .venv/bin/python bench/flips.py --runs-dir runs/bench/quality/search-seed1 \\
        --model models:/quality-1@selection --data runs/bench/quality/hvc/test.csv

Prints a per-head table and appends it to bench/RESULTS.md (--no-record: print only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import benchlib

FLIP_MARK = "_flip_"  # the Average layers of search.final.selected: "<head>_flip_<trial>"


def scored(net, table) -> dict[str, float]:
    """Accuracy per head of net on the table's rows."""
    from search.data.table import decode
    from search.track import registry

    probs = registry.predict_probs(net, [decode(p) for p in table.paths])
    labels = table.labels()
    return {h: float(np.mean(np.argmax(p, axis=1) == labels[h])) for h, p in probs.items()}


def without_flips(net) -> list[str]:
    """Make every flip layer of net answer its first input (the unmirrored image's
    probabilities); the names of the layers changed."""
    import keras

    changed = []
    for layer in net._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Average) and FLIP_MARK in layer.name:
            layer.call = lambda inputs, *args, **kwargs: inputs[0]
            changed.append(layer.name)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", type=Path, required=True,
                        help="the search's runs folder (its mlflow.db holds the model)")
    parser.add_argument("--model", required=True, help="a selection, e.g. models:/NAME@selection")
    parser.add_argument("--data", required=True, help="labelled rows the search never saw")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    from search.data.table import read_table
    from search.track import registry
    from search.track.tracking import using

    with using(f"sqlite:///{args.runs_dir.resolve() / 'mlflow.db'}"):
        net, vocab = registry.load(args.model)
        bare, _ = registry.load(args.model)  # a second copy, its flips turned off
    changed = without_flips(bare)
    if not changed:
        raise SystemExit(f"{args.model} has no test-time flips ({FLIP_MARK} layers): nothing "
                         f"to compare")
    table = read_table(args.data, tuple(vocab), vocab=vocab)
    on, off = scored(net, table), scored(bare, table)
    heads = list(vocab)  # the layers name heads head0, head1, ... in vocabulary order
    flipped = sorted({heads[int(name.split(FLIP_MARK)[0].removeprefix("head"))]
                      for name in changed}, key=heads.index)
    lines = [f"{len(table)} labelled rows ({args.data}); {args.model}, flipped on "
             f"{', '.join(flipped)}; against the same saved model with each flip layer "
             f"answering the unmirrored image only.", "",
             "| head | without flips | with flips (as saved) | gain |", "|---|---|---|---|"]
    lines += [f"| {h} | {off[h]:.3f} | {on[h]:.3f} | {on[h] - off[h]:+.3f} |" for h in vocab]
    mean_on, mean_off = np.mean(list(on.values())), np.mean(list(off.values()))
    lines += [f"| **mean** | **{mean_off:.4f}** | **{mean_on:.4f}** | "
              f"**{mean_on - mean_off:+.4f}** |"]
    benchlib.record("flips: a selection's test-time flips on and off", lines,
                    enabled=not args.no_record)


if __name__ == "__main__":
    main()
