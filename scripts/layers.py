"""Check DESIGN.md's layering: each layer imports only from the layers below it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "sagaline"
ORDER = [
    "model",
    "codecs",
    "store",
    "bus",
    "engine",
    "diagrams",
    "testing",
    "console",
    "demo",
    "worker_process",
    "worker_cli",
    "definitions",
    "plain_usage",
    "asl_cli",
    "diagram_cli",
    "sagas_cli",
    "locks_cli",
    "http",
    "tasks",
    "tasks_cli",
    "serve_cli",
    "cli",
    "entry",
]
# A layer may import from itself and from every layer before it in ORDER; the facade
# (__init__) re-exports from all.


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "sagaline" or len(parts) < 2:
        return None
    return parts[1]


def main() -> int:
    problems = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__" or own not in ORDER:
            continue
        allowed = set(ORDER[: ORDER.index(own) + 1])
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                target = layer_of(name)
                if target is not None and target not in allowed:
                    problems.append(f"{rel}:{node.lineno}: {own} imports {name}")
                if own == "engine" and name.split(".")[0] in ("sqlite3", "psycopg", "asyncpg"):
                    problems.append(f"{rel}:{node.lineno}: the engine talks SQL through Store only")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
