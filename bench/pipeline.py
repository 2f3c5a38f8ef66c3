"""Input pipeline throughput: the project's tf.data path vs the assignment's per-item loader.

Project: `search.data.table.load_images` decodes and resizes every image once (threads, batched
resize), then `search.data.table.train_dataset` (the trial's pipeline) serves shuffled batches
of the uint8 arrays in memory, augmented (`search.data.augment.augment_batch`: flip, cutout) and
cast on whole batches in a parallel, prefetched tf.data map. Reference: a
`keras.utils.PyDataset` that, every epoch, opens each JPEG with `keras.utils.load_img`, resizes
it, flips it and applies numpy random erasing, item by item
(the assignment's `get_random_eraser`), consumed in order as `model.fit` does with workers=1.

Same images, batch size, output size and augmentation work (flip p=.5, one erased box p=.5,
no shift); the reference resizes with load_img's default (nearest), the project bilinearly.
The page cache is warmed first so neither side pays cold-disk reads. The first epoch includes
the project's one-time decode; both first-epoch and steady-state ratios are reported, and the
same tf.data pipeline without augmentation shows what the augmentation costs. Only the
loaders run, no model.

Beside it, on the same decoded images and augmentation, the numpy pipeline a trial uses on JAX
and PyTorch (search.data.arrays: `TrainBatches`, a `keras.utils.PyDataset`, with
`arrays.augment`), iterated as Keras iterates it, without training: indexed batch by batch
with `on_epoch_end` after each epoch (one thread), and through Keras's own PyDataset adapter
with the 2 worker threads a trial gives it (what `model.fit` consumes on JAX). Its steady
batches/s against tf.data's say whether the JAX path is fed as fast as the TensorFlow one. It is
plain numpy, so it is timed here in the same process on the TensorFlow backend.

    .venv/bin/python bench/pipeline.py [--size 96] [--batch-size 64] [--limit N]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import benchlib

CUTOUT_P = 0.5


def random_erasing(img, rng, p=CUTOUT_P, s_l=0.02, s_h=0.4, r_1=0.3, r_2=1 / 0.3):
    """The assignment's eraser: one box of random area and aspect, filled with one value."""
    if rng.random() > p:
        return img
    h, w, _ = img.shape
    while True:
        s = rng.uniform(s_l, s_h) * h * w
        r = rng.uniform(r_1, r_2)
        ew, eh = int(math.sqrt(s / r)), int(math.sqrt(s * r))
        left, top = rng.integers(0, w), rng.integers(0, h)
        if left + ew <= w and top + eh <= h:
            break
    img[top:top + eh, left:left + ew, :] = rng.uniform(0, 255)
    return img


def reference_loader(paths, labels, batch_size, size, seed=0):
    import keras

    class ReferenceSequence(keras.utils.PyDataset):
        """Per item, per epoch: load_img → resize → array → flip → random erasing."""

        def __init__(self):
            super().__init__()  # workers=1, no multiprocessing: the assignment's setting
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(paths))

        def __len__(self):
            return math.ceil(len(paths) / batch_size)

        def __getitem__(self, i):
            rows = self.order[i * batch_size:(i + 1) * batch_size]
            x = np.empty((len(rows), size, size, 3), np.float32)
            for j, k in enumerate(rows):
                img = keras.utils.img_to_array(
                    keras.utils.load_img(paths[k], target_size=(size, size)))
                if self.rng.random() < 0.5:
                    img = img[:, ::-1]
                x[j] = random_erasing(np.ascontiguousarray(img), self.rng)
            return x, {h: y[rows] for h, y in labels.items()}

        def on_epoch_end(self):
            self.rng.shuffle(self.order)

    return ReferenceSequence()


def time_reference(seq, epochs: int) -> list[float]:
    out = []
    for _ in range(epochs):
        with benchlib.Timer() as t:
            for i in range(len(seq)):
                seq[i]
            seq.on_epoch_end()
        out.append(t.seconds)
    return out


def time_epochs(ds, epochs: int) -> list[float]:
    out = []
    for _ in range(epochs):
        with benchlib.Timer() as t:
            for _batch in ds:
                pass
        out.append(t.seconds)
    return out


def time_project(table, labels, size, batch_size, epochs):
    """(decode s, epochs s with augmentation, epochs s of the same pipeline without it,
    the decoded images)."""
    from search.data.table import load_images, train_dataset
    from search.space.config import TrialConfig
    from search.train.pipelines import train as train_pipeline

    with benchlib.Timer() as decode:
        images = np.asarray(load_images(table, (size, size)))  # no cache_dir: a fresh decode
    config = TrialConfig(image_size=(size, size), batch_size=batch_size, flip=True, shift=0.0,
                         cutout=CUTOUT_P)
    augmented = time_epochs(train_pipeline(config, images, labels), epochs)
    plain = time_epochs(train_dataset(images, labels, batch_size=batch_size, seed=0), epochs)
    return decode.seconds, augmented, plain, images


