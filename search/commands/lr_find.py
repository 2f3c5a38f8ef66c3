"""`search lr-find`: an LR range test for one config of a space, outside any study.

The config is the space sampled once with a seeded random sampler (pin keys with the usual
flags, e.g. --backbone separable --image-size 48), trained on the same split a study uses,
through the same `search.train.training.prepare` as a trial. The body lives here, not in
`train/`, because it builds a study's session and writes a view: both sit above training.
"""

from __future__ import annotations

from pathlib import Path

from search.commands import options as opts
from search.commands.base import Command


class LrFind(Command):
    """LR range test for one config of a space: suggested base/max LR and a plotly curve."""

    name = "lr-find"
    help = "LR range test for a config of the space"
    tensorflow = True

    def add_arguments(self, p):
        opts.search_options(p)
        p.add_argument("--steps", type=int, default=100, help="sweep length in batches")
        p.add_argument("--min-lr", type=float, default=1e-6)
        p.add_argument("--max-lr", type=float, default=1.0)
        p.add_argument("--out", help="HTML file for the curve (default: "
                                     "runs/lr_find-<study>.html)")
        opts.state_options(p)

    def take_action(self, args) -> int:
        return lr_find(opts.settings(args), opts.options(args), num_steps=args.steps,
                       min_lr=args.min_lr, max_lr=args.max_lr, out=args.out)


def lr_find(settings, options, *, num_steps: int, min_lr: float, max_lr: float,
            out: str | None) -> int:
    """Sample one config (search.settings.Settings, search.study.session.Options), sweep
    its learning rate, write the curve and print the suggested bounds."""
    import optuna

    from search.study.session import Session
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
