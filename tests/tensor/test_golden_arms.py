"""Golden vectors of the payload codecs the optimiser chooses among (5 ZSTD, 6 SHUFFLE_LZ4,
7 BYTE_DELTA_ZSTD): they decode as stated and appear in ``docs/tensor-frames.md``. They are
decode-only (zstd and LZ4 output may differ between library versions) and kept apart from
``golden_frames.json``, which every tensor decoder must read: a reader learns codecs 5-7 only
if it declares them (``connect.codecs``), and is never sent them otherwise."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from frys.shared.tensor import Codec, TensorDecoder, read_header

HERE = Path(__file__).parent
GOLDEN: list[dict[str, Any]] = json.loads((HERE / "golden_frames_arms.json").read_text())["vectors"]
DOC = (HERE.parent.parent / "docs" / "tensor-frames.md").read_text()


def ids(vector: dict[str, Any]) -> str:
    return str(vector["name"])


@pytest.mark.parametrize("vector", GOLDEN, ids=ids)
def test_vectors_decode_to_their_outputs(vector: dict[str, Any]) -> None:
    dec = TensorDecoder(vector["stream_id"])
    for step in vector["steps"]:
        for text in step["frames"]:
            out = dec.feed(bytes.fromhex(text))
        spec = step["output"]
        expected = np.frombuffer(bytes.fromhex(spec["hex"]), spec["dtype"]).reshape(spec["shape"])
        assert out.dtype == expected.dtype and out.shape == expected.shape
        assert out.tobytes() == expected.tobytes()


@pytest.mark.parametrize("vector", GOLDEN, ids=ids)
def test_vectors_appear_in_the_documentation(vector: dict[str, Any]) -> None:
    doc = re.sub(r"\s+", "", DOC)
    assert vector["name"] in DOC
    for step in vector["steps"]:
        for text in step["frames"]:
            assert text in doc


def test_the_vectors_cover_codecs_5_to_7() -> None:
    codecs = set()
    for vector in GOLDEN:
        for step in vector["steps"]:
            for text in step["frames"]:
                header = read_header(bytes.fromhex(text))
                codecs.add(header.codec)  # type: ignore[union-attr]
    assert codecs == {Codec.ZSTD, Codec.SHUFFLE_LZ4, Codec.BYTE_DELTA_ZSTD}
