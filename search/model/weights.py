"""Where ImageNet weights come from: a local Keras weight file, or a download.

`imagenet` first looks for the standard Keras file of a family (any of its published input
sizes: the files load at any size) in the folders of $SEARCH_WEIGHTS_DIR (colon-separated)
and in Keras' cache (~/.keras/models), and only then lets Keras download it. `available`
answers, without TensorFlow, whether a study can have them at all here, so a search that
cannot (offline, nothing local) schedules no trial that could only fail or train a
"pretrained" network from random weights.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from search.errors import ConfigError
from search.space.families import FAMILIES

DOWNLOAD_HOST = ("storage.googleapis.com", 443)  # where keras.applications downloads from


def files(family: str, alpha: float) -> list[str]:
    """The Keras no-top weight file names of a family (and width), largest input first."""
    known = FAMILIES.get(family)
    return known.weight_files(alpha) if known else []


def folders() -> list[Path]:
    found = [Path(d) for d in os.environ.get("SEARCH_WEIGHTS_DIR", "").split(os.pathsep) if d]
    keras_home = os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras"))
    return [*found, Path(keras_home) / "models"]


def local(family: str, alpha: float) -> str | None:
    """A local weight file for the family and width, if there is one."""
    for folder in folders():
        for name in files(family, alpha):
            if (folder / name).is_file():
                return str(folder / name)
    return None


def resolve(weights: str, family: str, alpha: float) -> str | None:
    """'imagenet'/'auto' → a local weight file if one is found, else 'imagenet' (Keras
    downloads; for 'auto' a failed download falls back to random init, logged as such);
    'none' → None; anything else is a file path that must exist."""
    if weights in ("none", "", None):
        return None
    if weights not in ("imagenet", "auto"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"weights file {path} does not exist (use imagenet, none, or a "
                              f"path to a *_no_top.h5 file)")
        return str(path)
    return local(family, alpha) or "imagenet"


_REACHABLE: list[bool] = []


def downloadable() -> bool:
    """Whether Keras could download weights from here (one quick connection, remembered)."""
    if not _REACHABLE:
        try:
            socket.create_connection(DOWNLOAD_HOST, timeout=3).close()
            _REACHABLE.append(True)
        except OSError:
            _REACHABLE.append(False)
    return _REACHABLE[0]


def available(family: str, alpha: float) -> bool:
    """Whether ImageNet weights for the family can be had here: a local file or a download."""
    return local(family, alpha) is not None or downloadable()
