"""Reproducible installs (issue #12, point 8): requirements.lock pins every dependency of
pyproject.toml (torch aside, which keeps its own pin), and the test command and the image
install from it."""

from __future__ import annotations

import re
import tomllib

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.split(";")[0].strip()
    return pins


def test_the_lock_pins_every_dependency_of_the_project_and_its_test_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [
        *project["dependencies"],
        *project["optional-dependencies"]["test"],
        *project["optional-dependencies"]["flower"],
    ]
    locked = _locked()
    environment = {**default_environment(), "extra": ""}
    missing, unmet = [], []
    for spec in wanted:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        if name == "torch" or (
            requirement.marker is not None and not requirement.marker.evaluate(environment)
        ):
            continue
        if name not in locked:
            missing.append(spec)
        elif not requirement.specifier.contains(locked[name], prereleases=True):
            unmet.append(f"{spec} (locked {locked[name]})")
    assert not missing and not unmet, (
        f"run ./scripts/lock.sh; missing {missing}, not meeting pyproject.toml {unmet}"
    )
    assert "torch" not in locked  # torch keeps its own pin, installed first


def test_the_test_command_and_the_image_install_from_the_lock() -> None:
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    assert 'pip_install "torch==2.13.0"' in test_sh
    assert "pip_install -r requirements.lock" in test_sh
    assert "pip_install -e . --no-deps" in test_sh
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"ARG TORCH_SPEC=torch==2\.13\.0\+cpu", dockerfile)
    assert "download.pytorch.org/whl/cpu" in dockerfile
    assert "pip install -r requirements.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text()
