"""An MLflow tracking server that stops answering mid-search: the trial waits, and says so.

Why: MLflow's HTTP client already retries every request that gets no answer, or a 5xx (urllib3's
Retry; MLFLOW_HTTP_REQUEST_MAX_RETRIES, default 7, and MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
default 2: about 4 minutes), so a trial whose tracking server restarts waits and loses nothing,
but in silence: urllib3 says "Retrying" to its NullHandler. `watch` listens to urllib3 (its
retries, and each answer at its debug level, which stays hidden) and prints one line when
requests stop being answered, with how long MLflow keeps trying, and one when an answer comes
again. The retrying is MLflow's own; this module only tells, and `down()` lets a trial that
failed for want of the server skip ending its run (which would spend MLflow's retries again):
the next worker to start closes that run (search.study.heartbeats.close_orphan_runs).
"""

from __future__ import annotations

import logging
import sys
import time

from search.settings import mask

LOGGER = "urllib3.connectionpool"
BACKOFF_MAX_S = 120  # urllib3's Retry.DEFAULT_BACKOFF_MAX: no wait between tries is longer
_RESPONSE = '%s://%s:%s "%s %s %s" %s %s'  # urllib3's debug line for each answer

_watch: "_Watch | None" = None


def watch(tracking_uri: str) -> None:
    """Report outages of this HTTP tracking server (once per process; other URIs: nothing)."""
    global _watch
    if not tracking_uri.startswith(("http://", "https://")):
        return
    if _watch is not None:
        _watch.uri = mask(tracking_uri)
        return
    logger = logging.getLogger(LOGGER)
    _watch = _Watch(mask(tracking_uri), show_debug=logger.isEnabledFor(logging.DEBUG))
    logger.addFilter(_watch)
    logger.setLevel(logging.DEBUG)  # each answer says the server is back; the filter hides it


def down() -> bool:
    """Whether the tracking server has not answered since requests to it started failing."""
    return _watch is not None and _watch.since is not None


def gave_up(what: str) -> None:
    """One line: MLflow's retries are spent and `what` (e.g. 'trial 3's run') stays as the
    server last saw it."""
    if _watch is not None and _watch.since is not None:
        waited = time.monotonic() - _watch.since
        print(f"MLflow tracking server {_watch.uri}: no answer for {waited:.0f} s, MLflow's "
              f"retries are spent: {what} stays RUNNING there until a worker starts again and "
              f"closes it; for longer outages raise MLFLOW_HTTP_REQUEST_MAX_RETRIES (at most "
              f"10) or MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", file=sys.stderr, flush=True)


def patience() -> tuple[int, int, float]:
    """MLflow's retries, backoff factor and the seconds they wait in all (urllib3: no wait
    after the first failure, then factor * 2**(n-1), at most BACKOFF_MAX_S, plus jitter)."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    )

    retries, factor = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()
    return retries, factor, sum(min(BACKOFF_MAX_S, factor * 2 ** (n - 1))
                                for n in range(2, retries + 1))


class _Watch(logging.Filter):
    """urllib3's records: a retry starts an outage (said once), an answer below 500 ends it."""

    def __init__(self, uri: str, show_debug: bool):
        super().__init__()
        self.uri, self.show_debug = uri, show_debug
        self.since: float | None = None
        self.status = None  # of the last answer

    def filter(self, record: logging.LogRecord) -> bool:
        message, args = record.msg, record.args
        if message == _RESPONSE and isinstance(args, tuple) and len(args) == 8:
            self.status = args[6]
            if self.since is not None and isinstance(self.status, int) and self.status < 500:
                print(f"MLflow tracking server {self.uri} answers again after "
                      f"{time.monotonic() - self.since:.0f} s", file=sys.stderr, flush=True)
                self.since = None
        elif isinstance(message, str) and message.startswith("Retrying ("):
            self._down(" ".join(str(args[1]).rsplit(": ", 1)[-1].split())[:200]
                       if isinstance(args, tuple) and len(args) > 1 else "no answer")
            return False  # said in our own words, once
        elif message == "Retry: %s":
            self._down(f"HTTP {self.status}")
        return record.levelno > logging.DEBUG or self.show_debug

    def _down(self, why: str) -> None:
        if self.since is not None:
            return
        self.since = time.monotonic()
        retries, factor, seconds = patience()
        span = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
        print(f"MLflow tracking server {self.uri} does not answer ({why}); MLflow retries for "
              f"about {span} (MLFLOW_HTTP_REQUEST_MAX_RETRIES={retries}, "
              f"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR={factor}) while the trial waits",
              file=sys.stderr, flush=True)
