"""The throughput and memory benchmarks still run (tiny workloads; no timing is asserted).

Each benchmark is one command (see bench/README.md); here they run as subprocesses with a handful
of updates on SQLite, and the figures they write are checked for completeness: every scripted step
was answered (no step timed out), the workflows really moved (requests approved, conversations
open in the database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_throughput_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    proc = _run(["bench/throughput/run.py", "--updates", "40", "--warmup", "5", "--rate-updates", "20",
                 "--repeat", "1", "--people", "10", "--db", "sqlite", "--json", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    phases = {p["phase"]: p for p in json.loads(out.read_text())}
    assert set(phases) == {"echo/-/closed", "ours/sqlite/closed", "echo/-/rate", "ours/sqlite/rate"}
    for name, p in phases.items():
        assert p["timeouts"] == 0 and p["notice_timeouts"] == 0, name
        assert p["latency_ms"]["n"] >= 20 and not p["api_errors"], name
    closed = phases["ours/sqlite/closed"]
    # the updates went through the real dispatcher and flows: each processed once, workflows open
    assert closed["db_counts"]["processed_updates"] == closed["sent"]
    assert closed["db_counts"]["open_conversations"] > 0
    assert "ratio ours/echo" in proc.stdout and "p99" in proc.stdout
    # At the fixed rate the teachers enter one by one, and nothing is measured before the last is in
    rate = phases["ours/sqlite/rate"]
    assert rate["staggered"] == 8  # 9 teachers, the first starts at once (the principal is not staggered)
    assert rate["first_measured_s"] >= rate["all_in_s"] > 0
    assert rate["measured"] == 20


def test_memory_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    proc = _run(["bench/memory/run.py", "--people", "20", "--repeat", "1", "--settle", "0.2", "--db", "sqlite",
                 "--json", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = json.loads(out.read_text())
    assert run["open_conversations"] == 20 and run["timeouts"] == 0
    assert run["idle"]["VmRSS"] > 0 and run["busy"]["VmRSS"] > 0
    assert "idle" in proc.stdout and "open conversations" in proc.stdout
