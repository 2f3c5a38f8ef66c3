"""Averaged weights (use_ema) measured: the same configs trained with EMA off and on, in one run.

Rows 1-4,480 of ../shared/hvc/hvc_annotations.csv are split into train and validation rows
exactly as `search run` splits a 4,480-row CSV (`search.data.table.split`, val_fraction 0.2,
seed 0; bench/quality.py searches on such a copy), rows 4,481-5,600 are the held-out test
rows, scored at each trial's best epoch. Each config is trained by `search.engines.trial.run`
(what `search train` and every search trial run) once with use_ema false and once per
--momentum with use_ema true; everything else is equal (seed, split, feature cache), so the
difference is the averaging alone. The configs are mid-range values of spaces/hvc.yaml:
MobileNetV2 0.35 and 0.5 training their heads on frozen cached features, and MobileNetV2 0.35
fine-tuning its top quarter after a 6-epoch probe. Without a majority guard or pruner: every
trial trains to the end (or to its patience), and the first epochs' validation accuracy is
printed to show what a guard at epoch 2 would see.

Prints per head validation and test accuracy, off beside on, and the means; appends them to
bench/RESULTS.md. The first run builds the feature caches under runs/bench/ema (2-4 minutes).

    .venv/bin/python bench/ema.py [--momentum 0.95] [--configs probe-0.35 probe-0.5 fine-0.35]
        [--data ../shared/hvc/hvc_annotations.csv] [--no-record]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import benchlib

SEARCH_ROWS, TEST_ROWS = 4480, 1120  # as bench/quality.py
WORK = benchlib.ROOT / "runs" / "bench" / "ema"
COMMON = dict(backbone="pretrained", weights="imagenet", image_size=(160, 96), crop="auto",
              views=4, neck_units=256, neck_dropout=0.25, head_units=64, head_dropout=0.2,
              class_weighting="none", majority_fallback=True, flip=True, shift=0.08,
              cutout=0.3, optimizer="adam", clr_mode="triangular", base_lr=5e-4, max_lr=2e-3,
              step_size_epochs=3.0, batch_size=128, epochs=24, patience=5, seed=0)
CONFIGS = {
    "probe-0.35": dict(family="mobilenet_v2", alpha=0.35, fine_tune_fraction=0.0),
    "probe-0.5": dict(family="mobilenet_v2", alpha=0.5, fine_tune_fraction=0.0),
    "fine-0.35": dict(family="mobilenet_v2", alpha=0.35, fine_tune_fraction=0.25,
                      probe_epochs=6, fine_tune_lr_scale=0.1, epochs=10),
}


def hvc_session(csv):
    """A session on the whole table: train/validation rows as `search run` splits rows
    1-4,480, test rows 4,481-5,600."""
    from search.data.table import split

    made = benchlib.session(csv, WORK / "runs", study="ema")
    if len(made.table) < SEARCH_ROWS + TEST_ROWS:
        raise SystemExit(f"{csv} has {len(made.table)} rows; this bench needs "
                         f"{SEARCH_ROWS + TEST_ROWS}")
    train, val = split(SEARCH_ROWS, val_fraction=made.options.val_fraction,
                       seed=made.options.seed)
    made.use_device()
    return dataclasses.replace(made, train_rows=train, val_rows=val,
                               test_rows=np.arange(SEARCH_ROWS, SEARCH_ROWS + TEST_ROWS))


def train(config, session) -> dict:
    from search.engines import trial

    with benchlib.Timer() as t:
        result = trial.run(config, session)
    early = result.history.get("val_mean_accuracy", [])[:3]
    return {"val": {h: s["accuracy"] for h, s in result.scores.items()},
            "test": {h: s["accuracy"] for h, s in result.test.items()},
            "majority": {h: s["majority"] for h, s in result.test.items()},
            "best_epoch": result.best_epoch, "seconds": t.seconds, "early": early,
            "epochs": len(result.history.get("val_mean_accuracy", []))}


def table(name: str, runs: dict[str, dict]) -> list[str]:
    """One markdown table per config: heads as rows, validation and test per variant."""
    variants = list(runs)
    heads = list(runs[variants[0]]["val"])
    head = "| head | " + " | ".join(f"val {v} | test {v}" for v in variants) + \
        " | test majority |"
    lines = [f"**{name}**", "", head, "|---" * (2 * len(variants) + 2) + "|"]
    for h in heads:
        cells = " | ".join(f"{runs[v]['val'][h]:.4f} | {runs[v]['test'][h]:.4f}"
                           for v in variants)
        lines.append(f"| {h} | {cells} | {runs[variants[0]]['majority'][h]:.4f} |")
    means = " | ".join(f"**{np.mean(list(runs[v]['val'].values())):.4f}** | "
                       f"**{np.mean(list(runs[v]['test'].values())):.4f}**" for v in variants)
    lines.append(f"| mean | {means} | "
                 f"{np.mean(list(runs[variants[0]]['majority'].values())):.4f} |")
    lines.append("")
    for v in variants:
        r = runs[v]
        lines.append(f"- {v}: best epoch {r['best_epoch']} of {r['epochs']}, {r['seconds']:.0f} s;"
                     f" validation mean accuracy after epochs 1-3: "
                     f"{', '.join(f'{x:.4f}' for x in r['early'])}")
    off = runs[variants[0]]
    for v in variants[1:]:
        dv = np.mean(list(runs[v]["val"].values())) - np.mean(list(off["val"].values()))
        dt = np.mean(list(runs[v]["test"].values())) - np.mean(list(off["test"].values()))
        lines.append(f"- {v} - off: validation {dv:+.4f}, test {dt:+.4f} (mean accuracy)")
    return lines + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--momentum", type=float, nargs="+", default=[0.95])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--data", default=str(benchlib.HVC_CSV),
                        help="the hvc annotations (default ../shared/hvc/hvc_annotations.csv)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    from search import console
    from search.space.config import TrialConfig

    console.quiet()
    session = hvc_session(args.data)
    common = {k: v for k, v in COMMON.items() if k not in ("backbone", "weights")}
    lines = [(f"Rows 1-{SEARCH_ROWS:,}: {len(session.train_rows)} train / "
              f"{len(session.val_rows)} validation; rows {SEARCH_ROWS + 1:,}-"
              f"{SEARCH_ROWS + TEST_ROWS:,}: {len(session.test_rows)} test. Accuracy per head "
              f"at each trial's best validation epoch; common settings: {common}."), ""]
    for name in args.configs:
        base = TrialConfig(**{**COMMON, **CONFIGS[name]})
        runs = {"off": train(base, session)}
        print(f"{name} off: {runs['off']}", flush=True)
        for m in args.momentum:
            runs[f"on {m:g}"] = train(base.replace(use_ema=True, ema_momentum=m), session)
            print(f"{name} on {m:g}: {runs[f'on {m:g}']}", flush=True)
        lines += table(f"{name} ({CONFIGS[name]})", runs)
    benchlib.record("ema: averaged weights off vs on, per head (issue 30)", lines,
                    enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
