"""``frys-ws loadtest SCENARIO ...``: one entry point for every benchmark and soak."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

SCENARIOS: dict[str, tuple[str, str]] = {
    "durability": ("frys.loadtest.durability", "events through gateway/NATS failures (soak)"),
    "tensor": ("frys.loadtest.tensor_bench", "tensor codecs vs zstd and blosc2"),
    "optimiser": ("frys.loadtest.optimiser_bench", "the protocol optimiser vs fixed choices"),
    "holdup": ("frys.loadtest.holdup", "how long a 64 MiB tensor holds up a small event"),
    "placement": ("frys.loadtest.placement_sim", "router placement simulation"),
    "mesh": ("frys.loadtest.mesh", "agents in workflows over gateways, router on vs off"),
    "fanout": ("frys.loadtest.fanout", "deliveries/s and latency of a broadcast (--vs peers)"),
    "latency": ("frys.loadtest.latency", "latency percentiles at a fixed rate (--vs peers)"),
    "connect": ("frys.loadtest.connect", "connection storm and connect+auth latency"),
    "idle": ("frys.loadtest.idle", "memory per idle connection and loop stalls while ramping"),
    "abuse": ("frys.loadtest.abuse", "resource attacks at scale: RSS, bystander p99, capacity"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in SCENARIOS:
        print("usage: frys-ws loadtest SCENARIO [options]\n\nscenarios:")
        for name, (_module, text) in SCENARIOS.items():
            print(f"  {name:<12} {text}")
        # Asking (no scenario, -h, --help) is answered; only an unknown scenario fails.
        return 2 if args and args[0] not in ("-h", "--help") else 0
    module = importlib.import_module(SCENARIOS[args[0]][0])
    run: Callable[[list[str]], int] = module.main
    return run(args[1:])