def numpy_batches(images, labels, batch_size, workers):
    """The JAX/PyTorch trial's pipeline (search.train.pipelines.train off
    TensorFlow) with this benchmark's augmentation: flip, no shift, cutout p=CUTOUT_P."""
    from search.data import arrays

    def transform(x, rng):
        return arrays.augment(x, rng, flip=True, shift=0.0, cutout=CUTOUT_P)

    return arrays.TrainBatches(images, labels, batch_size=batch_size, seed=0,
                               transform=transform, workers=workers)


def time_numpy(images, labels, batch_size, epochs):
    """({way: epochs s}, batches per epoch) of the numpy PyDataset: indexed in order with
    on_epoch_end (one thread), and through Keras's PyDataset adapter with 2 worker threads,
    as `fit` takes it on JAX (the trial's setting for uint8 images). No training."""
    seq = numpy_batches(images, labels, batch_size, workers=1)
    out, batches = {"indexed": time_reference(seq, epochs)}, len(seq)  # tf.data's count too
    try:  # Keras's internal adapter: what model.fit wraps a PyDataset in
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
    except ImportError:
        return out, batches
    adapter = PyDatasetAdapter(numpy_batches(images, labels, batch_size, workers=2))
    seconds = []
    for _ in range(epochs):
        with benchlib.Timer() as t:
            adapter.on_epoch_begin()
            for _batch in adapter.get_numpy_iterator():
                pass
            adapter.on_epoch_end()
        seconds.append(t.seconds)
    out["adapter, 2 workers"] = seconds
    return out, batches


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=96, help="output side in px (default: 96)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, help="use only the first N images")
    p.add_argument("--epochs", type=int, default=4, help="project epochs (default: 4)")
    p.add_argument("--reference-epochs", type=int, default=2)
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args(argv)

    from search.data.table import DEFAULT_HEADS, read_table

    csv, what = benchlib.hvc_csv()
    table = read_table(csv, DEFAULT_HEADS)
    if args.limit:
        from dataclasses import replace

        table = replace(table, frame=table.frame.iloc[:args.limit].reset_index(drop=True))
    n = len(table)
    for path in table.paths:  # warm the page cache for both sides
        with open(path, "rb") as f:
            f.read()
    labels = table.labels()
    decode, project, plain, images = time_project(table, labels, args.size, args.batch_size,
                                                  args.epochs)
    numpy_ways, batches = time_numpy(images, labels, args.batch_size, args.epochs)
    reference = time_reference(reference_loader(table.paths, labels, args.batch_size,
                                                 args.size), args.reference_epochs)

    def ips(seconds):
        return n / seconds

    ref_first, ref_steady = reference[0], float(np.median(reference[1:] or reference))
    proj_first, proj_steady = decode + project[0], float(np.median(project[1:]))
    plain_steady = float(np.median(plain[1:]))
    lines = [
        f"{n} {what}, {args.size}x{args.size} output, batch {args.batch_size}, flip + "
        f"erasing p={CUTOUT_P}; project epochs {args.epochs}, reference epochs "
        f"{args.reference_epochs}.",
        "",
        "| loader | first epoch img/s | steady img/s |",
        "|---|---|---|",
        f"| reference PyDataset (load_img per item) | {ips(ref_first):,.0f} | "
        f"{ips(ref_steady):,.0f} |",
        f"| search tf.data (decode once + batch augment) | {ips(proj_first):,.0f} "
        f"(decode {decode:.1f} s + epoch {project[0]:.2f} s) | {ips(proj_steady):,.0f} |",
        f"| search tf.data without augmentation (where the time goes) | | "
        f"{ips(plain_steady):,.0f} ({benchlib.ratio(ref_steady, plain_steady)}) |",
        f"| **ratio project / reference** | **{benchlib.ratio(ref_first, proj_first)}** | "
        f"**{benchlib.ratio(ref_steady, proj_steady)}** |",
        "",
        f"Target >= 10x steady state: {'met' if ref_steady / proj_steady >= 10 else 'MISSED'}.",
        "",
        f"The numpy PyDataset pipeline of JAX/PyTorch trials (search.data.arrays.TrainBatches "
        f"+ augment) on the same images and augmentation, steady state ({batches} batches of "
        f"{args.batch_size} per epoch, median of epochs 2-{args.epochs}):",
        "",
        "| pipeline | steady batches/s | steady img/s | batches/s ratio to tf.data |",
        "|---|---|---|---|",
        f"| search tf.data (TensorFlow backend) | {batches / proj_steady:,.1f} | "
        f"{ips(proj_steady):,.0f} | 1.00x |",
    ]
    labels_of = {"indexed": "numpy PyDataset, indexed in order + on_epoch_end (1 thread)",
                 "adapter, 2 workers": "numpy PyDataset through Keras's adapter, 2 workers "
                                       "(as fit on JAX)"}
    for way, seconds in numpy_ways.items():
        steady = float(np.median(seconds[1:] or seconds))
        lines.append(f"| {labels_of[way]} | {batches / steady:,.1f} | {ips(steady):,.0f} | "
                     f"{benchlib.ratio(proj_steady, steady)} |")
    benchlib.record("pipeline: tf.data vs per-item PyDataset, and the numpy PyDataset", lines,
                    enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
