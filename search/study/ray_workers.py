"""Search workers as Ray tasks: `search run --ray [ADDRESS] --workers K`.

Why a module of its own: on a Ray cluster Ray, not this process, starts the workers: it places
each on a node with the resources one trial needs (--cpus-per-trial, --gpus-per-trial; 0.5
packs two trials on a GPU), sets its visible GPUs, and restarts one lost with its node or
killed (RESTARTS times at most). `RayPool` is the Ray side of the one worker interface of
the engine's worker pool (launch, where, close); each task runs the same target as a process worker
(the loop of `search worker`: same study, heartbeat and MLflow parent run), so a dead worker's
trial is failed by the heartbeat and retried as without Ray, and a study started with --ray
resumes with or without it. Ray is an optional extra, imported here only and lazily, so
`search.cli` stays free of it.

No code is shipped: every node must have `search` installed (same venv or image) and see the
CSV and images at the same path; a worker that cannot read them stops with the node's address
and the path. Settings and options travel by value through Ray's object store (never a command
line; messages mask passwords). Several nodes need shared state: SQLite or a local-file MLflow
store with a cluster beyond this machine is refused before anything is written. The feature
and image caches stay per node, under the runs dir's path on that node.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from search import console
from search.errors import UsageError
from search.settings import mask
from search.study import ray_cluster, workers
from search.study.ray_cluster import LOCAL

RESTARTS = 3  # Ray restarts a lost worker this many times (task max_retries)
CANCEL_WAIT_S = 60  # after Ctrl-C, how long workers get to mark their trial FAIL
NODE_ID_DIGITS = 8  # of a Ray node id, in what the workers and the summary print
LOG_FLUSH_S = 1.5  # after the workers end, before the summary (Ray polls their log files)
# Ray's connect attempts (a second each) when RAY_AUTH_MODE is unset: a cluster that wants a
# token refuses every one, and Ray's default is 20 (RAY_gcs_server_port_wait_time_s sets it).
UNAUTHENTICATED_TRIES = 3
# Passed to the workers of a cluster (a local instance inherits this environment); no
# storage or tracking URL here: those travel in the settings, by value.
ENV = ("SEARCH_HEARTBEAT_INTERVAL", "SEARCH_HEARTBEAT_GRACE", "SEARCH_WEIGHTS_DIR",
       "TF_CPP_MIN_LOG_LEVEL", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "KERAS_BACKEND",
       "XLA_PYTHON_CLIENT_PREALLOCATE")
INSTALL = ("--ray needs Ray, which is not installed here: pip install -e '.[ray]' (or pip "
           "install 'ray>=2.40,<3'), on this machine and on every node of the cluster")
def import_ray():
    """The ray module, or the one line that says how to install it."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # workers' trial lines differ by numbers only
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL) from None
    return ray


def check_options(options, settings) -> None:
    """The --ray flags, refused before anything is read, written or connected."""
    if options.ray is None:
        if options.gpus_per_trial is not None:
            raise UsageError("--gpus-per-trial asks Ray for each worker's GPUs: add --ray, or "
                             "use --gpus 0,1 for one worker process per GPU")
        return
    if options.gpus:
        raise UsageError("--gpus picks GPUs for worker processes; with --ray, Ray places the "
                         "workers: use --gpus-per-trial G instead")
    if options.isolate:
        raise UsageError("--isolate starts a process per trial; with --ray, Ray places the "
                         "workers: drop --isolate")
    gpus = options.gpus_per_trial
    if gpus is not None and (gpus <= 0 or (gpus > 1 and gpus != int(gpus))):
        raise UsageError(f"--gpus-per-trial must be above 0, and a whole number above 1 "
                         f"(Ray packs fractions on one GPU only), got {gpus:g}")
    if options.cpus_per_trial <= 0:
        raise UsageError(f"--cpus-per-trial must be above 0, got {options.cpus_per_trial:g}")
    host = ray_cluster.address_host(options.ray)
    if host is not None and not ray_cluster.is_this_machine(host):
        ray_cluster.refuse_local_state(options.ray, settings)
    import_ray()


