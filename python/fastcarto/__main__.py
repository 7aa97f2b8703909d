"""``python -m fastcarto``: the ``fastcarto`` command line (see :mod:`fastcarto.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
