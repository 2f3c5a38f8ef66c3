"""GPU training throughput per backbone at 224 px: precision, XLA, and input-pipeline stalls.

For each backbone (separable, mobilenet_v2 alpha 0.5, resnet50, efficientnet_b0; weights none)
and each device setting (`search.train.device.choose`: float32 or the automatic mixed precision,
XLA off or on), `search.train.training.prepare` builds what a trial fits (the path
`search.engines.trial.run` takes: network, compiled stage, input pipeline) on a synthetic table,
and its stage trains:
  real    the stage's own training batches (the table's images decoded once, uint8 in memory
          → search.data.table.train_dataset with the trial's augmentation), one epoch = one pass
  cached  one batch of that pipeline repeated (no input work at all)
Reported: train images/s for both, and busy = real / cached, the share of step time not spent
waiting for input (target >= 85%). Timings are the median of --epochs epochs after a warm-up
epoch (which includes tracing and XLA compilation).

Settings run in priority order (auto setting first, then float32 without XLA, then the other
two) and stop before --deadline seconds, so the script always finishes in time.

    python bench/gpu.py [--deadline 430] [--out DIR]        (bench/gpu.sh runs this)
    python bench/gpu.py --allow-cpu --size 64 --images 256 --backbones separable   (smoke test)

--images is the synthetic table's size (generated once under runs/bench/); a trial trains on
its training rows (80%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import benchlib

BACKBONES = {
    "separable": {"backbone": "separable"},
    "mobilenet_v2 a0.5": {"backbone": "pretrained", "family": "mobilenet_v2", "alpha": 0.5},
    "resnet50": {"backbone": "pretrained", "family": "resnet50"},
    "efficientnet_b0": {"backbone": "pretrained", "family": "efficientnet_b0"},
}
# (precision, xla): the automatic GPU choice first, then the CPU-style default, then the rest.
SETTINGS = [("auto", "on"), ("float32", "off"), ("auto", "off"), ("float32", "on")]


def epoch_timer():
    """A callback collecting seconds per epoch, skipping the first (tracing, XLA compile)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        seconds: list

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if epoch:
                self.seconds.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    timer.seconds = []
    return timer


def measure(name, overrides, precision, xla, args, session) -> dict:
    import tensorflow as tf

    from search.space.config import TrialConfig
    from search.train import device, training

    choice = device.choose(precision, xla)
    config = TrialConfig(image_size=(args.size, args.size), batch_size=args.batch_size,
                         weights="none", **overrides)
    stage = next(training.prepare(config, session, jit_compile=choice.jit_compile).stages())
    net, real, steps = stage.model, stage.train, stage.steps_per_epoch
    batch = next(iter(real))
    cached = tf.data.Dataset.from_tensors(batch).repeat(steps)
    out = {"backbone": name, "precision": choice.precision, "xla": choice.jit_compile,
           "params": int(net.count_params()), "device": choice.name}
    for kind, ds in (("cached", cached), ("real", real)):
        timer = epoch_timer()
        net.fit(ds, epochs=args.epochs + 1, callbacks=[timer], verbose=0, shuffle=False)
        out[f"{kind}_img_s"] = steps * config.batch_size / statistics.median(timer.seconds)
    out["busy"] = out["real_img_s"] / out["cached_img_s"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--images", type=int, default=2048, help="rows of the synthetic table")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after the warm-up one")
    p.add_argument("--deadline", type=float, default=430,
                   help="start no setting that would end after S seconds")
    p.add_argument("--out", type=Path, help="folder for gpu.json (stdout is the markdown)")
    p.add_argument("--allow-cpu", action="store_true", help="smoke-test the script on a CPU")
    p.add_argument("--backbones", default=",".join(BACKBONES))
    args = p.parse_args(argv)
    start = time.monotonic()

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.allow_cpu:
        print("bench/gpu.py: no GPU visible to TensorFlow; nothing measured (CPU figures "
              "would not answer the question). Check nvidia-smi and the CUDA build of TF.")
        return 2
    session = benchlib.session(benchlib.synthetic_csv(args.images, args.size),
                               benchlib.ROOT / "runs" / "bench" / "gpu")
    names = [n.strip() for n in args.backbones.split(",")]
    results, skipped = [], []
    header = "| backbone | precision | XLA | real img/s | cached img/s | busy |"
    print(header + "\n|---|---|---|---|---|---|", flush=True)
    longest = 0.0  # the slowest setting so far: do not start one that would end too late
    for precision, xla in SETTINGS:
        for name in names:
            if time.monotonic() - start + longest > args.deadline:
                skipped.append(f"{name} {precision}/xla {xla}")
                continue
            began = time.monotonic()
            try:
                r = measure(name, BACKBONES[name], precision, xla, args, session)
            except Exception as exc:  # e.g. out of memory: report and go on
                print(f"| {name} | {precision} | {xla} | failed: {type(exc).__name__}: "
                      f"{str(exc)[:120]} | | |", flush=True)
                continue
            finally:
                longest = max(longest, time.monotonic() - began)
            results.append(r)
            print(f"| {name} | {r['precision']} | {'on' if r['xla'] else 'off'} | "
                  f"{r['real_img_s']:,.0f} | {r['cached_img_s']:,.0f} | {r['busy']:.0%} |",
                  flush=True)
    device_name = results[0]["device"] if results else "?"
    summary = [f"GPU: {device_name}; {args.size} px, batch {args.batch_size}, "
               f"{len(session.train_rows)} training images in memory, weights none; "
               f"{time.monotonic() - start:.0f} s."]
    if skipped:
        summary.append(f"Skipped for time: {', '.join(skipped)}.")
    starved = [r for r in results if r["busy"] < 0.85]
    summary.append("Input never starves the GPU (busy >= 85% everywhere)." if not starved else
                   "Input-bound (busy < 85%): " + ", ".join(
                       f"{r['backbone']} {r['precision']}/xla {r['xla']} {r['busy']:.0%}"
                       for r in starved) + ".")
    print("\n".join(summary))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.json").write_text(json.dumps({"results": results, "skipped": skipped,
                                                       "machine": benchlib.machine()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