class RayPool:
    """K search workers as Ray tasks (see the module docstring). Connects (or starts a local
    instance) and checks the cluster when made (its flags were checked by `check_options`, in
    `search.engines.create`); `close` disconnects (and stops a local one)."""

    def __init__(self, options, settings):
        self.address, self.options, self.settings = options.ray, options, settings
        self.ran: list[str] = []
        self.ray = import_ray()
        self.ray_connect()
        try:
            self.check_cluster()
        except BaseException:
            self.close()
            raise

    def ray_connect(self) -> None:
        import logging

        ray, address = self.ray, self.address
        if address == LOCAL:
            # Ray 2.x turns a loopback node address into this machine's own (services.
            # resolve_ip_for_localhost), so the instance is reachable only with its token.
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                     log_to_driver=True, logging_level=logging.WARNING, namespace="search")
            return
        host = ray_cluster.address_host(address)
        if host is not None:
            ray_cluster.reachable(address, host)
        token = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
        retries = {} if token or "RAY_gcs_server_port_wait_time_s" in os.environ else \
            {"RAY_gcs_server_port_wait_time_s": str(UNAUTHENTICATED_TRIES)}
        with console.captured_stderr() as chatter, _environment(retries):  # Ray's C++ logs
            try:
                ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING,
                         namespace="search")
                failed = None
            except Exception as exc:
                failed = " ".join((str(exc).strip().splitlines() or [type(exc).__name__])[0]
                                  .split())
        said = "".join(chatter)  # a line a second for each refused try, say
        if failed is None:
            sys.stderr.write(said)
            return
        if "InvalidAuthToken" in said and not token:
            raise UsageError(f"--ray {address}: the Ray cluster requires token authentication: "
                             f"export RAY_AUTH_MODE=token here, with the cluster's token "
                             f"(RAY_AUTH_TOKEN, or the file ~/.ray/auth_token); see "
                             f"docs/cluster.md")
        if "InvalidAuthToken" in said:
            raise UsageError(f"--ray {address}: the Ray cluster refused this machine's token: "
                             f"set RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the token its "
                             f"nodes were started with")
        raise UsageError(f"--ray {address}: cannot connect to the Ray cluster: {failed}; "
                         f"check that `ray start --head` runs there (`ray status`) and the "
                         f"address (auto, HOST:6379, ray://HOST:10001)")

    def check_cluster(self) -> None:
        """Local state only on a cluster of this machine; one trial must fit on some node."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        foreign = sorted({n["NodeManagerAddress"] for n in nodes
                          if not ray_cluster.is_this_machine(n["NodeManagerAddress"])})
        if foreign:
            ray_cluster.refuse_local_state(self.address, self.settings,
                               f" (nodes beyond this machine: {', '.join(foreign)})")
        ray_cluster.check_fits(nodes, self.options.cpus_per_trial, self.options.gpus_per_trial or 0)
        total = {k: sum(n["Resources"].get(k, 0) for n in nodes) for k in ("CPU", "GPU")}
        what = "a Ray instance started on this machine" if self.address == LOCAL else \
            f"the Ray cluster at {self.address}"
        print(f"Ray: {what}: {len(nodes)} node(s), {total['CPU']:g} CPUs, {total['GPU']:g} "
              f"GPUs", flush=True)

    def launch(self, target, args: tuple) -> list[int]:
        ray, opts = self.ray, self.options
        gpus = opts.gpus_per_trial or 0
        env = {k: os.environ[k] for k in ENV if k in os.environ}
        remote = ray.remote(  # max_calls=1: the process exits after, freeing its GPU memory
            num_cpus=opts.cpus_per_trial, num_gpus=gpus, max_retries=RESTARTS,
            retry_exceptions=False, max_calls=1, scheduling_strategy="SPREAD",
            **({} if self.address == LOCAL or not env else {"runtime_env": {"env_vars": env}})
        )(_search_worker)
        ask = f"{opts.cpus_per_trial:g} CPU" + (f", {gpus:g} GPU" if gpus else "")
        print(f"{opts.workers} Ray worker task(s), each asking for {ask}; a lost one is "
              f"restarted up to {RESTARTS} times", flush=True)
        refs = [remote.options(name=f"search-worker-{n}").remote(target, args, n, gpus)
                for n in range(1, opts.workers + 1)]
        try:
            results = [self._result(n, ref) for n, ref in enumerate(refs, start=1)]
        except KeyboardInterrupt:
            for ref in refs:  # KeyboardInterrupt inside each: its trial is marked FAIL
                ray.cancel(ref)
            _, stuck = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
            for ref in stuck:  # only those still running: once here, force-cancelling all
                ray.cancel(ref, force=True)  # aborted Ray 2.60's driver ("task not pending")
            raise
        time.sleep(LOG_FLUSH_S)  # Ray's log monitor prints the workers' last lines first
        ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        self.ran = [workers.place(node_place(ips.get(r["node"], "?"), r["node"]), r["gpus"])
                    for r in results if "node" in r]
        return [r["code"] for r in results]

    def _result(self, number: int, ref) -> dict:
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.TaskCancelledError:
            return {"code": 130}
        except self.ray.exceptions.RayError as exc:
            text = " ".join((str(exc).strip().splitlines() or [type(exc).__name__])[0].split())
            print(f"worker {number} was lost: {mask(text)}", file=sys.stderr)
            return {"code": workers.LOST}
        if result.get("error"):
            print(f"worker {number}: error: {result['error']}", file=sys.stderr)
        return result

    def where(self) -> str:
        return workers.ran_on(self.ran)

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()


@contextlib.contextmanager
def _environment(values: dict):
    """These environment variables for the block only."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _search_worker(target, args: tuple, number: int, gpus: float) -> dict:
    """One Ray task: the target (a `search worker` loop) with Ray's GPUs; where it ran and its
    exit code. A data or usage error comes back with this node's address."""
    import ray

    sys.stdout.reconfigure(line_buffering=True)
    ids = [str(g) for g in ray.get_gpu_ids()]
    device = gpu_environment(gpus)
    node = ray.get_runtime_context().get_node_id()  # the driver maps it to the node's address
    os.environ[workers.RAY_NODE_ENV] = node  # on its trials: a pid is checked on its own node only
    where = {"node": node, "gpus": ids}
    print(f"worker {number}: pid {os.getpid()} on "
          f"{workers.place(node_place(_node_ip(node), node), ids)}: {device}", flush=True)
    console.quiet()
    try:
        code = target(*args)
    except UsageError as exc:
        return {**where, "code": 2, "error": f"on node {_node_ip(node)}: {mask(str(exc))}"}
    except KeyboardInterrupt:  # cancelled before the worker was ready
        code = 130
    return {**where, "code": code}


