"""The benchmark tool end to end, tiny: every report is well formed and the byte-counting
clients count exactly what the servers sent (checked against Frys's own counters). No
speed threshold anywhere: these runs share the machine with everything else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hdrh", reason="benchmark extras not installed: pip install -e '.[loadtest]'")
pytest.importorskip("matplotlib", reason="benchmark extras not installed")

pytestmark = pytest.mark.timeout(120)


def run_tool(out: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "frys.cli.main", "loadtest", *args, "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "report.png").stat().st_size > 1000
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    assert "target" in proc.stdout  # the printed table
    for key in ("scenario", "parameters", "machine", "targets", "frys_advantage"):
        assert key in report
    for key in ("cpu_model", "cores", "memory_mb", "kernel", "python", "nats_server"):
        assert report["machine"][key]
    for name, result in report["targets"].items():
        assert "error" not in result, (name, result)
    return report


def test_fanout_counts_every_delivery_against_frys_and_aiohttp(tmp_path: Path) -> None:
    report = run_tool(
        tmp_path,
        "fanout",
        "--subscribers", "20",
        "--duration", "1",
        "--warmup", "0.3",
        "--vs", "aiohttp",
    )  # fmt: skip
    assert report["scenario"] == "fanout"
    assert set(report["targets"]) == {"frys", "aiohttp"}
    assert set(report["frys_advantage"]) == {"aiohttp"}
    for result in report["targets"].values():
        assert result["connections"] == 20
        assert result["published"] > 0
        assert result["deliveries_per_s"] > 0
        assert result["ingest_per_s"] > 0
        assert result["lost"] == 0
        assert result["misaligned_connections"] == 0
        assert result["delivered"] == result["expected_deliveries"] == result["published"] * 20
        assert result["per_connection_min"] == result["per_connection_max"] == result["published"]
        latency = result["latency"]
        assert latency["count"] > 0
        assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["p99_9_ms"]
        assert result["usage"]["server_cpu_s"] > 0
    frys = report["targets"]["frys"]
    # What the clients counted on the wire is what the gateway wrote, byte for byte.
    check = frys["bytes_check"]
    assert check["written_by_gateway"] == check["received_by_clients"] > 0
    assert check["equal"] is True
    assert check["received_by_clients"] % frys["delivered"] == 0  # every frame the same size
    assert frys["frames_per_write"] >= 1


def test_latency_measures_every_target_at_every_rate(tmp_path: Path) -> None:
    report = run_tool(
        tmp_path,
        "latency",
        "--rate", "50,200",
        "--subscribers", "10",
        "--duration", "0.5",
        "--warmup", "0.2",
        "--vs", "aiohttp",
    )  # fmt: skip
    assert report["parameters"]["rates"] == [50.0, 200.0]
    for result in report["targets"].values():
        assert set(result["by_rate"]) == {"50", "200"}
        for rate, at in result["by_rate"].items():
            assert at["rate_target"] == float(rate)
            assert at["lost"] == 0
            assert at["latency"]["count"] > 0
    assert set(report["frys_advantage_by_rate"]) == {"50", "200"}
    assert report["targets"]["frys"]["by_rate"]["200"]["bytes_check"]["equal"] is True


def test_idle_and_connect_reports(tmp_path: Path) -> None:
    idle = run_tool(
        tmp_path / "idle", "idle", "--connections", "200", "--steps", "2", "--settle", "0.5"
    )
    frys = idle["targets"]["frys"]
    assert frys["connections"] == 200
    assert frys["failed"] == 0
    assert frys["still_open_after_settle"] == 200
    assert frys["server_connections_gauge"] >= 200
    assert frys["rss_after_mb"] > 0
    assert frys["bytes_per_connection"] is not None
    assert frys["probe"]["count"] > 0 and frys["probe"]["max_ms"] > 0
    assert len(frys["rss_curve"]) == 2

    connect = run_tool(
        tmp_path / "connect", "connect", "--storm", "300", "--sequential", "30", "--vs", "aiohttp"
    )
    for result in connect["targets"].values():
        assert result["sequential"]["connections"] == 30
        assert 0 < result["sequential"]["p50_ms"] <= result["sequential"]["p99_ms"]
        storm = result["storm"]
        assert storm["connections"] == 300 and storm["failed"] == 0
        assert storm["still_open"] == 300
        assert storm["connections_per_s"] > 0
    assert connect["targets"]["frys"]["storm"]["server_connections_gauge"] >= 300
