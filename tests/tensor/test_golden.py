"""Golden vectors: the bytes of ``docs/tensor-frames.md``, decoded and (where the format fixes
every byte) re-encoded exactly. ``golden_frames.json`` holds the same vectors as the doc."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from frys.shared.tensor import (
    ChunkAssembler,
    ChunkHeader,
    Precision,
    TensorDecoder,
    TensorEncoder,
    read_header,
)

HERE = Path(__file__).parent
GOLDEN: list[dict[str, Any]] = json.loads((HERE / "golden_frames.json").read_text())["vectors"]
DOC = (HERE.parent.parent / "docs" / "tensor-frames.md").read_text()


def array(spec: dict[str, Any]) -> npt.NDArray[Any]:
    flat = np.frombuffer(bytes.fromhex(spec["hex"]), dtype=spec["dtype"])
    value = flat.reshape(spec["shape"])
    return np.array(value, order=spec["order"])


def ids(vector: dict[str, Any]) -> str:
    return str(vector["name"])


@pytest.mark.parametrize("vector", GOLDEN, ids=ids)
def test_golden_frames_decode(vector: dict[str, Any]) -> None:
    dec, assembler = TensorDecoder(vector["stream_id"]), ChunkAssembler()
    for step in vector["steps"]:
        out = None
        for text in step["frames"]:
            frame = bytes.fromhex(text)
            if isinstance(read_header(frame), ChunkHeader):
                whole = assembler.feed(frame, now=0.0)
                if whole is None:
                    continue
                frame = whole
            out = dec.feed(frame)
        expected = array(step["output"])
        assert out is not None
        assert out.dtype == expected.dtype
        assert out.shape == expected.shape
        assert out.tobytes(order="C") == expected.tobytes(order="C")
        assert out.flags.f_contiguous == expected.flags.f_contiguous
        rep = dec.representation
        assert rep is not None
        assert rep.precision.name == vector["precision"]


@pytest.mark.parametrize("vector", [v for v in GOLDEN if v["deterministic"]], ids=ids)
def test_golden_frames_are_what_the_encoder_writes(vector: dict[str, Any]) -> None:
    enc = TensorEncoder(
        vector["stream_id"],
        first_sequence=vector["first_sequence"],
        precision=Precision[vector["precision"]],
        max_abs_error=vector["max_abs_error"],
        chunk_size=vector["chunk_size"],
    )
    for step in vector["steps"]:
        assert [f.hex() for f in enc.encode(array(step["input"]))] == step["frames"]


@pytest.mark.parametrize("vector", GOLDEN, ids=ids)
def test_golden_frames_appear_in_the_documentation(vector: dict[str, Any]) -> None:
    doc = re.sub(r"\s+", "", DOC)
    assert vector["name"] in DOC
    for step in vector["steps"]:
        for text in step["frames"]:
            assert text in doc
