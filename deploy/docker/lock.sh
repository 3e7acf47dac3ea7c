#!/usr/bin/env bash
# Rewrite deploy/docker/constraints.txt: the runtime dependencies of pyproject.toml (no extras)
# as pip resolves them now, each pinned. Run from any directory, in an environment whose
# Python is the image's (3.11), after changing the dependencies.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
report=$(mktemp)
build=$(mktemp)
trap 'rm -f "$report" "$build"' EXIT
pip install --dry-run --ignore-installed --quiet --report "$report" "$root"
# The build backend too (pyproject.toml [build-system]): the image's wheel is built with it.
pip install --dry-run --ignore-installed --quiet --report "$build" "setuptools>=69" wheel
python3 - "$report" "$build" "$root/deploy/docker/constraints.txt" <<'PY'
import json
import sys

*reports, target = sys.argv[1:]
pins = {
    (item["metadata"]["name"], item["metadata"]["version"])
    for report in reports
    for item in json.load(open(report))["install"]
    if item["metadata"]["name"] != "frys-ws"
}
header = """\
# Every Python package of the production image and of its build, pinned: the Dockerfile
# builds and installs under this file (PIP_CONSTRAINT), so two builds of one commit get the
# same packages. Written by deploy/docker/lock.sh (the runtime dependencies of
# pyproject.toml, no extras, and the build backend, for CPython 3.11 on Linux);
# tests/deploy/test_dockerfile.py checks that it covers every runtime dependency and no
# development or load-test package.
"""
with open(target, "w") as out:
    out.write(header)
    out.writelines(f"{name}=={version}\n" for name, version in sorted(pins, key=lambda p: p[0].lower()))
PY
echo "$root/deploy/docker/constraints.txt"
