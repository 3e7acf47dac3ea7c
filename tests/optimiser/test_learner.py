"""The dictionary learner: plain until it has learnt, then compressed; retrains on drift
and keeps replaced dictionaries known."""

from __future__ import annotations

import random

import msgpack

from frys.gateway.optimiser.learner import DictionaryLearner, LearnerConfig, run_job
from frys.gateway.optimiser.schema import schema_of, storage_key
from frys.shared.protocol import zdict


def frame(rng: random.Random, kind: str = "step.started", extra: str = "") -> bytes:
    data = {"type": kind, "step": rng.choice(["a", "b", "c"]), "at": rng.randint(0, 10**12)}
    if extra:
        data["note"] = f"{extra}{rng.getrandbits(24):06x}"
    return msgpack.packb({"op": "message", "ch": "wf:1:events", "data": data})


def drive(learner: DictionaryLearner, frames: list[bytes], schema: str) -> list[bytes | None]:
    out = []
    for f in frames:
        out.append(learner.compress(schema, f))
        while learner.jobs:
            learner.finished(run_job(learner.jobs.pop()))
    return out


def test_plain_until_enough_samples_then_compressed() -> None:
    rng = random.Random(1)
    learner = DictionaryLearner(LearnerConfig(min_samples=200, holdout=40), seed=1)
    frames = [frame(rng) for _ in range(600)]
    out = drive(learner, frames, "events:at,step,type")
    assert all(o is None for o in out[:199])
    first = next(i for i, o in enumerate(out) if o is not None)
    assert first <= 200
    st = learner.schemas["events:at,step,type"]
    assert st.dictionary is not None and st.compressed > 300
    dec = zdict.FrameDecoder()
    dec.add(st.dictionary.content)
    for f, o in zip(frames, out, strict=True):
        if o is not None:
            assert dec.decode(o) == f
    assert st.describe()["state"] == "compressing"


def test_drift_trains_a_candidate_and_rotates_keeping_the_old_one_known() -> None:
    rng = random.Random(2)
    learner = DictionaryLearner(
        LearnerConfig(min_samples=200, holdout=40, settle_messages=50, drift=0.1), seed=2
    )
    schema = "events:at,step,type"
    drive(learner, [frame(rng) for _ in range(400)], schema)
    first = learner.schemas[schema].dictionary
    assert first is not None
    drifted = [frame(rng, "step.finished-with-a-long-new-name", "x" * 40) for _ in range(1500)]
    drive(learner, drifted, schema)
    st = learner.schemas[schema]
    assert st.dictionary is not None and st.dictionary.id != first.id
    assert first.id in st.retired and learner.lookup(first.id) == first
    assert st.rotations >= 1


def test_a_schema_that_does_not_compress_stays_plain() -> None:
    rng = random.Random(3)
    learner = DictionaryLearner(LearnerConfig(min_samples=100, holdout=20), seed=3)
    noise = [msgpack.packb(rng.randbytes(200)) for _ in range(300)]
    out = drive(learner, noise, "events:~bytes")
    assert all(o is None for o in out)
    assert learner.schemas["events:~bytes"].last_error is not None


def test_schemas_are_the_sorted_top_level_keys_per_kind() -> None:
    a = schema_of("events", msgpack.packb({"b": 1, "a": {"z": 2}}))
    b = schema_of("events", msgpack.packb({"a": 3, "b": "x"}))
    assert a == b == "events:a,b"
    assert schema_of("collab", msgpack.packb({"a": 1, "b": 2})) == "collab:a,b"
    assert schema_of("events", msgpack.packb([1, 2])) == "events:~list"
    assert schema_of("events", b"\xc1") is None
    odd = schema_of("events", msgpack.packb({"a b": 1}))
    assert odd is not None and odd.startswith("events:#")
    assert len(storage_key("events:a,b")) == 24
