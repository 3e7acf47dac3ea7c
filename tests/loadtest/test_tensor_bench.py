"""The tensor benchmark runs, checks its own round trips and reports every codec."""

from __future__ import annotations

import json
import sys

import pytest

from frys.loadtest.tensor_bench import HEADER, format_table, main, run_tensor_benchmark


def test_benchmark_reports_every_codec_and_the_targets() -> None:
    result = run_tensor_benchmark(0.02, ticks=2, cases=["sparse_state", "incompressible"])
    cases = {c["case"]: c for c in result["cases"]}
    assert set(cases) == {"sparse_state", "incompressible"}
    codecs = [r["codec"] for r in cases["sparse_state"]["rows"]]
    assert codecs == ["frys", "frys bf16", "frys q0.001", "zstd-3", "blosc2"]
    frys = cases["sparse_state"]["rows"][0]
    assert frys["ratio"] > 5
    assert frys["encode_mb_s"] > 0
    assert frys["decode_mb_s"] > 0
    assert cases["incompressible"]["rows"][0]["max_overhead_bytes"] <= HEADER
    quantized = cases["sparse_state"]["rows"][2]
    assert 0 < quantized["max_abs_error"] <= 1e-3
    names = [t["target"] for t in result["targets"]]
    assert "sparse_state ratio (steady state)" in names
    table = format_table(result)
    assert "sparse_state" in table
    assert "frys q0.001" in table


def test_missing_blosc2_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "blosc2", None)
    result = run_tensor_benchmark(0.02, ticks=1, cases=["image"])
    assert result["blosc2"] is None
    row = result["cases"][0]["rows"][-1]
    assert row["codec"] == "blosc2"
    assert row["note"] == "not installed"
    assert "not installed" in format_table(result)


def test_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "0.02", "--ticks", "1", "--case", "dense_drift", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cases"][0]["case"] == "dense_drift"
    with pytest.raises(SystemExit):
        main(["--case", "nonsense"])
