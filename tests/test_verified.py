"""The one verified-file mechanism every cache uses: a damaged, foreign or half-written file is
rebuilt with one line saying why, one process builds while others wait, killed processes'
temp files are swept, and a full disk leaves nothing a reader would accept."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from search.data import verified

from conftest import ROOT

KEY = {"kind": "test", "size": [4, 4]}


class Builder:
    def __init__(self, seed: int = 0):
        self.calls = 0
        self.seed = seed

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return np.random.default_rng(self.seed).integers(0, 255, (64, 40, 40, 3), np.uint8)


def _load(path, build, lines):
    return verified.load_or_build(path, KEY, build, say=lines.append)


def test_built_once_then_read_back(tmp_path):
    build, lines = Builder(), []
    first, built = _load(tmp_path / "a.npy", build, lines)
    again, read = _load(tmp_path / "a.npy", build, lines)
    assert build.calls == 1 and built > 0 and read == 0 and lines == []
    np.testing.assert_array_equal(first, again)
    meta = json.loads((tmp_path / "a.json").read_text())
    assert meta["key"] == KEY and meta["bytes"] == (tmp_path / "a.npy").stat().st_size


def test_a_truncated_file_is_rebuilt_with_one_line(tmp_path):
    path, build, lines = tmp_path / "a.npy", Builder(), []
    good, _ = _load(path, build, lines)
    size = path.stat().st_size
    os.truncate(path, size // 2)  # a full disk or an interrupted copy
    rebuilt, seconds = _load(path, build, lines)
    assert build.calls == 2 and seconds > 0
    np.testing.assert_array_equal(rebuilt, good)
    assert lines == [f"rebuilding {path}: truncated ({size // 2 / 1e6:.1f} MB of "
                     f"{size / 1e6:.1f} MB)"]
    assert verified.read(path, KEY) is not None and path.stat().st_size == size


@pytest.mark.parametrize("damage, why", [
    ("key", "written for another key"),
    ("bytes", "checksum mismatch"),
    ("sidecar", "no readable checksum sidecar"),
    ("header", "unreadable .npy header"),
    ("longer", "where its header says"),
])
def test_a_foreign_altered_or_unpaired_file_is_rebuilt(tmp_path, damage, why):
    path, lines = tmp_path / "a.npy", []
    _load(path, Builder(), lines)
    if damage == "key":
        verified.write(path, Builder(1)(), {**KEY, "size": [8, 8]})
    elif damage == "bytes":  # same size, one byte changed: only the digest tells
        with open(path, "r+b") as f:
            f.seek(-1, 2)
            last = f.read(1)
            f.seek(-1, 2)
            f.write(bytes([last[0] ^ 1]))
    elif damage == "sidecar":  # killed between the two renames
        path.with_suffix(".json").unlink()
    elif damage == "header":
        path.write_bytes(b"garbage" * 10)
    else:
        with open(path, "ab") as f:
            f.write(b"\0" * 16)
    build = Builder()
    array, _ = _load(path, build, lines)
    assert build.calls == 1 and len(lines) == 1 and why in lines[0] and str(path) in lines[0]
    np.testing.assert_array_equal(array, Builder()())


@pytest.mark.e2e
def test_concurrent_processes_build_it_once(tmp_path):
    """Three real processes ask at once: one builds (slowly), the others wait and read."""
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from search.data import verified
        def build():
            with open({str(tmp_path / "builds")!r}, "a") as f:
                f.write("x")
            time.sleep(2)
            return np.arange(1000, dtype=np.int32)
        array, seconds = verified.load_or_build({str(tmp_path / "c.npy")!r}, {KEY!r}, build)
        print(int(array.sum()), seconds > 0)
        """)
    runs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True) for _ in range(3)]
    out = [p.communicate(timeout=120)[0].split() for p in runs]
    assert (tmp_path / "builds").read_text() == "x"
    assert sorted(built for _, built in out) == ["False", "False", "True"]
    assert {total for total, _ in out} == {str(sum(range(1000)))}
    assert not list(tmp_path.glob("*.tmp.*"))


