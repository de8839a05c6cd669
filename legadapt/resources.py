"""Where the shipped data lives, and how a relative path in a command or a config file is found.

The repository's ``configs/``, ``models/`` and ``deploy/`` folders install as the package data
``legadapt.configs``, ``legadapt.models`` and ``legadapt.deploy`` (setup.cfg); they are found through
:mod:`importlib.resources`, so ``legadapt run`` works from any directory, in a checkout or from a wheel.

A relative path is looked for, in order:

1. next to the file that names it (a ``model:`` in ``/etc/legadapt/robot.yaml`` → ``/etc/legadapt/...``);
2. in the working directory (a path typed on the command line);
3. among the shipped files, with or without the folder's name in front
   (``models/default.pt`` and ``default.pt`` are both the shipped default model;
   ``configs/hexapod_sim.yaml`` and ``hexapod_sim.yaml`` the shipped simulator config).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: Shipped data folders: repository folder name -> package.
DATA_PACKAGES = {"configs": "legadapt.configs", "models": "legadapt.models", "deploy": "legadapt.deploy"}


def shipped(folder: str, relative: str | Path = "") -> Path:
    """The installed path of ``relative`` inside a shipped data folder (``configs``, ``models``, ``deploy``)."""
    if folder not in DATA_PACKAGES:
        raise KeyError(f"no shipped folder {folder!r}; known: {', '.join(DATA_PACKAGES)}")
    return Path(str(resources.files(DATA_PACKAGES[folder]))) / relative


def find_shipped(folder: str, path: str | Path) -> Path | None:
    """The shipped file ``path`` names (``models/default.pt`` or ``default.pt``), or None."""
    parts = Path(path).parts
    if parts and parts[0] == folder:
        parts = parts[1:]
    if not parts or ".." in parts:
        return None
    candidate = shipped(folder, Path(*parts))
    return candidate if candidate.is_file() else None


def resolve(path: str | Path, folder: str, base_dir: str | Path | None = None) -> Path:
    """``path`` found as the module docstring says; as given (expanded) when it is nowhere, so the caller's
    error names what the user wrote."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    if base_dir is not None and (Path(base_dir) / p).exists():
        return Path(base_dir) / p
    if p.exists():
        return p
    return find_shipped(folder, p) or p


def shipped_names(folder: str, subfolder: str = "", suffix: str = ".yaml") -> list[str]:
    """Stems of the shipped files in ``folder/subfolder`` (e.g. the suite names)."""
    root = shipped(folder, subfolder)
    return sorted(p.stem for p in root.glob(f"*{suffix}")) if root.is_dir() else []
