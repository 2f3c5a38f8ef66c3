"""Arrays the harness writes once and reads back many times, never trusted unchecked.

Every cache under runs/cache (decoded images, frozen-backbone features, cached activations)
goes through `load_or_build(path, key, build)`:

- `path` is an .npy file; beside it a JSON sidecar (same stem, .json) holds the key, the
  shape, dtype and file size, and the SHA-256 of the array.
- Read back, the file is checked: its .npy header must be readable and its size the one the
  header implies (a truncated file says how much is missing), the sidecar must be there and
  hold this key, shape and dtype, and the array's SHA-256 must match. A file that fails is
  rebuilt, with one line naming the file and why (`rebuilding runs/cache/images-ab12.npy:
  truncated (2.1 MB of 4.2 MB)`).
- Writes are atomic: array and sidecar go to temp files `<stem>.<pid>.tmp.npy|json` and are
  renamed into place, the sidecar last, so a reader never pairs a sidecar with a partial or
  older array. A failed write (disk full) removes its temp files and leaves no final-named
  file behind; the built array is still returned, so the trial goes on from memory.
- A lock file (`<stem>.lock`, flock) makes concurrent processes wait for one build. The
  builder, holding the lock, removes temp files that killed processes left behind: those of
  its own file, and of any other file whose lock it can take at once, when the pid in the
  name is no longer running.

Why a full SHA-256 and not size + header + sampled blocks: hashing 1 GiB takes 0.73 s on this
machine's CPU (1.07 s including reading it through the page cache), and every reader then
reads the whole array anyway (the images become one tensor, the features are all drawn). The
check is memoised per process on the file's (inode, size, mtime), so a process rereading the
same cache pays it once; a 3 GiB feature cache (features.MAX_BYTES) costs ~2 s per process,
against minutes to rebuild it. A sampled hash would miss a same-size change between samples;
the size check alone already names truncation, the common case.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

_TEMP = re.compile(r"^(?P<stem>.+)\.(?P<pid>\d+)\.tmp\.(npy|json)$")
_CHECKED: dict[tuple, str] = {}  # (path, dev, inode, size, mtime) → digest, this process


def load_or_build(path, key, build: Callable[[], np.ndarray], *,
                  say: Callable[[str], None] | None = None) -> tuple[np.ndarray, float]:
    """(array, seconds spent building it: 0 when read from disk) for `key` at `path`.

    A valid file is read (memory-mapped, read-only); otherwise `build()` runs in one process
    while the others wait on the lock, and its result is written for the next reader.
    """
    path = Path(path)
    array, _ = check(path, key)
    if array is not None:
        return array, 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.with_suffix(".lock")):
        array, why = check(path, key)  # another process may have built it meanwhile
        if array is not None:
            return array, 0.0
        remove_stale_temps(path.parent, holding=path.stem)
        if why:
            (say or _say)(f"rebuilding {_shown(path)}: {why}")
        start = time.perf_counter()
        array = build()
        seconds = time.perf_counter() - start
        try:
            write(path, array, key)
        except OSError as exc:
            (say or _say)(f"cannot write {_shown(path)} ({_why_not_written(exc, path, array)}); "
                          f"using it from memory, it is built again next time")
        return array, seconds


def check(path, key) -> tuple[np.ndarray | None, str | None]:
    """(the array, None) if the file at path is whole, unchanged and this key's; else (None,
    why it is not), why None when there is no file at all."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.exists():
        return None, ("its sidecar is there but the array is missing"
                      if meta_path.exists() else None)
    try:
        stat = path.stat()
        with open(path, "rb") as f:
            shape, dtype = _header(f)
            offset = f.tell()
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        return None, f"unreadable .npy header ({type(exc).__name__})"
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if stat.st_size < expected:
        return None, f"truncated ({_mb(stat.st_size)} of {_mb(expected)})"
    if stat.st_size > expected:
        return None, f"{_mb(stat.st_size)} where its header says {_mb(expected)}"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None, "no readable checksum sidecar (interrupted write or older version)"
    if meta.get("key") != _plain(key):
        return None, "written for another key"
    if list(shape) != meta.get("shape") or str(dtype) != meta.get("dtype"):
        return None, "its shape or dtype differs from its sidecar's"
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        return None, f"unreadable ({exc})"
    memo = (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if memo not in _CHECKED:
        _CHECKED[memo] = digest(array)
    if _CHECKED[memo] != meta.get("sha256"):
        del _CHECKED[memo]
        return None, "checksum mismatch (changed on disk)"
    return array, None


def read(path, key) -> np.ndarray | None:
    """The array at path if it passes `check`, else None."""
    return check(path, key)[0]


def write(path, array: np.ndarray, key) -> None:
    """Array and sidecar to temp files, then renamed into place, the sidecar last. On any
    error the temp files are removed and the exception raised: nothing half-written stays
    under a name a reader would look at."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    tmp_meta = path.with_name(f"{path.stem}.{os.getpid()}.tmp.json")
    try:
        np.save(tmp, array)
        meta = {"key": _plain(key), "shape": list(array.shape), "dtype": str(array.dtype),
                "bytes": tmp.stat().st_size, "sha256": digest(array)}
        tmp_meta.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, path)
        os.replace(tmp_meta, path.with_suffix(".json"))
    except BaseException:
        for leftover in (tmp, tmp_meta):
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise


def _why_not_written(exc: OSError, path: Path, array: np.ndarray) -> str:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if exc.errno == errno.ENOSPC or (free is not None and free < array.nbytes):
        return f"No space left on device: {_mb(array.nbytes)} needed" + (
            f", {_mb(free)} free" if free is not None else "")
    return exc.strerror or str(exc)


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


@contextlib.contextmanager
def locked(path):
    """An exclusive lock on path: other processes wait here while one builds."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_temps(folder, holding: str | None = None) -> list[Path]:
    """Remove `<stem>.<pid>.tmp.npy|json` files in folder whose writer (pid) is gone, for the
    stem whose lock the caller holds (`holding`) and for any other stem whose lock is free
    now; returns what was removed."""
    removed = []
    for temp in sorted(Path(folder).glob("*.tmp.*")):
        match = _TEMP.match(temp.name)
        if not match or alive(int(match["pid"])):
            continue
        stem = match["stem"]
        with contextlib.ExitStack() as stack:
            if stem != holding and not stack.enter_context(_try_lock(temp.with_name(
                    f"{stem}.lock"))):
                continue  # someone is building that file: leave its folder alone
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
                removed.append(temp)
    return removed


@contextlib.contextmanager
def _try_lock(path: Path):
    try:
        handle = open(path, "a")
    except OSError:
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alive(pid: int) -> bool:
    """Whether process pid runs on this host (the writer of a temp file named after it)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _header(f) -> tuple[tuple, np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
    if reader is None:
        raise ValueError(f".npy format {version}")
    shape, _fortran, dtype = reader(f)
    return shape, dtype


def _plain(key):
    """The key as JSON gives it back (tuples become lists), so equality survives the disk."""
    return json.loads(json.dumps(key, sort_keys=True))


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _say(line: str) -> None:
    """One line on stderr, above the progress bar if one is showing."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        print(line, file=sys.stderr, flush=True)
    else:
        tqdm.write(line, file=sys.stderr)
