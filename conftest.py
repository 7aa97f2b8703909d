"""Settings for the docstring examples that ``pytest --doctest-modules python/fastcarto`` runs.

Keras runs on torch (the test extra installs it; Keras's default backend, TensorFlow, is not
installed), and the examples of the framework integrations ignore the warnings the frameworks
raise about themselves, as ``tests/test_integrations_lightning_keras.py`` does.
"""

from __future__ import annotations

import os

import pytest
from _pytest.doctest import DoctestItem

os.environ.setdefault("KERAS_BACKEND", "torch")

# Per module: warnings a framework raises about its own internals or the machine, never about
# fastcarto's use of it.
EXAMPLE_WARNINGS = {
    "fastcarto.lightning": (
        "ignore:.*LeafSpec.*:FutureWarning",
        "ignore:.*does not have many workers.*",
    ),
    "fastcarto.keras": ("ignore:__array__ implementation doesn't accept a copy keyword",),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, DoctestItem):
            continue
        for module, filters in EXAMPLE_WARNINGS.items():
            if item.name == module or item.name.startswith(module + "."):
                for spec in filters:
                    item.add_marker(pytest.mark.filterwarnings(spec))
