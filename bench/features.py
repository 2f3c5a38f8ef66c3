"""Frozen-feature cache: a frozen pretrained trial with and without it, same config and data.

Baseline: the same `search.engines.trial.run` with `feature_cache: false`, which runs the frozen
MobileNetV2 forward on every augmented image of every epoch. Cached: the backbone's outputs
are computed once (4 views) and the trial trains its heads on them; measured cold (the cache
is built inside the trial) and warm (a later trial of the study). Both train the same heads
for the same epochs with the same seeds, so their validation accuracies should agree up to
the augmentation (fresh draws each epoch vs a draw among 4 fixed views).

    .venv/bin/python bench/features.py [--epochs 6] [--seeds 0,1] [--no-record]
Real images: the first 4,480 rows of ../shared/hvc (bench/quality.py's copy); weights from
../shared/weights.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time

import benchlib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    weights = benchlib.ROOT.parent / "shared" / "weights"
    if not weights.is_dir():
        sys.exit(f"skipped: {weights} is not present")
    import os

    os.environ.setdefault("SEARCH_WEIGHTS_DIR", str(weights))
    from quality import split_data

    from search.engines import trial as trial_lib
    from search.space.config import TrialConfig

    csv, _ = split_data()
    runs = benchlib.ROOT / "runs" / "bench" / "features"
    shutil.rmtree(runs, ignore_errors=True)
    session = benchlib.session(csv, runs, study="features")
    session.use_device()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = dict(backbone="pretrained", family="mobilenet_v2", alpha=0.5, weights="imagenet",
                image_size=(224, 128), crop="auto", neck_units=256, neck_dropout=0.3,
                head_units=0, cutout=0.3, shift=0.08, batch_size=128, epochs=args.epochs,
                base_lr=3e-4, max_lr=1.5e-3, step_size_epochs=2.0)
    from search.train.training import all_images

    all_images(session, TrialConfig(**base))  # decode once, outside every timing
    rows = []

    def timed(name, seed, **change):
        config = TrialConfig(**{**base, **change, "seed": seed})
        start = time.perf_counter()
        result = trial_lib.run(config, session)
        wall = time.perf_counter() - start
        rows.append((name, seed, wall, result.summary["mean_accuracy"], result.best_epoch))
        print(f"{name} seed {seed}: {wall:.1f} s, mean accuracy "
              f"{result.summary['mean_accuracy']:.4f} (best epoch {result.best_epoch})",
              flush=True)

    for seed in seeds:
        timed("uncached", seed, feature_cache=False)
    timed("cached, cold (builds the cache)", seeds[0])
    for seed in seeds:
        timed("cached, warm", seed)

    def walls(name):
        return [r[2] for r in rows if r[0] == name]

    def accuracies(name):
        return [r[3] for r in rows if r[0].startswith(name)]

    uncached, warm = statistics.median(walls("uncached")), statistics.median(walls("cached, warm"))
    cold = walls("cached, cold (builds the cache)")[0]
    gap = statistics.mean(accuracies("cached")) - statistics.mean(accuracies("uncached"))
    lines = [
        f"Frozen MobileNetV2 alpha 0.5, 224x128 with crop auto, flip + shift 0.08 + cutout "
        f"0.3, {args.epochs} epochs, batch 128, {len(session.train_rows)} train / "
        f"{len(session.val_rows)} validation images (hvc rows 1-4,480); seeds {args.seeds}.",
        "",
        "| variant | seed | wall s per trial | val mean accuracy | best epoch |",
        "|---|---|---|---|---|",
        *[f"| {n} | {s} | {w:.1f} | {a:.4f} | {e} |" for n, s, w, a, e in rows],
        "",
        f"Per trial: uncached {uncached:.1f} s, cached {warm:.1f} s warm ({uncached / warm:.1f}x "
        f"faster), {cold:.1f} s cold (the one-off build of the cache included, paid once per "
        f"study and backbone).",
        f"Validation accuracy, cached minus uncached (mean over seeds): {gap:+.4f}.",
    ]
    benchlib.record("features: frozen trial with vs without the feature cache", lines,
                    enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
