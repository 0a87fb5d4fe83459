"""Side by side with DBOS: ``python -m bench.peers [--quick] [--rounds N] [--json FILE]``.

The same order saga (``bench/workload.py``: 4 durable no-op steps; a ``fail-*`` order is
declined at charge_payment and its 2 done steps compensated in reverse) on sagaline and on
DBOS (through its async API, the shape of sagaline's workload, and its sync API, DBOS's
faster path here), in the same run, each on a fresh SQLite file with WAL and
synchronous=FULL:

- A: latency p50/p99 of sagas run one at a time (after 20 warm-up sagas);
- B: throughput of sagas with 100 in flight, and the process's CPU per saga;
- C: B with every 10th order declined and compensated.

DBOS (pinned below) is installed from PyPI into a venv outside the repo, made once and
reused (``SAGALINE_BENCH_CACHE`` moves it); its side is ``bench/peers_dbos_workload.py``,
run by that venv's interpreter, a fresh process per scenario. sagaline's side reuses the
suite's scenarios (``bench/scenarios.py``) in this process, a fresh engine and file per
scenario, as ``python -m bench`` does. In both, the engine and its client share one
process, and CPU is that process's, all threads. The engines take turns scenario by
scenario, so a change of load on the machine hits both. Prints both engines' figures and
the ratios, and writes ``bench/results/peers.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.scenarios import Db, check_compensated, latency, throughput
from bench.sqlite_sagas import floor_commits
from bench.workload import order_saga
from sagaline import Engine, RunFailedError

DBOS_VERSION = "3.4.0"
ROOT = Path(__file__).parents[1]
WORKLOAD = Path(__file__).with_name("peers_dbos_workload.py")
RESULTS = Path(__file__).with_name("results")
CACHE = Path(os.environ.get("SAGALINE_BENCH_CACHE", "~/.cache/sagaline-bench")).expanduser()

Figures = dict[str, Any]
Runs = dict[str, dict[str, list[Figures]]]  # engine -> scenario -> one Figures per round
ENGINES = ("sagaline", "dbos-async", "dbos-sync")  # DBOS through its async and sync APIs


@dataclass
class Sizes:
    latency: int = 200
    throughput: int = 2000
    in_flight: int = 100
    failure: int = 2000
    fail_every: int = 10

    @classmethod
    def quick(cls) -> Sizes:
        return cls(50, 300, 50, 300, 10)


def dbos_python() -> Path:
    """The throwaway venv's interpreter, with ``dbos==DBOS_VERSION`` in it."""
    venv = CACHE / "dbos-venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('dbos'))"]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip() == DBOS_VERSION:
            return python
    print(f"installing dbos=={DBOS_VERSION} into {venv}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", f"dbos=={DBOS_VERSION}"]
    subprocess.run(pip, check=True)
    return python


def run_dbos(python: Path, tmp: Path, scenario: str, api: str, sizes: Sizes) -> Figures:
    db = tempfile.mkdtemp(dir=tmp) + "/dbos.db"
    n = {"latency": sizes.latency, "throughput": sizes.throughput}.get(scenario, sizes.failure)
    args = [str(python), str(WORKLOAD), scenario, "--api", api, "--db", db, "--sagas", str(n)]
    args += ["--in-flight", str(sizes.in_flight), "--fail-every", str(sizes.fail_every)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=tmp)
    if done.returncode != 0:
        raise RuntimeError(f"DBOS {api} {scenario} failed:\n{done.stderr[-4000:]}")
    figures: Figures = json.loads(done.stdout.strip().splitlines()[-1])
    pragmas = figures.pop("pragmas")
    if pragmas != [["wal", 2]]:  # 2 = FULL, on every connection DBOS opened
        raise RuntimeError(f"DBOS ran with {pragmas}, not WAL + synchronous=FULL")
    return {k: v for k, v in figures.items() if k not in ("dbos", "sqlite", "python")}


def dbos_environment(python: Path) -> Figures:
    probe = "import importlib.metadata as m, platform, sqlite3, json; print(json.dumps({"
    probe += "'dbos': m.version('dbos'), 'sqlalchemy': m.version('sqlalchemy'), "
    probe += "'python': platform.python_version(), 'sqlite': sqlite3.sqlite_version}))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    environment: Figures = json.loads(done.stdout)
    return environment


async def failure_mix(db: Db, n: int, in_flight: int, fail_every: int) -> Figures:
    """B with every ``fail_every``-th order declined: the twin of the DBOS side's."""
    declined = 0
    async with Engine(db.url, concurrency=in_flight) as engine:
        await (await engine.start(order_saga, "warm")).result()
        gate = asyncio.Semaphore(in_flight)

        async def one(i: int) -> None:
            nonlocal declined
            async with gate:
                order = f"fail-{i}" if i % fail_every == 0 else f"c-{i}"
                try:
                    await (await engine.start(order_saga, order)).result()
                except RunFailedError:
                    declined += 1

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        await check_compensated(engine, n + 1)
    return {"sagas_per_s": n / wall, "cpu_ms_per_saga": cpu * 1000 / n, "declined": declined}


def run_sagaline(tmp: Path, scenario: str, sizes: Sizes) -> Figures:
    db = Db("sqlite", tmp, pg="")
    if scenario == "latency":
        return dict(asyncio.run(latency(db, sizes.latency)))
    if scenario == "throughput":
        out = asyncio.run(throughput(db, sizes.throughput, sizes.in_flight))
        return {"sagas_per_s": out["sagas_per_s"], "cpu_ms_per_saga": out["cpu_ms_per_step"] * 4}
    figures = asyncio.run(failure_mix(db, sizes.failure, sizes.in_flight, sizes.fail_every))
    figures["compensated_in_reverse"] = True  # check_compensated raises otherwise
    return figures


