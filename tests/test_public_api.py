"""The public surface is pinned: an addition or removal is a decision, made here and in the
README together, never an accident."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from pathlib import Path

import cds

ROOT = Path(__file__).resolve().parent.parent

PUBLIC = [
    "Alert", "CdsError", "Engine", "Facts", "InputError", "Knowledge", "MedicationOrder",
    "Observation", "Pack", "PackError", "PackErrors", "Patient", "PatientSummary", "Result",
    "__version__", "default_knowledge", "load_engine", "load_knowledge", "load_pack",
    "load_packs", "patient_from_fhir", "patient_from_native", "read_patient",
]


def test_all_is_pinned() -> None:
    assert sorted(cds.__all__) == sorted(PUBLIC)
    for name in cds.__all__:
        assert getattr(cds, name) is not None


def test_readme_lists_exactly_the_public_api() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"The public API is what `cds/__init__.py` exports:(.*?)\. An `Engine`", text,
                  re.S)
    assert m, "README: the public API paragraph is missing"
    names = re.sub(r"\(methods[^)]*\)", "", m.group(1))  # an Engine's methods are not exports
    listed = set(re.findall(r"`([A-Za-z_]+)`", names))
    assert listed == set(cds.__all__) - {"__version__"}


def test_the_version_lives_in_one_place() -> None:
    assert importlib.metadata.version("cds") == cds.__version__
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()


def test_every_package_says_what_it_is_for() -> None:
    for init in sorted((ROOT / "cds").rglob("__init__.py")):
        module = ".".join(init.relative_to(ROOT).with_suffix("").parts[:-1])
        doc = importlib.import_module(module).__doc__
        assert doc and doc.strip(), f"{module} has no docstring"


def test_every_error_is_a_cds_error() -> None:
    """Every exception class defined in the package derives from CdsError."""
    seen = 0
    for path in sorted((ROOT / "cds").rglob("*.py")):
        if "migrations" in path.parts:  # Alembic's scripts: run by Alembic, not imported
            continue
        module = importlib.import_module(
            ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and value.__module__ == module.__name__):
                seen += 1
                assert issubclass(value, cds.CdsError), f"{module.__name__}.{value.__name__}"
    assert seen >= 10
