"""Package discovery for the component folders.

Each top-level folder (shared/, runtime/, gateway/, router/, client/, cli/, loadtest/)
contributes one subpackage of the ``frys`` namespace, so users write
``from frys.client import connect`` while the repository keeps one folder per component.
Components depend downward only (tests/test_layering.py holds the order).
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

COMPONENTS = ("shared", "runtime", "gateway", "router", "client", "cli", "loadtest")

packages: list[str] = []
package_dir: dict[str, str] = {}
for root in COMPONENTS:
    for name in find_namespace_packages(root, include=["frys.*"]):
        if not (Path(root) / name.replace(".", "/") / "__init__.py").exists():
            continue
        packages.append(name)
        package_dir[name] = f"{root}/{name.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
