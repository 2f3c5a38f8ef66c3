"""GPU training throughput per backbone at 224 px: precision, XLA, and input-pipeline stalls.

For each backbone (separable, mobilenet_v2 alpha 0.5, resnet50, efficientnet_b0; weights none)
and each device setting (`search.train.device.choose`: float32 or the automatic mixed precision,
compiled or not), `search.train.training.prepare` builds what a trial fits (the path
`search.engines.trial.run` takes: network, compiled stage, input pipeline) on a synthetic table,
and its stage trains, on the Keras backend of --backend (search.backend):
  real    the stage's own training batches (the table's images decoded once, uint8 in memory
          → the trial's augmentation: search.data.table.train_dataset, a parallel tf.data
          pipeline, on TensorFlow; search.data.arrays.TrainBatches, a numpy PyDataset on 2
          threads, on JAX and PyTorch), one epoch = one pass
  cached  one batch of that pipeline repeated (no input work at all; on JAX the batch is
          already on the GPU, on PyTorch it is the same numpy batch, copied each step)
Reported: train images/s for both, busy = real / cached, the share of step time not spent
waiting for input (target >= 85%), and input img/s: the pipeline alone producing one epoch
without training (numpy: on one thread, so threads needed ~ cached / input). Timings are the
median of --epochs epochs after a warm-up epoch (which includes tracing and XLA compilation).

Settings run in priority order and stop before --deadline seconds, so the script always
finishes in time. TensorFlow: the automatic setting first (mixed precision, XLA), then float32
without XLA, then the other two. JAX always compiles its steps with XLA (Keras on JAX has no
uncompiled fit worth timing): mixed precision, then float32. PyTorch: mixed and float32
uncompiled (the project's default there), then mixed under torch.compile.

    python bench/gpu.py [--deadline 430] [--out DIR]        (bench/gpu.sh runs this)
    python bench/gpu.py --backend jax --deadline 60 --out DIR   (bench/gpu_session.sh)
    python bench/gpu.py --allow-cpu --size 64 --images 256 --backbones separable   (smoke test)

--images is the synthetic table's size (generated once under runs/bench/), or --data a real
annotation CSV (bench/gpu_session.sh passes the carried rows); a trial trains on its training
rows (80%), resized to --size.
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
# (precision, xla) per backend: the automatic GPU choice first, then the CPU-style default,
# then the rest. xla "on" is jit_compile: XLA on TensorFlow and JAX, torch.compile on PyTorch.
SETTINGS = {"tensorflow": [("auto", "on"), ("float32", "off"), ("auto", "off"),
                           ("float32", "on")],
            "jax": [("auto", "on"), ("float32", "on")],
            "torch": [("auto", "off"), ("float32", "off"), ("auto", "on")]}


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


def cached_batches(real, steps: int, backend: str):
    """One batch of `real` repeated `steps` times, with no input work per step."""
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.data.Dataset.from_tensors(next(iter(real))).repeat(steps)
    import keras

    batch = real[0]
    if backend == "jax":  # on the GPU once: a step then copies nothing
        import jax

        batch = jax.tree_util.tree_map(jax.device_put, batch)

    class Repeat(keras.utils.PyDataset):
        def __len__(self):
            return steps

        def __getitem__(self, index):
            return batch

    return Repeat()


def input_rate(real, steps: int, batch_size: int, backend: str) -> float:
    """Images/s of the training pipeline alone over one epoch (no model): tf.data with its own
    parallelism on TensorFlow, the PyDataset's batches one after another (one thread) else."""
    began = time.perf_counter()
    if backend == "tensorflow":
        for _ in real.take(steps):
            pass
    else:
        for i in range(steps):
            real[i]
    return steps * batch_size / (time.perf_counter() - began)


def measure(name, overrides, precision, xla, args, session) -> dict:
    from search import backend
    from search.space.config import TrialConfig
    from search.train import device, training

    choice = device.choose(precision, xla)
    config = TrialConfig(image_size=(args.size, args.size), batch_size=args.batch_size,
                         weights="none", **overrides)
    stage = next(training.prepare(config, session, jit_compile=choice.jit_compile).stages())
    net, real, steps = stage.model, stage.train, stage.steps_per_epoch
    cached = cached_batches(real, steps, backend.name())
    out = {"backbone": name, "backend": backend.name(), "precision": choice.precision,
           "xla": choice.jit_compile, "params": int(net.count_params()), "device": choice.name,
           "input_img_s": input_rate(real, steps, config.batch_size, backend.name())}
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
    p.add_argument("--data", type=Path,
                   help="an annotation CSV to train on instead of the synthetic table")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after the warm-up one")
    p.add_argument("--deadline", type=float, default=430,
                   help="start no setting that would end after S seconds")
    p.add_argument("--out", type=Path, help="folder for gpu.json (stdout is the markdown)")
    p.add_argument("--allow-cpu", action="store_true", help="smoke-test the script on a CPU")
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                   help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    args = p.parse_args(argv)
    start = time.monotonic()

    from search import backend
    from search.train import device

    chosen = backend.select(args.backend)  # before anything imports Keras
    if not device.choose("float32").gpus and not args.allow_cpu:
        print(f"bench/gpu.py: no GPU visible to {chosen}; nothing measured (CPU figures "
              "would not answer the question). Check nvidia-smi and the CUDA build of "
              f"{chosen}.")
        return 2
    session = benchlib.session(args.data or benchlib.synthetic_csv(args.images, args.size),
                               benchlib.ROOT / "runs" / "bench" / "gpu")
    names = [n.strip() for n in args.backbones.split(",")]
    results, skipped = [], []
    header = ("| backbone | precision | compiled | real img/s | cached img/s | busy "
              "| input img/s |")
    print(f"backend {chosen}\n\n{header}\n|---|---|---|---|---|---|---|", flush=True)
    longest = 0.0  # the slowest setting so far: do not start one that would end too late
    for precision, xla in SETTINGS[chosen]:
        for name in names:
            if time.monotonic() - start + longest > args.deadline:
                skipped.append(f"{name} {precision}/xla {xla}")
                continue
            began = time.monotonic()
            try:
                r = measure(name, BACKBONES[name], precision, xla, args, session)
            except Exception as exc:  # e.g. out of memory: report and go on
                print(f"| {name} | {precision} | {xla} | failed: {type(exc).__name__}: "
                      f"{str(exc)[:120]} | | | |", flush=True)
                continue
            finally:
                longest = max(longest, time.monotonic() - began)
            results.append(r)
            write_json(args, chosen, results, skipped)  # kept if a hard timeout ends the run
            print(f"| {name} | {r['precision']} | {'on' if r['xla'] else 'off'} | "
                  f"{r['real_img_s']:,.0f} | {r['cached_img_s']:,.0f} | {r['busy']:.0%} | "
                  f"{r['input_img_s']:,.0f} |",
                  flush=True)
    device_name = results[0]["device"] if results else "?"
    summary = [f"GPU: {device_name}; backend {chosen}; {args.size} px, batch {args.batch_size}, "
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
    write_json(args, chosen, results, skipped)
    return 0


def write_json(args, backend: str, results: list, skipped: list) -> None:
    """--out/gpu.json (gpu-BACKEND.json with --backend): the rows so far."""
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / (f"gpu-{backend}.json" if args.backend else "gpu.json")).write_text(
            json.dumps({"backend": backend, "results": results, "skipped": skipped,
                        "machine": benchlib.machine()}, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