def gpu_environment(gpus: float) -> str:
    """Set this worker's GPU environment before TensorFlow is imported (it reads both when it
    first touches a device): a CPU worker sees no GPU, also on a GPU node; a GPU worker keeps
    the CUDA_VISIBLE_DEVICES Ray set and grows its memory (TF_FORCE_GPU_ALLOW_GROWTH; also
    search.train.device), so that trials sharing a GPU do not each grab it all. What it set,
    as one phrase for the worker's first line: on a machine without a GPU the only proof."""
    if not gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    else:
        os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX's likewise
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    growth = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "unset")
    when = "after" if "tensorflow" in sys.modules else "before"
    return (f"CUDA_VISIBLE_DEVICES={'unset' if visible is None else repr(visible)}, "
            f"TF_FORCE_GPU_ALLOW_GROWTH={growth}, set {when} TensorFlow was imported")


def node_place(address: str, node_id: str) -> str:
    """'10.0.0.5/71849e7d': a node's address and the start of its Ray node id (`ray status`
    lists node_<id>), which tells apart nodes that share one host."""
    return f"{address}/{node_id[:NODE_ID_DIGITS]}"


def _node_ip(node_id: str) -> str:
    """The address the cluster knows this node by (Ray's own guess may be another interface)."""
    import ray

    return next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id),
                ray.util.get_node_ip_address())
