"""Hypothesis settings come from the profiles in conftest.py only, so ``HYPOTHESIS_PROFILE``
(``ci``, ``dev``, ``thorough``) reaches every property test."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import FEW_EXAMPLES, MORE_EXAMPLES, profile_share
from hypothesis import settings

TESTS = Path(__file__).resolve().parent


def settings_calls(path: Path) -> list[int]:
    """Lines of ``path`` that build or change hypothesis settings: ``settings(...)``,
    ``hypothesis.settings(...)``, ``settings.register_profile(...)``, ..."""
    lines = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (
            (isinstance(func, ast.Name) and func.id == "settings")
            or (isinstance(func, ast.Attribute) and func.attr == "settings")
            or (isinstance(func, ast.Attribute) and getattr(func.value, "id", None) == "settings")
        ):
            lines.add(node.lineno)
    return sorted(lines)


def test_no_settings_outside_conftest() -> None:
    found = {
        path.name: settings_calls(path)
        for path in sorted(TESTS.glob("*.py"))
        if path.name not in ("conftest.py", Path(__file__).name)
    }
    assert len(found) > 5
    assert {name: lines for name, lines in found.items() if lines} == {}


def test_shares_follow_the_loaded_profile() -> None:
    profile = settings.default
    for share in (MORE_EXAMPLES, FEW_EXAMPLES):
        assert share.derandomize == profile.derandomize
        assert share.deadline == profile.deadline
        assert share.database == profile.database
    assert MORE_EXAMPLES.max_examples == max(1, round(1.5 * profile.max_examples))
    assert FEW_EXAMPLES.max_examples == max(1, round(0.4 * profile.max_examples))
    thorough = settings.get_profile("thorough")
    assert thorough.max_examples > settings.get_profile("ci").max_examples
    assert profile_share(0.0).max_examples == 1


def test_settings_calls_are_found(tmp_path: Path) -> None:
    sample = tmp_path / "test_x.py"
    sample.write_text(
        "import hypothesis\nfrom hypothesis import settings\n"
        "@settings(max_examples=5)\ndef test_a(): ...\n"
        "S = hypothesis.settings(deadline=None)\n@S\ndef test_b(): ...\n"
        "settings.load_profile('dev')\n"
    )
    assert settings_calls(sample) == [3, 5, 8]
