"""Helpers shared by the test files: error checks that see Rust panics, comparison of two data
maps, and running the command line in a child process. The numpy reference implementation
(and ``softmax`` / ``sigmoid``) lives in ``reference.py``."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fastcarto
import numpy as np
import pyarrow as pa


def is_panic(exc: BaseException) -> bool:
    """pyo3's PanicException (module `pyo3_runtime`) derives from BaseException."""
    return any(k.__name__ == "PanicException" for k in type(exc).__mro__)


@contextlib.contextmanager
def raises(
    cls: type[BaseException] | tuple[type[BaseException], ...], *fragments: str
) -> Iterator[None]:
    """`pytest.raises(cls)` that also fails on a Rust panic (pyo3's PanicException, a
    BaseException) and checks that every fragment appears in the message."""
    try:
        yield
    except BaseException as exc:
        assert not is_panic(exc), f"a Rust panic reached Python: {exc!r}"
        if not isinstance(exc, cls):
            raise AssertionError(f"expected {cls}, got {type(exc).__name__}: {exc}") from exc
        # fragments are looked for outside the directories of any path in the message, so
        # that a temporary folder named after the test cannot supply them
        msg = re.sub(r"/\S*/", "/", str(exc))
        for frag in fragments:
            assert frag in msg, f"{frag!r} not in error message {msg!r}"
    else:
        raise AssertionError(f"{cls} not raised")


def assert_maps_equal(
    a: fastcarto.DataMap,
    b: fastcarto.DataMap,
    *,
    exact: bool = False,
    rtol: float = 1e-12,
    atol: float = 1e-12,
) -> None:
    """Same columns, types and rows; integer / bool / null columns exactly equal, floats to
    ``rtol``/``atol`` (bit for bit with ``exact``). The default ``atol``: sums of margins may
    cancel to ~0, where a relative tolerance means nothing."""
    ta, tb = a.to_arrow(), b.to_arrow()
    assert ta.column_names == tb.column_names
    assert ta.num_rows == tb.num_rows
    for name in ta.column_names:
        ca, cb = ta.column(name), tb.column(name)
        assert ca.type == cb.type, name
        if pa.types.is_floating(ca.type):
            xa, xb = ca.to_numpy(), cb.to_numpy()
            if exact:
                np.testing.assert_array_equal(xa, xb, err_msg=name)
            else:
                np.testing.assert_allclose(
                    xa, xb, rtol=rtol, atol=atol, equal_nan=True, err_msg=name
                )
        else:
            assert ca.to_pylist() == cb.to_pylist(), name


def run_cli_process(
    args: list[str], *, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m fastcarto *args`` in a child process (no debug tracebacks), its output as
    text."""
    return subprocess.run(
        [sys.executable, "-m", "fastcarto", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "FASTCARTO_DEBUG": ""},
        timeout=timeout,
        check=False,
    )
