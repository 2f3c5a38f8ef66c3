"""Quality per CPU-hour: `search` against the plain Optuna script a user would write instead.

One run, the two searches one after the other on this machine, on the same rows and the same
wall budget: rows 1-4,480 of ../shared/hvc/hvc_annotations.csv to search on, rows
4,481-5,600 as the test set neither side sees while searching.

- search: `search run --space spaces/hvc.yaml --timeout MINUTES*60` on the first 4,480 rows
  (a copy of the CSV and images under runs/bench/quality/hvc), then `search best --register`
  and `search evaluate` of the champion on the test rows.
- peer: `../shared/peers/plain_optuna.py --test-last 1120 --minutes MINUTES` (its own code,
  unchanged; a wrapper only records its study and test predictions, for the pruned count and
  balanced accuracy it does not print). It retrains its best config before scoring.

Prints and records side by side: trials finished and pruned, seconds per trial, per-head test
accuracy and balanced accuracy with the majority baseline, the means, and the issue's targets
(mean accuracy >= peer + 0.04, mean balanced accuracy >= peer + 0.05, every head at or above
its majority baseline, >= 5x the peer's trials).

    .venv/bin/python bench/quality.py [--minutes 20] [--seed 0] [--reuse-peer] [--no-record]
        [--peer-minutes M] [--final "--refit --ensemble 5"] [--reuse-search]
        [--warm-start-from SEED]

The anytime curve (issue 17): the search keeps every model (`--keep-models all`), and the
champion as it stood at 5, 10, 20 and 45 minutes of the run (the best validation score among
the trials finished by then) is scored on the test rows, beside each final-model candidate
that `search best --register ... --refit --ensemble 5` builds and the one it makes champion.
--reuse-search redoes only the curve and the final model on the last search of that seed.
Every candidate is scored (best-trial and selection included: issue 30's selection vs the
best trial alone, and its test-time flips on and off per head), with the search's cores in use
(its CPU time over its wall time). --warm-start-from SEED runs a study of its own in SEED's
storage started with `--warm-start quality-SEED` (issue 30: 20 warm minutes vs 45 cold).

--reuse-peer takes the peer's figures from the last run (runs/bench/quality/peer-result.json,
same minutes) instead of running it again: the peer's own TPE is seeded, so a second seed of
`search` is compared against the same peer result.
Needs ../shared (hvc images, weights, peers) and `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import benchlib

SHARED = benchlib.ROOT.parent / "shared"
SEARCH_ROWS, TEST_ROWS = 4480, 1120
WORK = benchlib.ROOT / "runs" / "bench" / "quality"
HEADS = ("gender", "imagequality", "age", "weight", "carryingbag", "footwear", "emotion",
         "bodypose")
# Runs the peer unchanged; records its study (trials, pruned) and its test predictions.
PEER_WRAPPER = """
import json, runpy, sys
import numpy as np, optuna, keras
studies, predictions = [], []
create, predict = optuna.create_study, keras.Model.predict
def recording_create(*a, **k):
    studies.append(create(*a, **k))
    return studies[-1]
def recording_predict(self, *a, **k):
    out = predict(self, *a, **k)
    predictions.append([np.asarray(p).argmax(1).tolist() for p in out])
    return out
optuna.create_study, keras.Model.predict = recording_create, recording_predict
peer, record, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.argv = [peer, *argv]
runpy.run_path(peer, run_name="__main__")
states = [t.state.name for t in studies[0].trials]
json.dump({"complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
           "failed": states.count("FAIL"), "test_predictions": predictions[-1]},
          open(record, "w"))
