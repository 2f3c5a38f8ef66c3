"""`search lr-find`: the LR range test for one config of a space, outside any study.

The config is the space sampled once with a seeded random sampler (pin keys with the usual
flags, e.g. --backbone separable --image-size 48), trained on the same split a study uses,
through the same `search.train.training.prepare` as a trial.
"""

from __future__ import annotations

from pathlib import Path

from search.settings import Settings
from search.study.session import Options, Session


def lr_find(settings: Settings, options: Options, *, num_steps: int, min_lr: float,
            max_lr: float, out: str | None) -> int:
    import optuna

    from search.train import clr, training
    from search.views.lr_curve import save_lr_curve_html

    session = Session.build(settings, options)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=options.seed))
    config = session.space.sample(probe.ask())
    session.use_device()
    stage = next(training.prepare(config, session, learning_rate=min_lr).stages())
    result = clr.lr_range_test(stage.model, stage.train, min_lr=min_lr, max_lr=max_lr,
                               num_steps=num_steps)
    path = Path(out) if out else settings.runs_dir / f"lr_find-{options.study}.html"
    save_lr_curve_html(result, path)
    print(f"config: {config.to_json()}")
    print(f"swept {len(result.lrs)} steps from {result.lrs[0]:.2e} to {result.lrs[-1]:.2e}"
          f"{' (stopped: loss diverged)' if result.stopped_early else ''}")
    print(f"suggested base_lr {result.suggested_base_lr:.2e}, max_lr {result.suggested_max_lr:.2e}")
    print(f"curve: {path}")
    return 0
