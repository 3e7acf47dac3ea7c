"""The browser SDK's pure parts under Node's own test runner, and the served copy of the SDK.

``node --test`` runs ``web/test/*.test.js`` against the copy of the SDK that gateways serve
(``gateway/frys/gateway/static/sdk``): the wire codec against the protocol's golden vectors,
the reconnect rules against the document, the protocol core, the tensor decoder against the
tensor golden vectors and against frames the Python encoder writes here for every dtype,
precision and codec, and the client against a scripted WebSocket. The served copy must be
the SDK's source as ``npm run vendor`` writes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from frys.shared.tensor import Precision, TensorDecoder, TensorEncoder

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
SERVED = ROOT / "gateway" / "frys" / "gateway" / "static" / "sdk"
VENDORED = {"@msgpack/msgpack": "./vendor/msgpack/index.mjs", "fzstd": "./vendor/fzstd/index.mjs"}
"""How ``npm run vendor`` rewrites the package imports of ``deps.js`` in the served copy."""


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail(
            "node is required for the browser SDK tests (Node.js 20 or newer): "
            "apt-get install -y nodejs, or install it from nodejs.org"
        )
    return found


def test_served_sdk_is_the_source() -> None:
    """``static/sdk`` holds ``web/src`` and ``web/types`` as ``npm run vendor`` writes them,
    and the vendored builds are of the versions ``web/package-lock.json`` pins."""
    for source in sorted((WEB / "src").glob("*.js")) + sorted((WEB / "types").glob("*.d.ts")):
        text = source.read_text(encoding="utf-8")
        if source.name == "deps.js":
            for package, path in VENDORED.items():
                text = text.replace(f'"{package}"', f'"{path}"')
        served = SERVED / source.name
        assert served.is_file(), f"{served} is missing: run npm run vendor in web/"
        assert served.read_text(encoding="utf-8") == text, f"{served.name}: run npm run vendor"
    lock = json.loads((WEB / "package-lock.json").read_text(encoding="utf-8"))
    versions = json.loads((SERVED / "vendor" / "VERSIONS.json").read_text(encoding="utf-8"))
    for package in VENDORED:
        assert versions[package] == lock["packages"][f"node_modules/{package}"]["version"]
    for entry in ("vendor/msgpack/index.mjs", "vendor/fzstd/index.mjs"):
        assert (SERVED / entry).is_file()


# --- frames of the Python encoder, for the JavaScript decoder ---------------------------


def _value(decoded: npt.NDArray[Any]) -> dict[str, Any]:
    """A decoded array as the fixtures write it: C-order bytes, and for float16 the bytes of
    the float32 values the JavaScript decoder returns."""
    out = {
        "dtype": str(decoded.dtype),
        "shape": list(decoded.shape),
        "order": "C",
        "hex": np.ascontiguousarray(decoded).tobytes().hex(),
    }
    if decoded.dtype == np.float16:
        out["js_hex"] = np.ascontiguousarray(decoded.astype(np.float32)).tobytes().hex()
    return out


def _vector(
    name: str,
    arrays: list[npt.NDArray[Any]],
    *,
    precision: Precision = Precision.EXACT,
    max_abs_error: float = 0.0,
    chunk_size: int = 1 << 20,
    stream: int = 1,
) -> dict[str, Any]:
    encoder = TensorEncoder(
        stream, precision=precision, max_abs_error=max_abs_error, chunk_size=chunk_size
    )
    decoder = TensorDecoder(stream)
    steps = []
    for array in arrays:
        frames = encoder.encode(array)
        whole = frames[0] if len(frames) == 1 else _join(frames)
        steps.append({"frames": [f.hex() for f in frames], "output": _value(decoder.feed(whole))})
    rep = decoder.representation
    assert rep is not None
    return {
        "name": name,
        "stream_id": stream,
        "dtype": str(arrays[0].dtype),
        "precision": rep.precision.name,
        "steps": steps,
    }


def _join(chunks: list[bytes]) -> bytes:
    from frys.shared.tensor import ChunkAssembler

    assembler = ChunkAssembler()
    whole = None
    for chunk in chunks:
        whole = assembler.feed(chunk, now=0.0)
    assert whole is not None
    return whole


def _random(rng: np.random.Generator, dtype: np.dtype[Any], shape: tuple[int, ...]) -> Any:
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _changed(array: npt.NDArray[Any], positions: list[int], rng: np.random.Generator) -> Any:
    out = array.copy()
    flat = out.reshape(-1, order="A")
    fresh = _random(rng, array.dtype, (len(positions),))
    for i, p in enumerate(positions):
        flat[p] = fresh[i] if fresh[i] != flat[p] else ~flat[p] if array.dtype.kind == "b" else 0
    return out


def cross_vectors() -> list[dict[str, Any]]:
    """Streams that take every dtype, precision and codec of the format through the
    Python encoder: keyframes (raw, shuffled zstd), deltas (raw, dense zstd, sparse bitmap,
    sparse gaps, unchanged), Fortran order, 0-d and empty arrays, chunks."""
    rng = np.random.default_rng(7)
    vectors = []
    dtypes = [
        "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    ]  # fmt: skip
    for name in dtypes:
        dtype = np.dtype(name)
        base = _random(rng, dtype, (16, 32))
        few = _changed(base, [3, 300, 511], rng)  # gap-coded
        many = _changed(few, list(range(0, 512, 5)), rng)  # bitmap
        every = _random(rng, dtype, (16, 32))  # dense
        smooth = np.zeros((16, 32), dtype)  # compresses: shuffled zstd keyframe
        vectors.append(_vector(f"{name}_stream", [base, few, many, many, every]))
        vectors.append(_vector(f"{name}_smooth", [smooth, _changed(smooth, [7], rng)]))
    field = np.cumsum(rng.standard_normal((24, 40)), axis=1)
    vectors.append(
        _vector("float64_fortran", [np.asfortranarray(field), np.asfortranarray(field + 1)])
    )
    for precision, bound in (
        (Precision.FLOAT16, 0.0),
        (Precision.BFLOAT16, 0.0),
        (Precision.QUANTIZED, 1e-3),
    ):
        for name in ("float32", "float64"):
            values = (field * 100).astype(name)
            moved = values.copy()
            moved[3, 4:9] += 1.25
            vectors.append(
                _vector(
                    f"{name}_{precision.name.lower()}",
                    [values, moved],
                    precision=precision,
                    max_abs_error=bound,
                )
            )
    vectors.append(_vector("scalar", [np.array(2.5), np.array(-1.0)]))
    vectors.append(_vector("empty", [np.zeros((0, 5), np.int32)]))
    big = rng.standard_normal(1000).astype(np.float32)
    bumped = big.copy()
    bumped[::3] += 1
    vectors.append(_vector("chunked", [big, bumped], chunk_size=256))
    return vectors


def test_node_test_runner(tmp_path: Path) -> None:
    """``node --test`` over the SDK's tests; the Python encoder's frames are handed over in
    a file so that the JavaScript decoder is checked against the reference encoder."""
    fixture = tmp_path / "python_frames.json"
    fixture.write_text(json.dumps({"vectors": cross_vectors()}), encoding="utf-8")
    tests = sorted(str(p.relative_to(WEB)) for p in (WEB / "test").glob("*.test.js"))
    assert len(tests) >= 5
    env = {**os.environ, "FRYS_TENSOR_VECTORS": str(fixture)}
    done = subprocess.run(
        [node(), "--test", *tests],
        cwd=WEB,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    summary = {
        line.split()[1]: int(line.split()[2])
        for line in report.splitlines()
        if line.startswith("# ") and len(line.split()) == 3 and line.split()[2].isdigit()
    }
    assert summary.get("fail") == 0 and summary.get("pass", 0) >= 200, summary
    assert summary.get("skipped") == 0, report[-3000:]
