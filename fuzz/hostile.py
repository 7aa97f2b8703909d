"""The hostile-input probes of `tests/test_hostile_inputs.py` at full size.

CI runs them small (seconds); this runs the same tests with every count of cuts, byte flips,
tamperings and truncation races multiplied by SCALE (default 50), e.g.

    python fuzz/hostile.py          # about a minute on two cores
    python fuzz/hostile.py 500      # thousands of cases per probe

Any failure is a finding: a signal, a panic, an error message of several lines or without its
file, a silent loss.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

if __name__ == "__main__":
    os.environ["FASTCARTO_HOSTILE_SCALE"] = sys.argv[1] if len(sys.argv) > 1 else "50"
    tests = Path(__file__).resolve().parent.parent / "tests" / "test_hostile_inputs.py"
    sys.exit(pytest.main([str(tests), "-q", "-p", "no:cacheprovider"]))
