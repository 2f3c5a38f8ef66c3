"""Chaos: what repeated SIGKILLs and a truncated image cache cost a real tiny study, and what
checking a cache on read costs.

Runs tests/test_chaos.py's scenario (a 3-trial study on 160 synthetic 32 px images, SIGKILLed
3 times — during the first image-cache build, mid-trial, during the rebuild of the truncated
cache — then run to completion) and reports kills survived, trials lost,
their lost work and how long each restart took to clear the dead trial; then times
`search.data.verified.check` (header, size, sidecar, SHA-256) on a cache of --verify-gb GiB.

    .venv/bin/python bench/chaos.py [--seed 21] [--verify-gb 1] [--no-record]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import benchlib

sys.path.insert(0, str(benchlib.ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--verify-gb", type=float, default=1.0)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    import numpy as np
    from test_chaos import chaos

    from search.data import synthetic, verified

    with tempfile.TemporaryDirectory() as tmp:
        csv = synthetic.generate(Path(tmp) / "data", n=160, size=32, seed=1)
        f = chaos(Path(tmp) / "chaos", csv, seed=args.seed)
    lines = [f"- kills survived: {f['kills']} ({', '.join(f['killed_at'])}); "
             f"{f['finished']}/{f['target']} trials finished",
             f"- trials lost (killed mid-run, failed on restart, parameters retried): "
             f"{f['trials_lost']}, {f['seconds_of_work_lost']} s of their work",
             f"- seconds from each restart until its dead trial was marked FAIL (start-up "
             f"plus the heartbeat grace, {f['heartbeat']}): "
             f"{f['seconds_to_clear_each_dead_trial']}; waits for running trials: "
             f"{f['waiting_lines']}",
             f"- wall time of the 4 runs: {f['wall_seconds']} s"]

    with tempfile.TemporaryDirectory() as tmp:
        n = int(args.verify_gb * 2**30)
        array = np.random.default_rng(0).integers(0, 255, n, dtype=np.uint8)
        path, key = Path(tmp) / "big.npy", {"bench": n}
        start = time.perf_counter()
        verified.write(path, array, key)
        written = time.perf_counter() - start
        del array
        verified._CHECKED.clear()
        start = time.perf_counter()
        assert verified.read(path, key) is not None
        checked = time.perf_counter() - start
        start = time.perf_counter()
        verified.read(path, key)
        again = time.perf_counter() - start
    lines.append(f"- verified cache of {args.verify_gb:g} GiB: write (with its SHA-256) "
                 f"{written:.2f} s, first check on read {checked:.2f} s, a later check in "
                 f"the same process {again * 1000:.1f} ms (memoised on inode, size, mtime)")
    benchlib.record("Chaos: kills and a damaged cache", lines, enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
