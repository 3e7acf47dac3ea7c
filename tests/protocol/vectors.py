"""Golden vectors of wire protocol v1: the frames, and the tool that writes ``golden_v1.json``.

``golden_v1.json`` is the contract: ``test_golden.py`` checks that encoding each frame below
gives exactly the stored msgpack bytes and JSON text, and that decoding those gives the frame
back. Tests never write the file. Vectors change only deliberately, after a reviewed change of
the wire format; from the repository root::

    python -m tests.protocol.vectors            # compare, exit 1 on any difference
    python -m tests.protocol.vectors --write    # rewrite golden_v1.json
    python -m tests.protocol.vectors --doc      # print the excerpt docs/protocol.md shows

and commit the diff of ``golden_v1.json`` (and of the excerpt in ``docs/protocol.md``, which a
test compares with the fixture) together with the change.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from frys.shared.protocol import codec, zdict
from frys.shared.protocol import frames as f

GOLDEN_PATH = Path(__file__).with_name("golden_v1.json")
TENSOR_FRAME = bytes.fromhex("f10100000000000001000000")
"""Opening bytes of a tensor keyframe (a vector pins the envelope, not the tensor format)."""
REGENERATE = "python -m tests.protocol.vectors --write"
DOC_VECTORS = (
    "ping",
    "connect_header_auth",
    "subscribe_since",
    "publish_full",
    "ack_gap",
    "message_events",
    "message_bytes",
    "error_full",
)
"""The vectors ``docs/protocol.md`` reproduces (a test keeps them identical)."""


@dataclass(frozen=True)
class Vector:
    name: str
    frame: f.Frame
    """What is encoded."""
    decoded: f.Frame | None = None
    """What decoding gives back, when it differs from ``frame`` (``Raw`` data decodes to
    the plain value)."""
    json_decoded: f.Frame | None = None
    """What decoding the JSON text gives back, when JSON loses information."""

    @property
    def direction(self) -> str:
        return "client" if self.frame.OP in f.CLIENT_OPS else "gateway"

    @property
    def expected_msgpack(self) -> f.Frame:
        return self.decoded or self.frame

    @property
    def expected_json(self) -> f.Frame:
        return self.json_decoded or self.decoded or self.frame


def _raw(value: Any) -> f.Raw:
    return f.Raw(msgpack.packb(value, use_bin_type=True))


def _spliced(name: str, frame: f.Ack | f.Message | f.Reply) -> Vector:
    """``frame`` with its ``data`` pre-encoded as msgpack (``Raw``), the way gateways relay
    payloads from the bus; decoding gives ``frame`` back, with the plain value."""
    return Vector(name, dataclasses.replace(frame, data=_raw(frame.data)), frame)


TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWdvZXMtaGVyZQ"
TOKEN_2 = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.bmV3LXNpZ25hdHVyZQ"
SID = "9f1c2e4b7a3d4e5f8a9b0c1d2e3f4a5b"
RESUME = f"{SID}.1764000300.q2Xb9mL0s7YtK1fR3aZcW8vE"
EPOCH = "63f1c2a9d4e80"
STATE_EPOCH = "63f1c2a9d5a11"
TC = f.TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
TC_STATE = f.TraceContext(
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate="frys=t61rcWkgMzE"
)
LIMITS = {
    "max_frame_bytes": 2097152,
    "queue_bytes": 1048576,
    "max_subscriptions": 512,
    "publish_rate_per_s": 5000,
    "ping_interval_ms": 25000,
    "request_timeout_ms": 5000,
    "max_request_timeout_ms": 60000,
}
ALICE = {
    "sid": SID,
    "sub": "alice",
    "kind": "user",
    "name": "designer-tab",
    "caps": ["tensor"],
    "gw": "gw-a1",
}
PLANNER = {
    "sid": "0c7d1e2f3a4b5c6d7e8f9a0b1c2d3e4f",
    "sub": "planner-1",
    "kind": "agent",
    "name": "",
    "caps": [],
    "gw": "gw-b2",
}
INF = float("inf")

VECTORS: tuple[Vector, ...] = (
    # --- client → gateway ------------------------------------------------------------
    Vector("connect", f.Connect(id=1, token=TOKEN)),
    Vector(
        "connect_full",
        f.Connect(
            id=1,
            token=TOKEN,
            name="designer-tab",
            codecs=("zstd",),
            resume=RESUME,
            caps=("tensor",),
            tc=TC,
        ),
    ),
    Vector("connect_header_auth", f.Connect(id=1)),
    Vector("connect_codecs", f.Connect(id=1, token=TOKEN, codecs=("zstd-dict", "tensor-ext"))),
    Vector("subscribe", f.Subscribe(id=2, ch="wf:42:state")),
    Vector(
        "subscribe_since",
        f.Subscribe(id=3, ch="wf:42:events", since=f.Position(1041, EPOCH), tc=TC),
    ),
    Vector("unsubscribe", f.Unsubscribe(id=4, ch="wf:42:state")),
    Vector("publish", f.Publish(id=5, ch="wf:42:collab", data={"cursor": [3, 7]})),
    Vector(
        "publish_full",
        f.Publish(
            id=6,
            ch="wf:42:events",
            data={"kind": "note", "blob": b"\x00\x01\xfe\xff"},
            mid="m-7f3a",
            tc=TC_STATE,
        ),
    ),
    Vector("request", f.Request(id=7, ch="wf:42:control", data={"cmd": "pause"})),
    Vector(
        "request_full",
        f.Request(
            id=8,
            ch="wf:42:control",
            data={"cmd": "retry", "step": 3},
            cid="c-5b1e",
            timeout_ms=10000,
            tc=TC,
        ),
    ),
    Vector("ping", f.Ping()),
    Vector("ping_id", f.Ping(id=9)),
    Vector("refresh", f.Refresh(id=10, token=TOKEN_2)),
    Vector("presence", f.PresenceQuery(id=11, ch="wf:42:presence")),
    Vector("outcome", f.Outcome(id=12, ch="wf:42:control", cid="c-5b1e")),
    Vector(
        "publish_tensor",
        f.Publish(id=13, ch="wf:42:state", data=TENSOR_FRAME, enc=f.ENC_TENSOR),
    ),
    Vector("resync", f.Resync(id=14, ch="wf:42:state", stream=0)),
    Vector("stats", f.Stats(id=15, ch="wf:42:state")),
    # --- gateway → client ------------------------------------------------------------
    Vector(
        "connected",
        f.Connected(id=1, sid=SID, gw="gw-a1", limits=LIMITS, resume=RESUME, exp=1764003600),
    ),
    Vector(
        "connected_no_exp",
        f.Connected(id=1, sid=SID, gw="gw-a1", limits={"max_frame_bytes": 2097152}, resume=RESUME),
    ),
    Vector("ack", f.Ack(id=5)),
    Vector("ack_subscribe_state", f.Ack(id=2, seq=88, epoch=STATE_EPOCH)),
    Vector("ack_subscribe_events", f.Ack(id=3, seq=1041, epoch=EPOCH)),
    Vector("ack_resumed", f.Ack(id=3, epoch=EPOCH, recovered=True)),
    Vector("ack_gap", f.Ack(id=3, seq=2050, epoch=EPOCH, recovered=False)),
    Vector("ack_publish_stored", f.Ack(id=6, seq=2051)),
    Vector("ack_publish_dup", f.Ack(id=6, seq=2051, dup=True)),
    Vector("ack_refresh", f.Ack(id=10, exp=1764007200)),
    Vector("ack_presence", f.Ack(id=11, members=(ALICE, PLANNER))),
    _spliced("ack_outcome", f.Ack(id=12, data={"ok": True, "step": 3})),
    Vector("message", f.Message(ch="wf:42:collab", data={"cursor": [3, 7]}, from_="alice")),
    _spliced(
        "message_events",
        f.Message(
            ch="wf:42:events", data={"kind": "note", "text": "hi"}, seq=2052, from_="alice", tc=TC
        ),
    ),
    _spliced(
        "message_state",
        f.Message(
            ch="wf:42:state", data={"status": "running", "progress": 0.5}, seq=89, from_="engine"
        ),
    ),
    Vector(
        "message_bytes",
        f.Message(ch="agent:planner-1", data=b"\xf1\x01\x00\x00\x07\x00\x00\x00", from_="engine"),
    ),
    Vector(
        "message_presence_join",
        f.Message(ch="wf:42:presence", data={"type": "join", "member": ALICE}),
    ),
    Vector(
        "message_presence_leave",
        f.Message(
            ch="wf:42:presence",
            data={"type": "leave", "member": PLANNER, "reason": "timeout"},
        ),
    ),
    Vector(
        "message_json_lossy",
        f.Message(ch="wf:42:collab", data={"v": [1.5, INF, -INF], 7: "seven"}),
        json_decoded=f.Message(ch="wf:42:collab", data={"v": [1.5, None, None], "7": "seven"}),
    ),
    _spliced(
        "reply",
        f.Reply(id=7, cid="5d0c8f1e9a2b4c3d8e7f6a5b4c3d2e1f", data={"ok": True}),
    ),
    Vector(
        "reply_tc",
        f.Reply(id=8, cid="c-5b1e", data={"ok": False, "error": "busy"}, tc=TC),
    ),
    Vector("pong", f.Pong()),
    Vector("pong_id", f.Pong(id=9)),
    Vector("error", f.Error(code=400, reason="frame must be a map")),
    Vector(
        "error_full",
        f.Error(code=403, reason="no subscribe right on wf:42:events", ref=3, ch="wf:42:events"),
    ),
    Vector(
        "migrate",
        f.Migrate(url="wss://gw-b2.frys.example/gw/gw-b2/ws", reason="rebalance", delay_ms=250),
    ),
    Vector("migrate_now", f.Migrate(url="wss://frys.example/ws", reason="rebalance")),
    Vector("unsubscribed", f.Unsubscribed(ch="wf:42:events", code=403, reason="right revoked")),
    Vector("keyframe", f.KeyframeWanted(ch="wf:42:state", stream=0)),
    Vector(
        "message_tensor",
        f.Message(ch="wf:42:state", data=TENSOR_FRAME, from_="sim-1", enc=f.ENC_TENSOR),
    ),
)

BY_NAME: dict[str, Vector] = {v.name: v for v in VECTORS}

COMPRESSED = ("message_events", "message_state", "message_presence_join")
"""Vectors whose msgpack frame is also given compressed (docs/protocol.md §15)."""


def _dictionary_samples() -> list[bytes]:
    """Deterministic traffic the golden dictionary is learnt from."""
    out = []
    for i in range(300):
        frame = f.Message(
            ch=f"wf:{40 + i % 5}:{('events', 'state', 'presence')[i % 3]}",
            data={"kind": ("note", "step.done")[i % 2], "text": f"t{i % 17}", "step": i % 9},
            seq=2000 + 7 * i,
            from_=("alice", "engine")[i % 2],
        )
        out.append(codec.encode_msgpack(frame))
    return out


def render_compressed() -> dict[str, Any]:
    """The dictionary and compressed frames of §15 (zstd output may differ between zstd
    versions: tests decode these, they do not re-encode them)."""
    dictionary = zdict.train(_dictionary_samples(), 2048)
    compressor = zdict.FrameCompressor(dictionary, 3)
    frames = []
    for name in COMPRESSED:
        plain = codec.encode_msgpack(BY_NAME[name].frame)
        frames.append(
            {"name": name, "msgpack": plain.hex(), "compressed": compressor.compress(plain).hex()}
        )
    return {"dict_id": dictionary.name, "dictionary": dictionary.content.hex(), "frames": frames}


def render(vector: Vector) -> dict[str, str]:
    """One fixture entry, from the encoders."""
    return {
        "name": vector.name,
        "op": vector.frame.OP,
        "direction": vector.direction,
        "msgpack": codec.encode_msgpack(vector.frame).hex(),
        "json": codec.encode_json(vector.frame),
    }


def render_all() -> dict[str, Any]:
    return {
        "protocol": "Frys wire protocol v1",
        "note": f"Generated by `{REGENERATE}`; never edit by hand.",
        "vectors": [render(v) for v in VECTORS],
        "compressed": render_compressed(),
    }


def dumps(golden: dict[str, Any]) -> str:
    return json.dumps(golden, indent=2, ensure_ascii=False) + "\n"


def load() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))
    return loaded


def doc_excerpt(golden: dict[str, Any]) -> str:
    """The vectors ``docs/protocol.md`` shows, in its ``vector/msgpack/json`` line format."""
    entries = {e["name"]: e for e in golden["vectors"]}
    blocks = []
    for name in DOC_VECTORS:
        e = entries[name]
        blocks.append(f"vector  {name}\nmsgpack {e['msgpack']}\njson    {e['json']}")
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="rewrite golden_v1.json")
    parser.add_argument("--doc", action="store_true", help="print the docs/protocol.md excerpt")
    args = parser.parse_args(argv)
    fresh = dumps(render_all())
    if args.write:
        GOLDEN_PATH.write_text(fresh, encoding="utf-8")
        print(f"wrote {GOLDEN_PATH} ({len(VECTORS)} vectors)")
    if args.doc:
        print(doc_excerpt(json.loads(fresh)))
    if args.write or args.doc:
        return 0
    current = GOLDEN_PATH.read_text(encoding="utf-8") if GOLDEN_PATH.exists() else ""
    if current == fresh:
        print(f"{GOLDEN_PATH.name}: {len(VECTORS)} vectors, no difference")
        return 0
    loaded = json.loads(current) if current else {}
    if loaded.get("compressed") != render_all()["compressed"]:
        print("differs: compressed (another zstd version compresses differently)")
    old = {e["name"]: e for e in loaded.get("vectors", [])}
    for entry in render_all()["vectors"]:
        if old.get(entry["name"]) != entry:
            print(f"differs: {entry['name']}")
    for name in old.keys() - BY_NAME.keys():
        print(f"stale: {name}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
