"""Golden vectors: the bytes of ``docs/tensor-frames.md``, decoded and (where the format fixes
every byte) re-encoded exactly. ``golden_frames.json`` holds the same vectors as the doc.

A step with an ``error`` names the error its frames must raise; its ``output`` is then the
value the decoder must still hold. A step with its own ``epoch`` was written by another
encoder than the vector's and is checked on its own."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import frys.shared.tensor
from frys.shared.tensor import (
    ChunkAssembler,
    ChunkHeader,
    Precision,
    TensorDecoder,
    TensorEncoder,
    TensorError,
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


def error_class(name: str) -> type[TensorError]:
    cls = getattr(frys.shared.tensor, name)
    assert isinstance(cls, type)
    assert issubclass(cls, TensorError)
    return cls


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
            if "error" in step:
                with pytest.raises(error_class(step["error"])):
                    dec.feed(frame)
                out = dec.current()
            else:
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
        assert dec.epoch == vector["epoch"]


def encoder(vector: dict[str, Any], epoch: int) -> TensorEncoder:
    return TensorEncoder(
        vector["stream_id"],
        first_sequence=vector["first_sequence"],
        precision=Precision[vector["precision"]],
        max_abs_error=vector["max_abs_error"],
        chunk_size=vector["chunk_size"],
        epoch=epoch,
    )


@pytest.mark.parametrize("vector", [v for v in GOLDEN if v["deterministic"]], ids=ids)
def test_golden_frames_are_what_the_encoder_writes(vector: dict[str, Any]) -> None:
    enc = encoder(vector, vector["epoch"])
    for step in vector["steps"]:
        if step.get("epoch", vector["epoch"]) == vector["epoch"]:
            assert [f.hex() for f in enc.encode(array(step["input"]))] == step["frames"]


@pytest.mark.parametrize(
    "vector", [v for v in GOLDEN if any("epoch" in s for s in v["steps"])], ids=ids
)
def test_frames_of_another_encoder_are_what_it_writes(vector: dict[str, Any]) -> None:
    """Such a step is that encoder's delta from the vector's first input to the step's."""
    first = array(vector["steps"][0]["input"])
    for step in vector["steps"]:
        if "epoch" in step:
            other = encoder(vector, step["epoch"])
            other.encode(first)
            assert [f.hex() for f in other.encode(array(step["input"]))] == step["frames"]


@pytest.mark.parametrize("vector", GOLDEN, ids=ids)
def test_golden_frames_appear_in_the_documentation(vector: dict[str, Any]) -> None:
    doc = re.sub(r"\s+", "", DOC)
    assert vector["name"] in DOC
    for step in vector["steps"]:
        for text in step["frames"]:
            assert text in doc
