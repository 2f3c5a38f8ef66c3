"""Per-trial overhead of `search`: one trial through `search.engines.trial.run` vs a plain
`model.fit`.

Both train the same model (`search.model.assembly.build` of one TrialConfig) on the same uint8
arrays through the same tf.data pipeline and CLR optimizer for the same epochs; the plain script
validates with Keras' own `validation_data`. Variants, interleaved and repeated after a
warm-up of each (order alternating per round), medians reported:
  plain         model.fit(..., validation_data=...)
  search        search.engines.trial.run without MLflow (per-epoch validation predict + per-head
                scores)
  +mlflow       with MLflow logging (params, per-epoch metrics, final scores, confusion JSON)
  +model        with MLflow logging and the exported model logged (log_models, the default)
Two ratios per variant: the median of same-round wall ratios, and "plain + extra": the plain
fit's wall plus the extra seconds the variant spends outside training epochs (TrainTimer
separates them). The second holds up on a busy machine, where training time itself swings by
10-20% from run to run; the extra seconds are also broken down into their parts.

    .venv/bin/python bench/overhead.py [--images 1000] [--size 48] [--epochs 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics

import benchlib


def plain_fit(session, config) -> float:
    """What a plain script does with the same model, data, optimizer and epochs (the very
    model and pipeline `search.train.training.prepare` builds for a trial); returns the seconds
    spent in training epochs (Keras' own validation included, as it runs inside)."""
    import numpy as np

    from search.train import training
    from search.train.callbacks import TrainTimer

    plan = training.prepare(config, session)
    stage = next(plan.stages())
    val_x = training.all_images(session, config)[session.val_rows]
    timer = TrainTimer()
    stage.model.fit(stage.train, epochs=config.epochs, verbose=0,
                    shuffle=False,  # the pipeline shuffles itself
                    validation_data=(np.asarray(val_x, np.float32), plan.val_labels),
                    callbacks=[timer])
    return timer.seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1000, help="synthetic images (default: 1000)")
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args(argv)

    from search.engines import trial as trial_lib
    from search.space.config import TrialConfig
    from search.train import training

    csv = benchlib.synthetic_csv(args.images, args.size)
    runs = benchlib.ROOT / "runs" / "bench" / "overhead"
    shutil.rmtree(runs, ignore_errors=True)
    config = TrialConfig(image_size=(args.size, args.size), epochs=args.epochs)

    def session_for(mlflow: bool, models: bool):
        made = benchlib.session(csv, runs, study="overhead", tracking=mlflow, log_models=models)
        made.use_device()
        return made

    base = session_for(False, False)
    training.all_images(base, config)  # decode once, outside every timing
    choice = base.device
    with_mlflow, with_model = session_for(True, False), session_for(True, True)
    train_rows, val_rows = base.train_rows, base.val_rows
    variants = {"plain": lambda: plain_fit(base, config),
                "search": lambda: trial_lib.run(config, base),
                "+mlflow": lambda: trial_lib.run(config, with_mlflow),
                "+model": lambda: trial_lib.run(config, with_model)}
    walls = {k: [] for k in variants}
    trains = {k: [] for k in variants}  # seconds inside training epochs
    for round_ in range(args.repeats + 1):  # round 0 warms every variant up
        order = list(variants) if round_ % 2 else list(reversed(variants))  # cancels drift
        for name in order:
            with benchlib.Timer() as t:
                result = variants[name]()
            print(f"round {round_} {name}: {t.seconds:.2f} s", flush=True)
            if round_:
                walls[name].append(t.seconds)
                trains[name].append(getattr(result, "train_seconds", result))
    for made in (with_mlflow, with_model):
        made.tracking.tracker.finish_study_run(made.tracking.parent_run_id)

    wall = {k: statistics.median(v) for k, v in walls.items()}
    train = {k: statistics.median(v) for k, v in trains.items()}
    ratios = {k: statistics.median(a / b for a, b in zip(walls[k], walls["plain"]))
              for k in variants}
    # Time outside training epochs does not swing with the machine's load the way training
    # does: the extra seconds each variant spends there, same round vs plain, median.
    outside = {k: [w - t for w, t in zip(walls[k], trains[k])] for k in variants}
    extra = {k: statistics.median(a - b for a, b in zip(outside[k], outside["plain"]))
             for k in variants}
    robust = {k: 1 + extra[k] / wall["plain"] for k in variants}
    n_train = len(train_rows)
    lines = [
        f"{args.images} synthetic {args.size} px images ({n_train} train / {len(val_rows)} "
        f"validation), default TrialConfig (separable, {args.epochs} epochs, batch "
        f"{config.batch_size}), device {choice.precision}; median of {args.repeats} runs "
        f"after a warm-up.",
        "",
        "| variant | median wall s | in training epochs s | extra s outside training | "
        "vs plain: wall ratio | vs plain: plain + extra |",
        "|---|---|---|---|---|---|",
        *[f"| {k} | {wall[k]:.2f} | {train[k]:.2f} | {extra[k]:+.2f} | {ratios[k]:.2f}x | "
          f"{robust[k]:.2f}x |" for k in variants],
        "",
        "Wall ratio: median of same-round ratios (training time swings with the machine's "
        "load); plain + extra: the plain fit's wall plus the extra seconds the variant spends "
        "outside training epochs, which load does not swing as much.",
        f"Where the extra goes: model build + per-epoch validation predict and per-head scores "
        f"(vs Keras' own validation inside the plain fit's epochs) {extra['search']:+.2f} s; "
        f"MLflow params, per-epoch and final metrics, confusion and config JSON "
        f"{extra['+mlflow'] - extra['search']:+.2f} s; model export + MLflow log_model "
        f"{extra['+model'] - extra['+mlflow']:+.2f} s.",
        f"Target <= 1.05x: search {robust['search']:.2f}x, +mlflow {robust['+mlflow']:.2f}x, "
        f"+model {robust['+model']:.2f}x (plain + extra); wall ratios "
        f"{ratios['search']:.2f}x / {ratios['+mlflow']:.2f}x / {ratios['+model']:.2f}x.",
    ]
    benchlib.record("overhead: search.engines.trial.run vs plain model.fit", lines,
                    enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