"""


def split_data() -> tuple[Path, Path]:
    """search.csv (rows 1-4,480) and test.csv (rows 4,481-5,600) beside a copy of the images
    (a CSV's images must lie in its folder)."""
    folder = WORK / "hvc"
    source = SHARED / "hvc"
    if not (folder / "resized").is_dir():
        shutil.copytree(source / "resized", folder / "resized")
    with open(source / "hvc_annotations.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    paths = []
    for name, part in (("search.csv", body[:SEARCH_ROWS]),
                       ("test.csv", body[SEARCH_ROWS:SEARCH_ROWS + TEST_ROWS])):
        with open(folder / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(part)
        paths.append(folder / name)
    return paths[0], paths[1]


CURVE_MINUTES = (5, 10, 20, 45)  # the champion as it stood then (those within the budget)


def run_search(minutes: float, seed: int, search_csv: Path, test_csv: Path, *,
               reuse: bool = False, final: list[str] = (), warm_from: int | None = None,
               backend: str | None = None) -> dict:
    """The search (or, with reuse, the last one of this seed), its anytime curve on the test
    rows, and the final model `search best --register` builds with `final` flags. With
    `warm_from`: a study of its own in that seed's storage, `--warm-start quality-<seed>`."""
    runs = WORK / (f"search-seed{seed if warm_from is None else warm_from}"
                   + (f"-{backend}" if backend else ""))
    study = model = f"quality-{seed}" if warm_from is None else f"quality-{warm_from}-warm-{seed}"
    warm = [] if warm_from is None else ["--warm-start", f"quality-{warm_from}"]
    suffix = "" if warm_from is None else "-warm"
    env = {**os.environ, "SEARCH_WEIGHTS_DIR": str(SHARED / "weights"),
           "TF_CPP_MIN_LOG_LEVEL": "3", **({"KERAS_BACKEND": backend} if backend else {})}
    common = ["--runs-dir", str(runs)]
    cli = [sys.executable, "-m", "search.cli"]
    started = runs / f"started{suffix}.json"
    if not reuse:
        if warm_from is None:
            shutil.rmtree(runs, ignore_errors=True)
            runs.mkdir(parents=True)
        elif not (runs / "optuna.db").exists():
            sys.exit(f"--warm-start-from {warm_from}: run that seed first ({runs} is empty)")
        started.write_text(json.dumps({"at": datetime.datetime.now().isoformat()}))
        start, cpu = time.monotonic(), _children_cpu()
        # every model kept: the curve scores the champion as it stood at each point
        subprocess.run([*cli, "run", "--data", str(search_csv), "--space",
                        str(benchlib.ROOT / "spaces" / "hvc.yaml"), "--study", study,
                        "--seed", str(seed), "--trials", "100000", "--timeout",
                        str(minutes * 60), "--keep-models", "all", "--no-progress", *warm,
                        *common], env=env, check=True, cwd=benchlib.ROOT)
        (runs / f"seconds{suffix}.json").write_text(json.dumps(time.monotonic() - start))
        (runs / f"cpu{suffix}.json").write_text(json.dumps(_children_cpu() - cpu))
    seconds = json.loads((runs / f"seconds{suffix}.json").read_text())
    cpu_seconds = (json.loads((runs / f"cpu{suffix}.json").read_text())
                   if (runs / f"cpu{suffix}.json").exists() else None)
    t0 = datetime.datetime.fromisoformat(json.loads(started.read_text())["at"])
    import optuna

    trials = optuna.load_study(study_name=study,
                               storage=f"sqlite:///{runs / 'optuna.db'}").get_trials()
    states = [t.state.name for t in trials]
    from search.study import trial_record

    ended = {t.number: t.datetime_complete for t in trials}

    def evaluate(uri: str, name: str) -> dict:
        scores = runs / f"test-{name}.json"
        subprocess.run([*cli, "evaluate", "--model", uri, "--data", str(test_csv), "--json",
                        str(scores), "--bootstrap", "200", *common], env=env, check=True,
                       cwd=benchlib.ROOT, stdout=subprocess.DEVNULL)
        heads = json.loads(scores.read_text())["heads"]
        return {"accuracy": {h: heads[h]["accuracy"] for h in HEADS},
                "balanced": {h: heads[h]["balanced_accuracy"] for h in HEADS},
                "majority": {h: heads[h]["majority"] for h in HEADS}}

    curve = []
    complete = [t for t in map(trial_record.read, trials)
                if t.state == "COMPLETE" and t.model_uri]
    for at in [m for m in CURVE_MINUTES if m < minutes] + [minutes]:
        done = [t for t in complete
                if (ended[t.number] - t0).total_seconds() <= at * 60]
        if not done:
            continue
        best = max(done, key=lambda t: t.score)
        scored = evaluate(best.model_uri, f"trial{best.number}")
        curve.append({"minutes": at, "trial": best.number, "val": best.score,
                      "config": _levers(best.config or {}), **scored})
    plain_cmd = [*cli, "best", "--study", study, "--register", model, "--format", "json",
                 *common]
    best_cmd = [*plain_cmd[:-len(common)], *final, *common]
    done = subprocess.run(best_cmd, env=env, cwd=benchlib.ROOT, stdout=subprocess.PIPE,
                          text=True)
    if done.returncode != 0 and final:  # this checkout's `best` lacks the flags: no final
        print(f"search best {' '.join(final)} failed; registering the best trial alone",
              file=sys.stderr)
        final = ()
        done = subprocess.run(plain_cmd, env=env, cwd=benchlib.ROOT, stdout=subprocess.PIPE, text=True)
    done.check_returncode()
    document = json.loads(done.stdout)
    for candidate in (document.get("final") or {}).get("candidates", []):
        if candidate["name"] == "selection" and candidate.get("without_flips", {}).get("test"):
            flips = candidate["without_flips"]["test"]
            selection_flips = {"flips": candidate["flips"], "with": {
                h: candidate["test"][h]["accuracy"] for h in HEADS}, "without": {
                h: flips[h]["accuracy"] for h in HEADS}}
            break
    else:
        selection_flips = None
    candidates = {}
    for alias in ("champion", "best-trial", "refit", "ensemble", "per-head", "selection"):
        try:
            candidates[alias] = evaluate(f"models:/{model}@{alias}", alias)
        except subprocess.CalledProcessError:
            continue  # not built (no such flag, or not registered)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "complete": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"), "failed": states.count("FAIL"),
            "curve": curve, "candidates": candidates, "best": document,
            "selection_flips": selection_flips,
            "final_flags": list(final), **candidates["champion"]}


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far: the search's
    cores in use are its CPU time over its wall time."""
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _levers(config: dict) -> str:
    """The levers issue 17 opened, as a short text: network, size, fine-tuned share."""
    if not config:
        return "?"
    size = "x".join(map(str, config.get("image_size", [])))
    return (f"{config.get('family')}:{config.get('alpha')} {size} "
            f"ft {config.get('fine_tune_fraction')}")


def run_peer(minutes: float, test_csv: Path) -> dict:
    from search.train import metrics

    record, output = WORK / "peer-record.json", WORK / "peer.json"
    wrapper = WORK / "peer_wrapper.py"
    wrapper.write_text(PEER_WRAPPER)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.monotonic()
    subprocess.run([sys.executable, str(wrapper), str(SHARED / "peers" / "plain_optuna.py"),
                    str(record), "--data", str(SHARED / "hvc" / "hvc_annotations.csv"),
                    "--test-last", str(TEST_ROWS), "--minutes", str(minutes), "--json",
                    str(output)], env=env, check=True, cwd=WORK)
    wall = time.monotonic() - start
    result, recorded = json.loads(output.read_text()), json.loads(record.read_text())
    with open(test_csv, newline="") as f:
        truth = list(csv.DictReader(f))
    with open(SHARED / "hvc" / "hvc_annotations.csv", newline="") as f:
        every = list(csv.DictReader(f))
    balanced = {}
    for i, head in enumerate(HEADS):  # the peer's vocabulary: sorted labels of the whole CSV
        vocab = sorted({row[head] for row in every})
        y = [vocab.index(row[head]) for row in truth]
        import numpy as np

        balanced[head] = metrics.balanced_accuracy(np.array(y),
                                                   np.array(recorded["test_predictions"][i]))
    return {"seconds": result["search_seconds"], "wall": wall,
            "complete": recorded["complete"], "pruned": recorded["pruned"],
            "failed": recorded["failed"], "accuracy": result["test_accuracy"],
            "balanced": balanced, "majority": result["test_majority"],
            "best_params": result["best_params"]}


def mean(values: dict) -> float:
    return sum(values.values()) / len(values)


def report(ours: dict, peer: dict, minutes: float, seed: int) -> list[str]:
    trials = {k: v["complete"] + v["pruned"] for k, v in (("ours", ours), ("peer", peer))}
    lines = [
        f"Rows 1-{SEARCH_ROWS} searched, rows {SEARCH_ROWS + 1}-{SEARCH_ROWS + TEST_ROWS} "
        f"tested; budget {minutes:g} min each, one after the other; search --seed {seed}.",
        "",
        "| | search | peer (plain_optuna.py) |",
        "|---|---|---|",
        f"| trials finished (complete + pruned) | {trials['ours']} ({ours['complete']} + "
        f"{ours['pruned']}) | {trials['peer']} ({peer['complete']} + {peer['pruned']}) |",
        f"| failed trials | {ours['failed']} | {peer['failed']} |",
        f"| search seconds | {ours['seconds']:.0f} | {peer['seconds']:.0f} |",
        f"| seconds per finished trial | {ours['seconds'] / max(trials['ours'], 1):.0f} | "
        f"{peer['seconds'] / max(trials['peer'], 1):.0f} |",
        *([f"| cores in use (CPU s / wall s, of {os.cpu_count()}) | "
           f"{ours['cpu_seconds'] / ours['seconds']:.2f} | |"] if ours.get("cpu_seconds") else []),
        "",
        "| head | search acc | search bal | peer acc | peer bal | majority |",
        "|---|---|---|---|---|---|",
        *[f"| {h} | {ours['accuracy'][h]:.3f} | {ours['balanced'][h]:.3f} | "
          f"{peer['accuracy'][h]:.3f} | {peer['balanced'][h]:.3f} | {ours['majority'][h]:.3f} |"
          for h in HEADS],
        f"| **mean** | **{mean(ours['accuracy']):.3f}** | **{mean(ours['balanced']):.3f}** | "
        f"**{mean(peer['accuracy']):.3f}** | **{mean(peer['balanced']):.3f}** | "
        f"{mean(ours['majority']):.3f} |",
        "",
    ]
    below = [h for h in HEADS if ours["accuracy"][h] < ours["majority"][h]]
    targets = [
        ("test mean accuracy >= peer + 0.04",
         mean(ours["accuracy"]) - mean(peer["accuracy"]), 0.04),
        ("mean balanced accuracy >= peer + 0.05",
         mean(ours["balanced"]) - mean(peer["balanced"]), 0.05),
        ("trials >= 5x the peer's", trials["ours"] / max(trials["peer"], 1), 5.0),
    ]
    if ours.get("curve"):
        first = mean(ours["curve"][0]["accuracy"])
        curve = ["", "Anytime curve: the champion as it stood (best validation among the "
                 "trials finished by then), scored on the test rows; then the final model "
                 f"of `search best --register {' '.join(ours['final_flags'])}`.", "",
                 "| minutes | trial | levers | val mean acc | test mean acc | test mean bal "
                 "| vs minute-" f"{ours['curve'][0]['minutes']:g} |", "|---|---|---|---|---|---|---|"]
        for point in ours["curve"]:
            acc = mean(point["accuracy"])
            curve.append(f"| {point['minutes']:g} | #{point['trial']} | {point['config']} | "
                         f"{point['val']:.4f} | {acc:.3f} | {mean(point['balanced']):.3f} | "
                         f"{acc - first:+.3f} |")
        for alias, scored in ours["candidates"].items():
            acc = mean(scored["accuracy"])
            curve.append(f"| final: {alias} | | "
                         f"| | {acc:.3f} | {mean(scored['balanced']):.3f} | "
                         f"{acc - first:+.3f} |")
        if "selection" in ours["candidates"] and ours["candidates"].get("best-trial"):
            pick, one = ours["candidates"]["selection"], ours["candidates"]["best-trial"]
            curve += ["", "Per head, selection vs the best trial alone (test accuracy):", "",
                      "| head | best trial | selection | gain | majority |",
                      "|---|---|---|---|---|",
                      *[f"| {h} | {one['accuracy'][h]:.3f} | {pick['accuracy'][h]:.3f} | "
                        f"{pick['accuracy'][h] - one['accuracy'][h]:+.3f} | "
                        f"{one['majority'][h]:.3f} |" for h in HEADS]]
        flips = ours.get("selection_flips")
        if flips:
            curve += ["", f"Test-time flips in the selection (chosen on validation rows for: "
                      f"{', '.join(flips['flips']) or 'no head'}), test accuracy:", "",
                      "| head | without flips | with flips | gain |", "|---|---|---|---|",
                      *[f"| {h} | {flips['without'][h]:.3f} | {flips['with'][h]:.3f} | "
                        f"{flips['with'][h] - flips['without'][h]:+.3f} |" for h in HEADS]]
        lines += curve + [""]
        gain = mean(ours["accuracy"]) - first
        targets.append((f"final champion >= the minute-{ours['curve'][0]['minutes']:g} one "
                        f"+ 0.02", gain, 0.02))
        targets.append(("test mean accuracy >= 0.67", mean(ours["accuracy"]), 0.67))
        scored = ours["candidates"]
        if "selection" in scored and "best-trial" in scored:
            targets.append(("selection >= best trial + 0.005 (test mean accuracy)",
                            mean(scored["selection"]["accuracy"])
                            - mean(scored["best-trial"]["accuracy"]), 0.005))
        targets.append(("mean balanced accuracy >= 0.50", mean(ours["balanced"]), 0.50))
        targets.append(("test mean accuracy >= peer + 0.06",
                        mean(ours["accuracy"]) - mean(peer["accuracy"]), 0.06))
    lines.append("Targets:")
    for name, got, want in targets:
        ratio = name.startswith("trials")
        shown = f"{got:.2f}x" if ratio else f"{got:+.3f}" if "+" in name else f"{got:.3f}"
        verdict = "met" if got >= want else f"missed by {want - got:.{2 if ratio else 3}f}"
        lines.append(f"- {name}: {shown} (want {want:g}{'x' if ratio else ''}): {verdict}")
    lines.append("- every head at or above its majority baseline: "
                 + ("met" if not below else f"missed on {', '.join(below)}"))
    lines.append(f"- peer's best params: `{json.dumps(peer['best_params'])}`")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20, help="search budget each side")
    parser.add_argument("--seed", type=int, default=0, help="search's --seed")
    parser.add_argument("--reuse-peer", action="store_true",
                        help="the peer's figures from the last run with the same --minutes")
    parser.add_argument("--reuse-search", action="store_true",
                        help="the last search of this seed again: only the curve and final model")
    parser.add_argument("--final", default="--refit --ensemble 5",
                        help="flags of `search best --register` for the final model "
                             "(default: %(default)s)")
    parser.add_argument("--peer-minutes", type=float, help="the peer's budget (default: --minutes)")
    parser.add_argument("--warm-start-from", type=int, metavar="SEED",
                        help="a study of its own in SEED's storage, started with --warm-start "
                             "from that seed's study (issue 30: 20 warm minutes vs 45 cold)")
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                        help="the Keras backend of the search (KERAS_BACKEND; its own runs "
                             "folder): issue 28 compares JAX with TensorFlow on one seed")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    for needed in (SHARED / "hvc" / "hvc_annotations.csv", SHARED / "weights",
                   SHARED / "peers" / "plain_optuna.py"):
        if not needed.exists():
            sys.exit(f"skipped: {needed} is not present")
    WORK.mkdir(parents=True, exist_ok=True)
    search_csv, test_csv = split_data()
    ours = run_search(args.minutes, args.seed, search_csv, test_csv, reuse=args.reuse_search,
                      final=args.final.split(), warm_from=args.warm_start_from,
                      backend=args.backend)
    peer_minutes = args.peer_minutes or args.minutes
    saved = WORK / "peer-result.json"
    previous = json.loads(saved.read_text()) if saved.exists() else {}
    if args.reuse_peer and previous.get("minutes") == peer_minutes:
        peer = previous["peer"]
    else:
        peer = run_peer(peer_minutes, test_csv)
        saved.write_text(json.dumps({"minutes": peer_minutes, "peer": peer}))
    warm = ("" if args.warm_start_from is None
            else f", warm-started from seed {args.warm_start_from}'s study") + (
        f", Keras on {args.backend}" if args.backend else "")
    benchlib.record(f"quality: search vs plain Optuna, {args.minutes:g} min each, seed "
                    f"{args.seed}{warm}", report(ours, peer, args.minutes, args.seed),
                    enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
