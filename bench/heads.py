"""What a short trial pays before it learns anything: the first epoch of a probe stage (Keras
traces the train step) and a steady epoch, for the 8 person-attribute heads on cached
features. Baseline: one Dense tower per head, the optimizer's slots made inside the first
traced step (how `search` did it before, and what a plain Keras script does). Then the two
changes one at a time: the same towers with the slots built before fit, and the heads as
`search.model.heads.build` makes them (all towers in one `Towers` layer) compiled by
`search.train.training.compile_model` (which builds the slots before fit).

Features are random (the cost depends on shapes, not values): N x 1280 float16, as MobileNetV2
alpha 0.5 pools them, batch 128, Adam under the cyclical schedule, one softmax per head.

    .venv/bin/python bench/heads.py [--rows 3584] [--repeats 5] [--no-record]
"""

from __future__ import annotations

import argparse
import statistics
import time

import benchlib


def per_head_dense(features: int, config, vocab):
    """The baseline: per head its own Dropout, Dense+ReLU and softmax Dense layers."""
    import keras

    inputs = keras.Input((features,))
    x = inputs
    if config.neck_units:
        x = keras.layers.Dense(config.neck_units, activation="relu")(x)
    x = keras.layers.Dropout(config.neck_dropout)(x)
    outputs = {}
    for head, labels in vocab.items():
        h = keras.layers.Dropout(config.head_dropout)(x)
        h = keras.layers.Dense(config.head_units, activation="relu")(h)
        outputs[head] = keras.layers.Dense(len(labels), activation="softmax", name=head)(h)
    return keras.Model(inputs, outputs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3584)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--neck", type=int, default=256, help="neck units (0: none)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf

    from search import console
    from search.data.synthetic import HEADS
    from search.model import heads
    from search.space.config import TrialConfig
    from search.train import training

    console.quiet()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, 1280)).astype("float16")
    y = {h: rng.integers(0, len(v), args.rows).astype("int32") for h, v in HEADS.items()}
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(128).map(
        lambda a, b: (tf.cast(a, tf.float32), b))
    config = TrialConfig(neck_units=args.neck, neck_dropout=0.2, head_units=64, head_dropout=0.1,
                         base_lr=3e-4, max_lr=1.5e-3)
    steps = args.rows // 128

    def baseline(build_slots=False):
        model = per_head_dense(1280, config, HEADS)
        model.compile(optimizer=training.optimizer(config, training.schedule(config, steps)),
                      loss=training.losses(HEADS), metrics={h: ["accuracy"] for h in HEADS})
        if build_slots:
            model.optimizer.build(model.trainable_variables)
        return model

    def towers():
        return training.compile_model(heads.build(1280, config, HEADS), config, steps)

    variants = {"one Dense tower per head, slots in the first step (baseline)": baseline,
                "one Dense tower per head, slots built before fit":
                    lambda: baseline(build_slots=True),
                "Towers, slots built before fit (search)": towers}
    times = {name: {"build": [], "first": [], "steady": []} for name in variants}
    for _ in range(args.repeats):  # interleaved, so the machine's load hits both alike
        for name, make in variants.items():
            keras.backend.clear_session()
            start = time.perf_counter()
            model = make()
            built = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            first = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            times[name]["build"].append(built - start)
            times[name]["first"].append(first - built)
            times[name]["steady"].append(time.perf_counter() - first)
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    base = med[next(iter(variants))]
    classes = sum(len(v) for v in HEADS.values())
    lines = [f"{args.rows} rows of 1280 random float16 features, 8 heads ({classes} classes), "
             f"neck {args.neck or 'none'}, towers of 64, batch 128, Adam + CLR; median of "
             f"{args.repeats} interleaved repeats.", "",
             "| heads | build + compile s | first epoch s | steady epoch s | fixed s | first "
             "epoch vs baseline |", "|---|---|---|---|---|---|"]
    for name, m in med.items():
        fixed = m["build"] + m["first"] - m["steady"]  # what a stage pays before it learns
        lines.append(f"| {name} | {m['build']:.2f} | {m['first']:.2f} | {m['steady']:.2f} | "
                     f"{fixed:.2f} | {benchlib.ratio(m['first'], base['first'])} |")
    lines += ["", "fixed: build + first epoch - a steady epoch, the cost of a stage that does not "
              "depend on how long it trains."]
    benchlib.record("heads: the first epoch of a probe stage", lines, enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
