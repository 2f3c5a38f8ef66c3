"""`search worker`: one more worker on a study that `search run` started."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import TrialsCommand


class Worker(TrialsCommand):
    """Join a study that `search run` started, from this or another machine, with the same
    --study, storage, tracking URI, data, space and pin flags. All workers share the trials
    until the study holds --trials finished ones. Put the storage URL in $SEARCH_STORAGE
    rather than --storage to keep its password out of `ps`."""

    name = "worker"
    help = "join a running study from this or another machine"

    def add_arguments(self, p):
        opts.search_options(p)
        opts.trial_options(p)
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.engines import work

        return work(opts.settings(args), opts.run_options(args))
