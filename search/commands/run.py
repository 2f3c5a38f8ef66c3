"""`search run`: run or resume a search, then optionally register what it found."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import TrialsCommand
from search.engines import ENGINES, TUNERS
from search.errors import UsageError


class Run(TrialsCommand):
    """Run (or resume) a search until the study has --trials finished trials."""

    name = "run"
    help = "run or resume a search"

    def add_arguments(self, p):
        opts.search_options(p)
        opts.trial_options(p)
        p.add_argument("--workers", type=int, default=opts.DEFAULTS.workers,
                       help="worker processes on this machine (default: %(default)s)")
        p.add_argument("--gpus", metavar="0,1,...|all",
                       help="one worker per GPU, each seeing only its own (no GPU: CPU workers)")
        g = p.add_argument_group("on a Ray cluster (pip install -e '.[ray]'; "
                                 "docs/cluster.md)")
        g.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="run the --workers K as Ray tasks: on the cluster at ADDRESS (auto, "
                            "HOST:6379, ray://HOST:10001) or, without one, on a Ray instance "
                            "started on this machine for this run. A lost worker is restarted "
                            "by Ray (3 times at most), its trial failed by the heartbeat and "
                            "retried. Nodes beyond this machine need PostgreSQL storage and an "
                            "MLflow tracking server, `search` installed and the data at the "
                            "same path")
        g.add_argument("--gpus-per-trial", type=float, metavar="G",
                       help="GPUs Ray gives each worker (0.5: two trials share a GPU, memory "
                            "growth on; default: none, CPU workers)")
        g.add_argument("--cpus-per-trial", type=float, default=opts.DEFAULTS.cpus_per_trial,
                       metavar="C",
                       help="CPUs Ray reserves for each worker (default: %(default)g)")
        p.add_argument("--engine", choices=ENGINES, default="optuna",
                       help="who proposes trials (default: %(default)s); keras-tuner keeps its "
                            "state in runs/keras-tuner/STUDY and needs --no-baselines")
        p.add_argument("--tuner", choices=TUNERS, default="hyperband",
                       help="keras-tuner oracle (default: %(default)s); hyperband's max_epochs "
                            "is the space's epochs upper bound")
        p.add_argument("--warm-start", metavar="STUDY[,STUDY...]",
                       help="queue the best distinct configs of these earlier studies of the "
                            "same storage first (after the space's baselines), as sampled "
                            "params the sampler learns from; one that does not fit the space "
                            "is skipped with a line saying why. Same heads and label "
                            "vocabularies needed; run again, nothing is queued twice. Optuna "
                            "engine only")
        p.add_argument("--warm-start-top", type=int, metavar="N",
                       help=f"how many configs --warm-start queues, best first over all the "
                            f"studies it names (default: {opts.DEFAULTS.warm_start_top})")
        p.add_argument("--register", metavar="NAME",
                       help="after the search, `search best --register NAME` (with --refit and "
                            "--ensemble K: the final model) on this study")
        opts.final_options(p)
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search import engines

        options = opts.run_options(args, workers=args.workers, gpus=args.gpus, ray=args.ray,
                                   gpus_per_trial=args.gpus_per_trial,
                                   cpus_per_trial=args.cpus_per_trial,
                                   **opts.warm_start(args.warm_start, args.warm_start_top))
        final = args.refit or args.ensemble is not None
        if final and not args.register:
            raise UsageError("--refit and --ensemble build a model to register: add --register "
                             "NAME (or run `search best --register NAME ...` after the search)")
        if final and args.ensemble is not None and args.ensemble < 2:
            raise UsageError(f"--ensemble K needs K >= 2 kept models, got {args.ensemble}")
        if args.engine == "keras-tuner" and args.register:
            raise UsageError("--register after the search reads an Optuna study: with "
                             "--engine keras-tuner, drop it")
        settings = opts.settings(args)
        code = engines.run(engines.create(args.engine, settings, options, tuner=args.tuner))
        if code != 0 or not args.register:
            return code
        from search.final.results import best  # what the search learnt, on the budget it left

        return best(settings, args.study, args.register, "table", refit=args.refit,
                    ensemble=args.ensemble)
