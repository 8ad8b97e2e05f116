"""Import guard: ``lumbar_core`` never imports kfp; components import only stdlib and kfp at module level.

Run as ``python scripts/check_imports.py``; exits 1 listing every offending import.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []


def check_library(root: Path) -> list[str]:
    """Every import of kfp anywhere in the library."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _imported(node):
                if name in {"kfp", "kfp_server_api"}:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: lumbar_core must not import {name}")
    return problems


def check_components(root: Path) -> list[str]:
    """Module-level imports of components that are neither stdlib nor kfp (heavy ones go in the body)."""
    allowed = set(sys.stdlib_module_names) | {"kfp", "__future__", "components"}
    problems = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            for name in _imported(node):
                if name not in allowed:
                    problems.append(
                        f"{path.relative_to(ROOT)}:{node.lineno}: module-level import of {name}; import it inside the component"
                    )
    return problems


def main() -> int:
    """Print problems and return the exit status."""
    problems = check_library(ROOT / "lumbar_core") + check_components(ROOT / "components")
    for line in problems:
        print(line)
    print(f"import guard: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
