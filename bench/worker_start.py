"""``python -m bench.worker_start``: from process start to a serving ``sagaline worker``.

A crashed worker's runs resume only once its replacement serves, so this is part of D
(recovery). Each round starts, in turn, a bare interpreter (the floor), ``sagaline worker``
(``python -m sagaline``, as the installed command runs it) and the same command reached
through the operator CLI (``python -m sagaline.cli worker``, which loads typer first), on
a fresh SQLite file each, and times the first line the worker prints ("worker serving").
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
COMMANDS = {
    "floor (python -c pass)": None,
    "python -m sagaline worker": [sys.executable, "-m", "sagaline", "worker"],
    "python -m sagaline.cli worker": [sys.executable, "-m", "sagaline.cli", "worker"],
}


def once(command: list[str] | None, folder: Path) -> float:
    began = time.perf_counter()
    if command is None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        return time.perf_counter() - began
    url = f"sqlite:///{folder / 'start.db'}"
    args = [*command, "--db", url, "--import", "bench.workload"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        took = time.perf_counter() - began
        if not line.startswith("worker serving"):
            raise SystemExit(f"{' '.join(command)} did not start: {line!r}")
        return took
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, command in COMMANDS.items():  # interleaved: a slow moment hits all alike
            with tempfile.TemporaryDirectory() as folder:
                times[name].append(once(command, Path(folder)))
    floor = statistics.median(times["floor (python -c pass)"])
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:32} median {median:.3f} s over {rounds} = {median / floor:.1f} x the floor")


if __name__ == "__main__":
    main()
