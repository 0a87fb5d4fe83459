"""The suite's table: each figure with its floor ratio and the issue's target."""

from __future__ import annotations

from typing import Any


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
            f"{'met' if a['p50_ms'] <= 9 * commit_ms else 'not met'}"
        )
        target_b = 3 * base / 6
        print(
            f"  B throughput  {b['sagas_per_s']:.0f} sagas/s = {b['sagas_per_s'] / (base / 6):.2f}"
            f" x floor/6   target >= 3.00 x: {'met' if b['sagas_per_s'] >= target_b else 'not met'}"
        )
        print(
            f"                {b['rows_per_saga']:.1f} rows and {b['bytes_per_saga']:.0f} bytes"
            f" per saga, {b['cpu_ms_per_step']:.3f} ms CPU per step (engine + client)"
        )
        c_ratio = c["sagas_per_s"] / b["sagas_per_s"]
        print(
            f"  C failure     {c['sagas_per_s']:.0f} sagas/s = {c_ratio:.2f} x B"
            f"   target >= 0.80: {'met' if c_ratio >= 0.8 else 'not met'}"
        )
        d = r["D_recovery"]
        print(
            f"  D recovery    {d['seconds_to_done']:.2f} s from restart to all done (2 s step),"
            f" {d['extra_executions']} extra executions for {d['in_flight_at_kill']} steps in"
            f" flight   target <= 2.5 s: {'met' if d['seconds_to_done'] <= 2.5 else 'not met'}"
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
            f"   target < 50 MB: {'met' if grew < 50 else 'not met'}"
        )
