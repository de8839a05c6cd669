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


def _imported_parts(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add((node.module or "").split(".")[0])
    return found & PARTS


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_imports_run_one_way(part):
    files = sorted((REPO / part).rglob("*.py"))
    assert files, f"{part}/ has no sources"
    wrong = {str(f.relative_to(REPO)): sorted(_imported_parts(f) & FORBIDDEN[part]) for f in files}
    wrong = {f: parts for f, parts in wrong.items() if parts}
    assert not wrong, f"{part}/ must not import {sorted(FORBIDDEN[part])}: {wrong}"


def test_the_rule_checker_sees_a_lazy_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from sim.hexapod import SimulatedHexapod\n    import controller.cli\n")
    assert _imported_parts(f) == {"sim", "controller"}
