"""Pictures of an audit: the feature space coloured by issue type (``Datalab.plot``) and the
issues marked on a data map (``DataMap.plot(issues=lab)``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .._plots import ISSUE_COLORS, _figure, _finish, _marker_size

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


_NO_ISSUE = "0.78"


def pca_2d(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The rows of ``x`` on their first two principal components (SVD of the centred rows);
    a single feature gives a second coordinate of zero."""
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:2].T
    if out.shape[1] < 2:
        out = np.column_stack([out, np.zeros(len(out))])
    return out  # type: ignore[no-any-return]


def plot_features(
    features: Any,
    issues: pd.DataFrame,
    names: list[str],
    *,
    max_points: int,
    seed: int,
    title: str | None,
    save: str | os.PathLike[str] | None,
) -> Figure:
    """See :meth:`fastcarto.Datalab.plot`."""
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive integer, got {max_points!r}")
    n = len(issues)
    flags = {name: issues[f"is_{name}_issue"].to_numpy(dtype=bool) for name in names}
    any_flag = np.zeros(n, dtype=bool)
    for f in flags.values():
        any_flag |= f
    # Every flagged example, then a seeded sample of the others, up to max_points in all.
    rng = np.random.default_rng(seed)
    flagged = np.flatnonzero(any_flag)
    if flagged.size > max_points:
        flagged = np.sort(rng.choice(flagged, size=max_points, replace=False))
    rest = np.flatnonzero(~any_flag)
    room = max_points - flagged.size
    if rest.size > room:
        rest = np.sort(rng.choice(rest, size=room, replace=False))
    rows = np.union1d(flagged, rest)
    x = np.asarray(features[rows], dtype=np.float64)
    finite = np.isfinite(x).all(axis=1)
    rows, x = rows[finite], x[finite]
    if rows.size == 0:
        raise ValueError("nothing to plot: every example has a missing (NaN) feature")
    xy = pca_2d(x)

    fig = _figure((7.0, 6.0))
    ax = fig.add_subplot()
    size = _marker_size(rows.size)
    # Each example in the colour of the first type that flags it; unflagged ones underneath.
    owner = np.full(rows.size, -1)
    for i, name in reversed(list(enumerate(names))):
        owner[flags[name][rows]] = i
    plain = owner < 0
    ax.scatter(
        xy[plain, 0], xy[plain, 1], s=size, c=_NO_ISSUE, linewidths=0, rasterized=True,
        label=f"no issue ({int((~any_flag).sum()):,})",
    )  # fmt: skip
    for i, name in enumerate(names):
        mine = owner == i
        if not mine.any():
            continue
        ax.scatter(
            xy[mine, 0], xy[mine, 1], s=max(size, 6.0) * 2, c=ISSUE_COLORS.get(name, "#000000"),
            edgecolors="white", linewidths=0.3, label=f"{name} ({int(flags[name].sum()):,})",
        )  # fmt: skip
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.legend(frameon=False, fontsize=8, markerscale=1.5)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title if title is not None else "Features coloured by issue type")
    caption = f"{rows.size:,} of {n:,} examples drawn (every flagged one up to {max_points:,})"
    dropped = int((~finite).sum())
    if dropped:
        caption += f"; {dropped:,} with a missing feature left out"
    fig.text(0.02, 0.01, caption, fontsize=7.5, color="0.3", ha="left", va="bottom")
    return _finish(fig, save)