@pytest.mark.e2e
def test_killed_processes_temp_files_are_swept_by_the_next_build(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        stale = [tmp_path / f"a.{dead.pid}.tmp.npy", tmp_path / f"a.{dead.pid}.tmp.json",
                 tmp_path / f"other.{dead.pid}.tmp.npy"]
        kept = [tmp_path / f"a.{alive.pid}.tmp.npy",  # its writer still runs
                tmp_path / f"busy.{dead.pid}.tmp.npy"]  # its lock is held: being rebuilt
        for path in stale + kept:
            path.write_bytes(b"partial")
        holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, sys, time
            handle = open({str(tmp_path / "busy.lock")!r}, "a")
            fcntl.flock(handle, fcntl.LOCK_EX)
            print("locked", flush=True)
            time.sleep(60)
            """)], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
        _load(tmp_path / "a.npy", Builder(), [])
        holder.kill()
        holder.wait()
        assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)
    finally:
        alive.kill()
        alive.wait()


def _partial_save(real_save):
    """np.save that writes half the file, then fails as a full disk does."""
    def save(file, array, *args, **kwargs):
        real_save(file, array, *args, **kwargs)
        os.truncate(file, os.path.getsize(file) // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
    return save


def _small_disk(tmp_path):
    """A 1 MB tmpfs (root on Linux, as in CI), or None where it cannot be mounted."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
            capture_output=True).returncode != 0:
        return None
    return folder


@pytest.mark.parametrize("how", ["tmpfs", "simulated"])
def test_a_full_disk_leaves_nothing_trusted_and_the_next_call_rebuilds(tmp_path, monkeypatch,
                                                                       how):
    """The array (2 MB) does not fit: the caller still gets it, with one line; no final-named
    file or temp file is left, and the next call builds again."""
    folder = _small_disk(tmp_path) if how == "tmpfs" else tmp_path
    if folder is None:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        if how == "simulated":
            monkeypatch.setattr(np, "save", _partial_save(np.save))
        build = Builder()
        big = lambda: np.repeat(build(), 8, axis=0)  # noqa: E731  64*8*40*40*3 = 2.5 MB
        lines = []
        array, _ = verified.load_or_build(folder / "a.npy", KEY, big, say=lines.append)
        assert array.shape == (512, 40, 40, 3)
        assert len(lines) == 1 and lines[0].startswith(f"cannot write {folder / 'a.npy'} (")
        assert "No space left on device" in lines[0]
        assert sorted(p.name for p in folder.iterdir()) == ["a.lock"]
        assert verified.read(folder / "a.npy", KEY) is None
        monkeypatch.undo()
        if how == "simulated":  # space again: built once more, then trusted
            verified.load_or_build(folder / "a.npy", KEY, big, say=lines.append)
            assert build.calls == 2 and verified.read(folder / "a.npy", KEY) is not None
    finally:
        if how == "tmpfs":
            subprocess.run(["umount", str(folder)], check=True)


def test_a_failed_sidecar_write_leaves_no_array_either(tmp_path, monkeypatch):
    from pathlib import Path

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    lines = []
    verified.load_or_build(tmp_path / "a.npy", KEY, Builder(), say=lines.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.lock"] and len(lines) == 1


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_damaged_pulled_model_is_one_clear_line(tmp_path, damage):
    """A pulled folder without labels.json, or with model.keras cut short, is a UsageError
    (one line, exit 2) before Keras opens the zip."""
    import zipfile

    from search.errors import UsageError
    from search.track import registry

    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:  # a .keras file is a zip
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", os.urandom(200_000))
    if damage == "missing":
        expected = "has no labels.json"
    else:
        (tmp_path / "labels.json").write_text('{"age": ["a", "b"]}')
        os.truncate(tmp_path / "model.keras", 100_000)
        expected = "model.keras or labels.json is damaged or cut short"
    with pytest.raises(UsageError, match=expected):
        registry.load_folder(tmp_path)
