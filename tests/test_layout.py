"""The import rules of ../shared/design.md ("Arrows point one way"), checked on every source file.

Every import counts, at module level or inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PARTS = {"legadapt", "hardware", "sim", "dynamics", "planners", "controller", "calibration"}
#: part -> our parts it must never import (design.md, "Never:")
FORBIDDEN = {
    "planners": PARTS - {"planners"},
    "dynamics": {"hardware", "sim", "controller"},
    "sim": {"controller", "dynamics", "planners"},
    "hardware": {"sim"},
    "legadapt": PARTS - {"legadapt"},
}


def _part_of(module: str) -> str | None:
    """The part a module belongs to: ``legadapt.sim.backend`` -> ``sim``, ``legadapt.features`` -> ``legadapt``."""
    names = module.split(".")
    if names[0] != "legadapt":
        return None
    return names[1] if len(names) > 1 and names[1] in PARTS else "legadapt"


def _imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``from legadapt import sim`` names ``legadapt.sim``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
            if node.module == "legadapt":
                found |= {f"legadapt.{a.name}" for a in node.names}
    return found


def _imported_parts(path: Path) -> set[str]:
    return {part for m in _imported_modules(path) if (part := _part_of(m))} & PARTS


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_imports_run_one_way(part):
    files = sorted((REPO / part).rglob("*.py"))
    assert files, f"{part}/ has no sources"
    wrong = {str(f.relative_to(REPO)): sorted(_imported_parts(f) & FORBIDDEN[part]) for f in files}
    wrong = {f: parts for f, parts in wrong.items() if parts}
    assert not wrong, f"{part}/ must not import {sorted(FORBIDDEN[part])}: {wrong}"


def test_the_rule_checker_sees_a_lazy_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from legadapt.sim.hexapod import SimulatedHexapod\n    import legadapt.controller.cli\n"
                 "    from legadapt import planners\n")
    assert _imported_parts(f) == {"sim", "controller", "planners", "legadapt"}


GENERIC_NAMES = PARTS - {"legadapt"}


@pytest.mark.parametrize("folder", sorted(PARTS | {"tests", "bench"}))
def test_nothing_imports_a_generic_top_level_name(folder):
    """Installed, every part is ``legadapt.<part>``: a bare ``import controller`` would find another package
    of that name (the index has ``controller``, ``hardware``, ``planners``) or a user's own ``sim.py``."""
    wrong = {str(f.relative_to(REPO)): sorted(m for m in _imported_modules(f) if m.split(".")[0] in GENERIC_NAMES)
             for f in sorted((REPO / folder).rglob("*.py"))}
    wrong = {f: mods for f, mods in wrong.items() if mods}
    assert not wrong, f"import these as legadapt.<part>: {wrong}"
