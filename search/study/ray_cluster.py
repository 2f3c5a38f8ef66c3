"""Where a Ray cluster is, as `search run --ray` checks it before anything is written: the
host an address names, whether it is this machine, state that other nodes cannot share, a
quick reachability check, and whether one trial's CPUs and GPUs fit on one node."""

from __future__ import annotations

import socket

from search.errors import UsageError
from search.settings import mask

LOCAL = "local"  # --ray without an address: a Ray instance on this machine for this run
SHARED = ("use PostgreSQL for the study (SEARCH_STORAGE or --storage postgresql+psycopg2://USER"
          "@DBHOST/DB) and an MLflow tracking server (MLFLOW_TRACKING_URI or --tracking-uri "
          "http://MLFLOWHOST:5000); see docs/cluster.md")


def address_host(address: str) -> str | None:
    """The host an address names ('ray://h:10001', 'h:6379'); None for 'local' and 'auto'."""
    if address in (LOCAL, "auto"):
        return None
    rest = address.removeprefix("ray://")
    return rest.rsplit(":", 1)[0].strip("[]") if ":" in rest else rest


def is_this_machine(host: str) -> bool:
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        return False
    return ip.startswith("127.") or ip in _local_ips()


def _local_ips() -> set[str]:
    ips = {"127.0.0.1"}
    try:
        ips.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    try:  # the address this machine reaches others from (no packet is sent)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            ips.add(probe.getsockname()[0])
    except OSError:
        pass
    return ips


def local_state(settings) -> list[str]:
    """The parts of the state that are files on this machine (SQLite, journal, file store)."""
    found = []
    if settings.storage.startswith(("sqlite", "journal:")):
        found.append(f"the study storage {mask(settings.storage)}")
    uri = settings.tracking_uri
    if uri.startswith(("sqlite", "file:")) or "://" not in uri:
        found.append(f"the MLflow store {mask(uri)}")
    return found


def refuse_local_state(address: str, settings, nodes: str = "") -> None:
    found = local_state(settings)
    if found:
        raise UsageError(f"--ray {address}{nodes}: {' and '.join(found)} "
                         f"{'is a file' if len(found) == 1 else 'are files'} on this machine, "
                         f"which other nodes cannot share: {SHARED}")




def check_fits(nodes: list[dict], cpus: float, gpus: float) -> None:
    """One trial's CPUs and GPUs must fit on one node (`ray.nodes()`), both at once: Ray would
    otherwise hold the workers as pending for ever, after the study was written."""
    for flag, key, asked in (("--cpus-per-trial", "CPU", cpus), ("--gpus-per-trial", "GPU", gpus)):
        most = max(nodes, key=lambda n: n["Resources"].get(key, 0), default=None)
        has = most["Resources"].get(key, 0) if most else 0
        if asked > has:
            where = f" (on {most['NodeManagerAddress']})" if most and has else ""
            raise UsageError(f"{flag} {asked:g}: no node of the Ray cluster has that many "
                             f"{key}s; the most a node has is {has:g}{where}")
    if not any(n["Resources"].get("CPU", 0) >= cpus and n["Resources"].get("GPU", 0) >= gpus
               for n in nodes):
        has = [f"{n['NodeManagerAddress']} {n['Resources'].get('CPU', 0):g} CPU/"
               f"{n['Resources'].get('GPU', 0):g} GPU" for n in nodes]
        more = f" and {len(has) - 4} more" if len(has) > 4 else ""
        raise UsageError(f"--cpus-per-trial {cpus:g} --gpus-per-trial {gpus:g}: no node of the "
                         f"Ray cluster has both at once (nodes: {', '.join(has[:4])}{more})")


def reachable(address: str, host: str) -> None:
    """A quick TCP check, so that a wrong address is one line now, not Ray's long retries."""
    rest = address.removeprefix("ray://")
    port = int(rest.rsplit(":", 1)[1]) if ":" in rest else (10001 if rest != address else 6379)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise UsageError(f"--ray {address}: nothing answers at {host}:{port} "
                         f"({exc.strerror or exc}); check that `ray start --head` runs there "
                         f"(`ray status`) and the address (auto, HOST:6379, ray://HOST:10001)"
                         ) from None