# (label, scenario, figure, better): "lower" figures are times, "higher" are rates
ROWS: list[tuple[str, str, str, str]] = [
    ("A latency p50, ms", "latency", "p50_ms", "lower"),
    ("A latency p99, ms", "latency", "p99_ms", "lower"),
    ("B throughput, sagas/s", "throughput", "sagas_per_s", "higher"),
    ("B CPU per saga, ms", "throughput", "cpu_ms_per_saga", "lower"),
    ("C 10 % declined, sagas/s", "failure", "sagas_per_s", "higher"),
    ("C CPU per saga, ms", "failure", "cpu_ms_per_saga", "lower"),
]


def median_of(rounds: list[Figures]) -> Figures:
    keys = [k for k, v in rounds[0].items() if isinstance(v, float)]
    return {**rounds[0], **{k: statistics.median(r[k] for r in rounds) for k in keys}}


def ratios(figures: dict[str, dict[str, Figures]]) -> dict[str, dict[str, float]]:
    """How many times better sagaline is on each row than each DBOS API and the better one.

    DBOS/sagaline for times, sagaline/DBOS for rates: above 1 means sagaline is better.
    """
    out: dict[str, dict[str, float]] = {"vs DBOS's better API": {}}
    ours = figures["sagaline"]
    for engine in ENGINES[1:]:
        theirs = figures[engine]
        edges = {
            label: theirs[s][k] / ours[s][k] if better == "lower" else ours[s][k] / theirs[s][k]
            for label, s, k, better in ROWS
        }
        out[f"vs {engine}"] = edges
        for label, edge in edges.items():
            best = out["vs DBOS's better API"]
            best[label] = min(edge, best.get(label, edge))
    return out


def print_table(result: Figures) -> None:
    sizes = result["sizes"]
    print(
        f"\nSQLite {result['sqlite']}, WAL + synchronous=FULL on both; floor "
        f"{result['floor_commits_per_s']:,.0f} commits/s; A {sizes['latency']} sequential, "
        f"B {sizes['throughput']:,} at {sizes['in_flight']} in flight, C {sizes['failure']:,} "
        f"with 1 in {sizes['fail_every']} declined; median of {result['rounds']} round(s)"
    )
    print(f"sagaline {result['sagaline']}, DBOS {result['dbos']}; {result['machine']}")
    print(f"load average before {result['load_before']}, after {result['load_after']}\n")
    print(
        f"{'':26} {'sagaline':>10} {'DBOS async':>11} {'DBOS sync':>10}   sagaline vs better DBOS"
    )
    best = result["ratios"]["vs DBOS's better API"]
    for label, scenario, key, better in ROWS:
        ours, *theirs = (result["figures"][e][scenario][key] for e in ENGINES)
        print(
            f"{label:26} {ours:10,.2f} {theirs[0]:11,.2f} {theirs[1]:10,.2f}   "
            f"{best[label]:.2f}x {better}"
        )


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, {platform.system()}"


def revision() -> str:
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT
    )
    return rev.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(python: Path, sizes: Sizes, rounds: int) -> tuple[float, Runs]:
    """The SQLite floor, then each scenario on each engine, ``rounds`` times."""
    runs: Runs = {engine: {} for engine in ENGINES}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as name:
        tmp = Path(name)
        floor = 5000 / floor_commits(tmp / "floor.db", 5000)
        for round_ in range(rounds):
            for scenario in ("latency", "throughput", "failure"):
                for engine in ENGINES if round_ % 2 == 0 else ENGINES[::-1]:
                    if engine == "sagaline":
                        figures = run_sagaline(tmp, scenario, sizes)
                    else:
                        api = engine.removeprefix("dbos-")
                        figures = run_dbos(python, tmp, scenario, api, sizes)
                    runs[engine].setdefault(scenario, []).append(figures)
                    print(f"[round {round_ + 1}] {engine} {scenario}: {short(figures)}", flush=True)
    return floor, runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--rounds", type=int, default=1, help="report the median of N rounds")
    parser.add_argument("--json", type=Path, default=RESULTS / "peers.json")
    args = parser.parse_args()
    sizes = Sizes.quick() if args.quick else Sizes()
    python = dbos_python()
    before = load()
    floor, runs = measure(python, sizes, args.rounds)
    medians = {e: {s: median_of(rs) for s, rs in by.items()} for e, by in runs.items()}
    dbos_side = dbos_environment(python)
    result: Figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sagaline": f"{version('sagaline')} ({revision()})",
        "dbos": dbos_side["dbos"],
        "dbos_side": {**dbos_side, "venv": str(python.parents[1])},
        "durability": "WAL, synchronous=FULL on both (checked on every DBOS connection); "
        "otherwise each engine's defaults",
        "load_before": before,
        "load_after": load(),
        "rounds": args.rounds,
        "sizes": asdict(sizes),
        "floor_commits_per_s": floor,
        "figures": medians,
        "ratios": ratios(medians),
        "raw": runs,
    }
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rounded(result), indent=2) + "\n")
    print(f"\nwritten to {args.json}")


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def short(figures: Figures) -> str:
    return ", ".join(
        f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()
    )


if __name__ == "__main__":
    main()
