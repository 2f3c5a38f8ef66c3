"""`search lr-find`: the LR range test for one config of a space, outside any study.

The config is the space sampled once with a seeded random sampler (pin keys with the usual
flags, e.g. --backbone separable --image-size 48), trained on the same split a study uses.
"""

from __future__ import annotations

from pathlib import Path

from search.runner import Options, Runner
from search.settings import Settings


def lr_find(settings: Settings, options: Options, *, num_steps: int, min_lr: float,
            max_lr: float, out: str | None) -> int:
    import keras
    import optuna

    from search import clr, device, model as model_lib
    from search.data import train_dataset
    from search.trial import Workbench, _optimizer

    runner = Runner(settings, options)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=options.seed))
    config = runner.space.sample(probe.ask())
    device.choose("auto", "auto")
    bench = Workbench(table=runner.table, train_rows=runner.train_rows,
                      val_rows=runner.val_rows, settings=settings)
    train_x, _ = bench.images(config)
    keras.utils.set_random_seed(config.seed)
    ds = train_dataset(train_x, runner.table.labels(runner.train_rows),
                       batch_size=config.batch_size, seed=config.seed)
    net = model_lib.build(config, runner.table.vocab)
    net.compile(optimizer=_optimizer(config, min_lr),
                loss={h: "sparse_categorical_crossentropy" for h in runner.table.heads})
    result = clr.lr_range_test(net, ds, min_lr=min_lr, max_lr=max_lr, num_steps=num_steps)
    path = Path(out) if out else settings.runs_dir / f"lr_find-{options.study}.html"
    clr.save_lr_curve_html(result, path)
    print(f"config: {config.to_json()}")
    print(f"swept {len(result.lrs)} steps from {result.lrs[0]:.2e} to {result.lrs[-1]:.2e}"
          f"{' (stopped: loss diverged)' if result.stopped_early else ''}")
    print(f"suggested base_lr {result.suggested_base_lr:.2e}, max_lr {result.suggested_max_lr:.2e}")
    print(f"curve: {path}")
    return 0
