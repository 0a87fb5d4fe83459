"""The suite's table: each figure with its floor ratio and the issue's target.

The targets are the performance issue's (#14): ratios to floors measured in the same run.
"""

from __future__ import annotations

from typing import Any

B_TARGET = {"sqlite": 3.0, "postgres": 1.5}
"""B throughput, in floor/6 (PostgreSQL: the floor on 16 connections)."""
CPU_PER_STEP_MS = 0.05
C_TARGET = 0.9
D_TARGET_S = 2.2
F_GROWTH_MB = {"sqlite": 2.8, "postgres": 7.8}
"""Worker RSS growth with 100,000 suspended runs when the issue was filed: unchanged or better."""


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def print_table(result: dict[str, Any]) -> None:
    print(f"\nsagaline benchmark suite · {result['date']} · {result['machine']}")
    for backend, r in result["backends"].items():
        floor = r["floor"]
        base = floor.get("commits_per_s_16", floor["commits_per_s"])
        commit_ms = 1000 / floor["commits_per_s"]
        print(f"\n{backend} ({floor['durability']})")
        print(
            f"  floor: {floor['commits_per_s']:.0f} commits/s on 1 connection"
            + (f", {floor['commits_per_s_16']:.0f}/s on 16" if "commits_per_s_16" in floor else "")
        )
        a, b, c = r["A_latency"], r["B_throughput"], r["C_failure"]
        print(
            f"  A latency     p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms"
            f"   target p50 <= {9 * commit_ms:.2f} ms (1.5 x 6 commits): "
            f"{_met(a['p50_ms'] <= 9 * commit_ms)}"
        )
        ratio_b = B_TARGET.get(backend, 3.0)
        print(
            f"  B throughput  {b['sagas_per_s']:.0f} sagas/s = {b['sagas_per_s'] / (base / 6):.2f}"
            f" x floor/6   target >= {ratio_b:.2f} x: "
            f"{_met(b['sagas_per_s'] >= ratio_b * base / 6)}"
        )
        print(
            f"                {b['rows_per_saga']:.1f} rows and {b['bytes_per_saga']:.0f} bytes"
            f" per saga, {b['cpu_ms_per_step']:.3f} ms CPU per step (engine + client)"
            f"   target <= {CPU_PER_STEP_MS} ms: {_met(b['cpu_ms_per_step'] <= CPU_PER_STEP_MS)}"
        )
        c_ratio = c["sagas_per_s"] / b["sagas_per_s"]
        print(
            f"  C failure     {c['sagas_per_s']:.0f} sagas/s = {c_ratio:.2f} x B"
            f"   target >= {C_TARGET:.2f}: {_met(c_ratio >= C_TARGET)}"
        )
        d = r["D_recovery"]
        extra_ok = d["extra_executions"] <= d["in_flight_at_kill"]
        print(
            f"  D recovery    {d['seconds_to_done']:.2f} s from restart to all done (2 s step),"
            f" {d['extra_executions']} extra executions for {d['in_flight_at_kill']} steps in"
            f" flight   target <= {D_TARGET_S} s, extra = in flight: "
            f"{_met(d['seconds_to_done'] <= D_TARGET_S and extra_ok)}"
        )
        if "E_scaleout" in r:
            rates = r["E_scaleout"]["sagas_per_s_by_workers"]
            one = rates.get("1", 1.0)
            shown = ", ".join(f"{k} worker(s) {v:.0f}/s ({v / one:.2f}x)" for k, v in rates.items())
            print(f"  E scale-out   {shown}   target 2 workers >= 1.6x")
        f = r["F_idle"]
        grew = f["rss_after_mb"] - f["rss_before_mb"]
        print(
            f"  F idle        worker RSS {f['rss_before_mb']:.1f} -> {f['rss_after_mb']:.1f} MB"
            f" (+{grew:.1f}), {f['bytes_per_run']:.0f} bytes per suspended run"
            f"   target +{F_GROWTH_MB.get(backend, 50.0)} MB or less: "
            f"{_met(grew <= F_GROWTH_MB.get(backend, 50.0))}"
        )
