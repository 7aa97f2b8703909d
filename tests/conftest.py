"""Shared test configuration: hypothesis profiles and the golden-values fixture.

Hypothesis runs derandomized and without an example database, so every run tests the same
examples (deterministic CI) and writes nothing to the working tree. Choose a profile with the
``HYPOTHESIS_PROFILE`` environment variable: ``ci`` (default), ``dev`` (fewer examples) or
``thorough`` (many more, randomized, for hunting bugs locally).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

DATA = Path(__file__).parent / "data"

# Keras 3 runs the integration's tests (and the doctest import of fastcarto.keras) on torch,
# which the test extra installs; its default backend, TensorFlow, is not installed.
os.environ.setdefault("KERAS_BACKEND", "torch")

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", parent=settings.get_profile("ci"), max_examples=20)
settings.register_profile(
    "thorough", parent=settings.get_profile("ci"), max_examples=2000, derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def profile_share(share: float) -> settings:
    """The loaded profile with ``share`` times its examples (``share * 100`` under "ci"): every
    other setting, and the scaling by HYPOTHESIS_PROFILE, comes from the profile."""
    return settings(max_examples=max(1, round(share * settings.default.max_examples)))


# Property tests take one of these (or the profile itself) as their decorator: how many
# examples a test draws is relative to the profile, so HYPOTHESIS_PROFILE=thorough reaches
# every one. Cheap properties over a wide input space draw more, those whose every example
# folds several runs, writes files or builds a long table draw fewer.
MORE_EXAMPLES = profile_share(1.5)
SOME_MORE_EXAMPLES = profile_share(1.2)
FEWER_EXAMPLES = profile_share(0.6)
FEW_EXAMPLES = profile_share(0.4)
FEWEST_EXAMPLES = profile_share(0.25)


# When a hypothesis test fails, hypothesis' pytest plugin imports libcst (to write a patch), which
# emits a DeprecationWarning from mypy_extensions; with warnings as errors that turns the failure
# report into an INTERNALERROR. Importing it here, warnings silenced, keeps failures readable.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with contextlib.suppress(Exception):
        import libcst.metadata  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    # When a property fails, hypothesis's pytest plugin imports libcst (to suggest an @example
    # patch), which on some installs triggers mypy_extensions' TypedDict DeprecationWarning; under
    # `filterwarnings = error` that turns the test failure into an INTERNALERROR that hides it.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
    )


def load_golden() -> dict[str, Any]:
    """``tests/data/golden_small.json`` with ``logits`` (float64, (E, N, C)) and ``labels``
    (int64, (N,)) as numpy arrays; ``expected`` maps each convention's description to its
    per-example values, ``"inf"`` read as ``float('inf')``."""
    with open(DATA / "golden_small.json", encoding="utf-8") as f:
        raw = json.load(f)

    def number(v: Any) -> Any:
        if isinstance(v, list):
            return [number(x) for x in v]
        if v == "inf":
            return float("inf")
        return v

    return {
        "logits": np.array(raw["logits"], dtype=np.float64),
        "labels": np.array(raw["labels"], dtype=np.int64),
        "expected": {
            key: np.array(number(v), dtype=np.float64) for key, v in raw["expected"].items()
        },
        "aum_package_unit_case": raw["aum_package_unit_case"],
    }


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    return load_golden()
