"""Plots of a data map: the map itself, AUM, forgetting, and p(gold) trajectories.

matplotlib is imported inside each function, so ``import fastcarto`` never pays for it. Figures
are ``matplotlib.figure.Figure`` objects created without pyplot: nothing is shown or kept in a
global registry, any backend (or none) works, and callers own the figure they get back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from . import _core
from ._regions import REGIONS, RegionRule, require

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure

    from ._datamap import DataMap
    from ._inputs import Kind

PlotMode = Literal["auto", "scatter", "density"]

#: Okabe & Ito's colour-blind-safe palette (blue, orange, bluish green, vermillion, sky blue,
#: reddish purple, yellow, black).
OKABE_ITO = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#56B4E9",
    "#CC79A7",
    "#F0E442",
    "#000000",
)
REGION_COLORS = {"easy-to-learn": "#009E73", "ambiguous": "#E69F00", "hard-to-learn": "#D55E00"}
_HIST_COLOR = "#0072B2"
_DPI = 150
#: Suffixes of files read as long tables (one row per (epoch, example)) by the trajectories.
#: At most this many panels for ``by_class=True``.
MAX_CLASS_PANELS = 36


def _figure(figsize: tuple[float, float], **kwargs: Any) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=_DPI, **kwargs)


def _finish(fig: Figure, save: str | os.PathLike[str] | None) -> Figure:
    if save is not None:
        fig.savefig(os.fspath(save), dpi=_DPI)
    return fig


def _correctness_colors(dm: DataMap) -> tuple[Colormap, Normalize, list[float] | None]:
    """Colour map and normalization of correctness: discrete levels k/E when every example
    has the same small number of epochs E, continuous otherwise."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize

    base = colormaps["viridis"]
    epochs = _constant_epochs(dm)
    if epochs is not None and epochs <= 40:
        levels = epochs + 1
        cmap = ListedColormap(base(np.linspace(0.0, 0.92, levels)))
        bounds = (np.arange(levels + 1) - 0.5) / epochs
        step = max(1, math.ceil(levels / 11))
        ticks = [k / epochs for k in range(0, levels, step)]
        if ticks[-1] != 1.0:
            ticks.append(1.0)
        return cmap, BoundaryNorm(bounds, levels), ticks
    cmap = ListedColormap(base(np.linspace(0.0, 0.92, 256)))
    return cmap, Normalize(0.0, 1.0), None


def _constant_epochs(dm: DataMap) -> int | None:
    if "n_epochs" not in dm.columns or len(dm) == 0:
        return None
    n = np.asarray(dm["n_epochs"])
    lo, hi = int(n.min()), int(n.max())
    return hi if lo == hi and hi > 0 else None


def _correctness(dm: DataMap) -> npt.NDArray[np.float64]:
    corr = np.asarray(dm["correctness"], dtype=np.float64)
    if dm.compat == "cartography":  # a count of correct epochs; scaled as cartography's plot
        top = np.nanmax(corr) if np.isfinite(corr).any() else 1.0
        corr = corr / max(float(top), 1.0)
    return corr


def _shown_rows(
    finite: npt.NDArray[np.bool_], max_points: int, seed: int
) -> tuple[npt.NDArray[np.int64], bool]:
    """Rows drawn as points (in a shuffled, deterministic drawing order), and whether they are
    a subsample."""
    rows = np.flatnonzero(finite)
    rng = np.random.default_rng(seed)
    subsampled = rows.size > max_points
    if subsampled:
        rows = np.sort(rng.choice(rows, size=max_points, replace=False))
    return rows[rng.permutation(rows.size)], subsampled


def _marker_size(n: int) -> float:
    return float(np.clip(12_000 / max(n, 1), 1.0, 16.0))


def plot_datamap(
    dm: DataMap,
    *,
    by_class: bool = False,
    mode: PlotMode = "auto",
    max_points: int = 50_000,
    seed: int = 0,
    rule: RegionRule | None = None,
    title: str | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Figure:
    """See :meth:`DataMap.plot`."""
    require(dm, "plot", "confidence", "variability", "correctness")
    if mode not in ("auto", "scatter", "density"):
        raise ValueError(f"mode must be 'auto', 'scatter' or 'density', got {mode!r}")
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive integer, got {max_points!r}")
    rule = rule or RegionRule()
    conf = np.asarray(dm["confidence"], dtype=np.float64)
    var = np.asarray(dm["variability"], dtype=np.float64)
    corr = _correctness(dm)
    finite = np.isfinite(conf) & np.isfinite(var) & np.isfinite(corr)
    if not finite.any():
        raise ValueError("nothing to plot: no example has a finite confidence and variability")
    v_thr, c_thr = rule.thresholds(var)
    codes = rule.codes(conf, var)
    x_max = float(np.max(var[finite]))
    x_max = 1.05 * max(x_max, v_thr if math.isfinite(v_thr) else 0.0, 1e-3)
    cmap, norm, ticks = _correctness_colors(dm)
    n_total = int(finite.sum())
    what = "rows" if "class" in dm.columns else "examples"
    heading = title if title is not None else _default_title(dm)
    if by_class:
        return _finish(
            _plot_by_class(
                dm, conf, var, corr, finite, codes, (v_thr, c_thr), x_max, cmap, norm, ticks,
                mode=mode, max_points=max_points, seed=seed, heading=heading,
            ),
            save,
        )  # fmt: skip

    from matplotlib.gridspec import GridSpec

    fig = _figure((7.6, 6.6))
    grid = GridSpec(
        2, 3, figure=fig, width_ratios=[5.0, 1.3, 0.18], height_ratios=[1.3, 5.0],
        left=0.1, right=0.9, bottom=0.14, top=0.9, wspace=0.06, hspace=0.06,
    )  # fmt: skip
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    right = fig.add_subplot(grid[1, 1], sharey=ax)
    corner = fig.add_subplot(grid[0, 1])
    cax = fig.add_subplot(grid[1, 2])

    mappable, caption = _draw_points(
        ax, conf, var, corr, finite, cmap, norm, mode=mode, max_points=max_points, seed=seed,
        x_max=x_max, what=what,
    )  # fmt: skip
    _draw_regions(ax, codes, (v_thr, c_thr), x_max)
    ax.set_xlim(0.0, x_max)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("variability (std. of p(gold) over epochs)")
    ax.set_ylabel("confidence (mean p(gold) over epochs)")

    # Marginal histograms count every example, whatever the points show.
    top.hist(var[finite], bins=60, range=(0.0, x_max), color=_HIST_COLOR, alpha=0.85)
    top.set_ylabel(what)
    top.tick_params(labelbottom=False)
    right.hist(
        conf[finite], bins=60, range=(0.0, 1.0), orientation="horizontal", color=_HIST_COLOR,
        alpha=0.85,
    )  # fmt: skip
    right.set_xlabel(what)
    right.tick_params(labelleft=False)
    if math.isfinite(v_thr) and v_thr <= x_max:
        top.axvline(v_thr, color="0.25", linestyle="--", linewidth=0.9)
    right.axhline(c_thr, color="0.25", linestyle="--", linewidth=0.9)
    top.yaxis.set_major_formatter(_count_formatter())
    right.xaxis.set_major_formatter(_count_formatter())
    for a in (top, right):
        for side in ("top", "right"):
            a.spines[side].set_visible(False)
    _draw_correctness_histogram(corner, corr[finite], cmap, norm, dm, what)

    cbar = fig.colorbar(mappable, cax=cax, ticks=ticks)
    if cbar.solids is not None:  # opaque, whatever the points' alpha
        cbar.solids.set_alpha(1.0)
    cbar.set_label("correctness (fraction of epochs predicted right)")
    if ticks is not None:
        cbar.ax.set_yticklabels([f"{t:.2g}" for t in ticks])
    fig.suptitle(heading, fontsize=12)
    unseen = len(dm) - n_total
    if unseen:
        caption += f"; {unseen:,} {what} without a finite confidence/variability are left out"
    fig.text(0.1, 0.03, caption, fontsize=7.5, color="0.3", ha="left", va="bottom")
    return _finish(fig, save)


def _count_formatter() -> Any:
    """Tick labels for counts: 950, 12k, 1.5M."""
    from matplotlib.ticker import FuncFormatter

    def short(value: float, _pos: object = None) -> str:
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{suffix}"
        return f"{value:.3g}"

    return FuncFormatter(short)


def _default_title(dm: DataMap) -> str:
    n = len(dm)
    epochs = _constant_epochs(dm)
    parts = [f"{n:,} {'rows' if 'class' in dm.columns else 'examples'}", dm.kind]
    if epochs is not None:
        parts.append(f"{epochs} epochs")
    return f"Data map ({', '.join(parts)})"


def _draw_points(
    ax: Axes,
    conf: npt.NDArray[np.float64],
    var: npt.NDArray[np.float64],
    corr: npt.NDArray[np.float64],
    finite: npt.NDArray[np.bool_],
    cmap: Colormap,
    norm: Normalize,
    *,
    mode: PlotMode,
    max_points: int,
    seed: int,
    x_max: float,
    what: str,
    caption_ok: bool = True,
) -> tuple[Any, str]:
    """Points or density on ``ax``; returns the colour mappable and a caption saying which."""
    n_total = int(finite.sum())
    if mode == "density":
        bins = 80
        x_edges = np.linspace(0.0, x_max, bins + 1)
        y_edges = np.linspace(-0.02, 1.02, bins + 1)
        # One pass of integer binning (np.histogram2d is several times slower at 10M points).
        ix = np.clip((var[finite] * (bins / x_max)).astype(np.int64), 0, bins - 1)
        iy = np.clip(((conf[finite] + 0.02) * (bins / 1.04)).astype(np.int64), 0, bins - 1)
        cell = ix * bins + iy
        counts = np.bincount(cell, minlength=bins * bins).reshape(bins, bins)
        sums = np.bincount(cell, weights=corr[finite], minlength=bins * bins).reshape(bins, bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.ma.masked_invalid(sums / counts)
        mesh = ax.pcolormesh(x_edges, y_edges, mean.T, cmap=cmap, norm=norm, rasterized=True)
        return mesh, (
            f"density: all {n_total:,} {what} in {bins}x{bins} bins, coloured by their mean "
            "correctness"
        )
    rows, subsampled = _shown_rows(finite, max_points, seed)
    points = ax.scatter(
        var[rows], conf[rows], c=corr[rows], cmap=cmap, norm=norm, s=_marker_size(rows.size),
        linewidths=0, alpha=0.8, rasterized=True,
    )  # fmt: skip
    if subsampled:
        caption = (
            f"points: a random {rows.size:,} of {n_total:,} {what} (seed {seed}); "
            "histograms count all"
        )
    else:
        caption = f"points: all {n_total:,} {what}"
    return points, caption


def _draw_regions(
    ax: Axes,
    codes: npt.NDArray[np.int8],
    thresholds: tuple[float, float],
    x_max: float,
    *,
    fontsize: float = 9.0,
    labels: bool = True,
) -> None:
    """The boundaries of the region rule and, inside each region, its name and share."""
    v_thr, c_thr = thresholds
    left = min(v_thr, x_max) if math.isfinite(v_thr) else x_max
    if left < x_max:
        ax.axvline(left, color="0.2", linestyle="--", linewidth=1.0)
    ax.hlines(c_thr, 0.0, left, colors="0.2", linestyles="--", linewidth=1.0)
    if not labels:
        return
    n = int((codes >= 0).sum())
    centres = {
        "easy-to-learn": (left / 2, (max(c_thr, 0.0) + 1.0) / 2),
        "hard-to-learn": (left / 2, min(c_thr, 1.0) / 2),
        "ambiguous": ((left + x_max) / 2, 0.5),
    }
    for code, region in enumerate(REGIONS):
        count = int((codes == code).sum())
        if count == 0:
            continue
        x, y = centres[region]
        ax.text(
            x, y, f"{region}\n{count:,} ({100 * count / max(n, 1):.0f}%)", ha="center",
            va="center", fontsize=fontsize, zorder=5,
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": REGION_COLORS[region],
                  "lw": 1.5, "alpha": 0.85},
        )  # fmt: skip


def _draw_correctness_histogram(
    ax: Axes,
    corr: npt.NDArray[np.float64],
    cmap: Colormap,
    norm: Normalize,
    dm: DataMap,
    what: str,
) -> None:
    epochs = _constant_epochs(dm)
    if epochs is not None and epochs <= 40 and dm.compat != "cartography":
        counts = np.bincount(np.rint(corr * epochs).astype(np.int64), minlength=epochs + 1)
        centres = np.arange(epochs + 1) / epochs
        ax.bar(centres, counts, width=0.9 / epochs, color=cmap(norm(centres)))
    else:
        counts_f, edges = np.histogram(corr, bins=20, range=(0.0, 1.0))
        centres = (edges[:-1] + edges[1:]) / 2
        ax.bar(centres, counts_f, width=0.045, color=cmap(norm(centres)))
    ax.set_xlim(-0.06, 1.06)
    ax.set_xticks([0.0, 0.5, 1.0])
    ax.set_xlabel("correctness", fontsize=8, labelpad=1)
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    ax.tick_params(labelsize=7, labelleft=False, left=False)
    for side in ("left", "right", "bottom"):
        ax.spines[side].set_visible(False)


def _plot_by_class(
    dm: DataMap,
    conf: npt.NDArray[np.float64],
    var: npt.NDArray[np.float64],
    corr: npt.NDArray[np.float64],
    finite: npt.NDArray[np.bool_],
    codes: npt.NDArray[np.int8],
    thresholds: tuple[float, float],
    x_max: float,
    cmap: Colormap,
    norm: Normalize,
    ticks: list[float] | None,
    *,
    mode: PlotMode,
    max_points: int,
    seed: int,
    heading: str,
) -> Figure:
    by = "class" if "class" in dm.columns else "label"
    require(dm, "plot(by_class=True)", by)
    keys = np.asarray(dm[by], dtype=np.float64)
    has_key = finite & np.isfinite(keys)
    classes = np.unique(keys[has_key]).astype(np.int64)
    if classes.size > MAX_CLASS_PANELS:
        raise ValueError(
            f"by_class=True draws one panel per {by}; {classes.size} are too many "
            f"(at most {MAX_CLASS_PANELS}): plot a query() of some classes instead"
        )
    if classes.size == 0:
        raise ValueError(f"nothing to plot: no example has a {by}")
    ncols = min(4, classes.size)
    nrows = math.ceil(classes.size / ncols)
    fig = _figure((2.9 * ncols + 1.0, 2.6 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    # One subsample over the whole map, split by class: each panel shows its share.
    shown, subsampled = _shown_rows(has_key, max_points, seed)
    mappable: Any = None
    what = "rows" if "class" in dm.columns else "examples"
    for i, cls in enumerate(classes):
        ax = axes[i // ncols, i % ncols]
        members = has_key & (keys == cls)
        if mode == "density":
            mappable, _ = _draw_points(
                ax, conf, var, corr, members, cmap, norm, mode=mode, max_points=max_points,
                seed=seed, x_max=x_max, what=what,
            )  # fmt: skip
        else:
            rows = shown[members[shown]]
            mappable = ax.scatter(
                var[rows], conf[rows], c=corr[rows], cmap=cmap, norm=norm,
                s=_marker_size(rows.size) * 0.6, linewidths=0, alpha=0.8, rasterized=True,
            )  # fmt: skip
        _draw_regions(ax, codes, thresholds, x_max, labels=False)
        n = int(members.sum())
        share = {r: int((codes[members] == k).sum()) for k, r in enumerate(REGIONS)}
        ax.set_title(
            f"{by} {cls}: {n:,}  (hard {100 * share['hard-to-learn'] / max(n, 1):.0f}%, "
            f"ambig. {100 * share['ambiguous'] / max(n, 1):.0f}%)",
            fontsize=8.5,
        )
        ax.set_xlim(0.0, x_max)
        ax.set_ylim(-0.02, 1.02)
    for j in range(classes.size, nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    for ax in axes[-1, :]:
        ax.set_xlabel("variability")
    for ax in axes[:, 0]:
        ax.set_ylabel("confidence")
    cbar = fig.colorbar(mappable, ax=axes, ticks=ticks, shrink=0.8)
    cbar.set_label("correctness")
    if mode == "density":
        how = f"density: mean correctness in bins, all {int(has_key.sum()):,} {what}"
    elif subsampled:
        how = f"points: a random {shown.size:,} of {int(has_key.sum()):,} {what} (seed {seed})"
    else:
        how = f"points: all {int(has_key.sum()):,} {what}"
    fig.suptitle(f"{heading} by {by}\n{how}; dashed lines: region thresholds of the whole map",
                 fontsize=10)  # fmt: skip
    return fig


# --------------------------------------------------------------------------------------------
# AUM and forgetting


def plot_aum(
    dm: DataMap,
    *,
    threshold_mask: npt.ArrayLike | None = None,
    percentile: float = 99.0,
    bins: int = 60,
    title: str | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Figure:
    """See :meth:`DataMap.plot_aum`."""
    from ._label_issues import _threshold_mask, aum_threshold

    require(dm, "plot_aum", "aum")
    aum = np.asarray(dm["aum"], dtype=np.float64)
    finite = np.isfinite(aum)
    if not finite.any():
        raise ValueError("nothing to plot: no example has an AUM")
    fig = _figure((6.8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    edges = np.histogram_bin_edges(aum[finite], bins=bins).tolist()
    what = "rows" if "class" in dm.columns else "examples"
    if threshold_mask is not None:
        mask = _threshold_mask(dm, threshold_mask)
        thr = aum_threshold(dm, mask, percentile=percentile)
        others = finite & ~mask
        flagged = int((aum[others] < thr).sum())
        ax.hist(aum[others], bins=edges, color=_HIST_COLOR, alpha=0.8,
                label=f"examples ({int(others.sum()):,})")  # fmt: skip
        ax.hist(aum[finite & mask], bins=edges, color=OKABE_ITO[1], alpha=0.75,
                label=f"threshold samples ({int((finite & mask).sum()):,})")  # fmt: skip
        ax.axvline(thr, color=OKABE_ITO[3], linestyle="--", linewidth=1.5,
                   label=f"{percentile:g}th percentile of threshold samples: {thr:.3g}\n"
                   f"{flagged:,} examples below it flagged")  # fmt: skip
    else:
        flagged = int((aum[finite] < 0).sum())
        ax.hist(aum[finite], bins=edges, color=_HIST_COLOR, alpha=0.85,
                label=f"{what} ({int(finite.sum()):,})")  # fmt: skip
        ax.axvline(0.0, color=OKABE_ITO[3], linestyle="--", linewidth=1.5,
                   label=f"AUM = 0 (default rule): {flagged:,} below flagged")  # fmt: skip
    margin = "logit" if dm.kind == "logits" else "probability"
    ax.set_xlabel(f"area under the margin (mean {margin} margin of the given label)")
    ax.set_ylabel(what)
    ax.legend(frameon=False, fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title if title is not None else f"AUM ({len(dm):,} {what}, {dm.kind})")
    return _finish(fig, save)


def plot_forgetting(
    dm: DataMap,
    *,
    log: bool = False,
    title: str | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Figure:
    """See :meth:`DataMap.plot_forgetting`."""
    require(dm, "plot_forgetting", "forgetting", "never_learned")
    forgetting = np.asarray(dm["forgetting"], dtype=np.int64)
    never = np.asarray(dm["never_learned"], dtype=bool)
    observed = np.asarray(dm["n_epochs"]) > 0 if "n_epochs" in dm.columns else np.ones_like(never)
    learned = observed & ~never
    cap = 10
    counts = np.bincount(np.minimum(forgetting[learned], cap), minlength=cap + 1)
    last = int(np.max(np.flatnonzero(counts))) if counts.any() else 0
    counts = counts[: last + 1]
    names = [str(k) for k in range(counts.size)]
    if counts.size == cap + 1:
        names[-1] = f"{cap}+"
    fig = _figure((6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(counts.size)
    ax.bar(x, counts, color=_HIST_COLOR, label="learned at some epoch")
    n_never = int(never.sum())
    ax.bar([counts.size + 0.6], [n_never], color=OKABE_ITO[3], label="never learned")
    ax.set_xticks([*x, counts.size + 0.6], [*names, "never\nlearned"])
    what = "rows" if "class" in dm.columns else "examples"
    for xi, c in zip([*x, counts.size + 0.6], [*counts, n_never], strict=True):
        if c:
            ax.annotate(f"{int(c):,}", (xi, c), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 1), textcoords="offset points")  # fmt: skip
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("forgetting events (correct -> wrong transitions between epochs)")
    ax.set_ylabel(what)
    ax.legend(frameon=False, fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title if title is not None else f"Forgetting ({len(dm):,} {what})")
    return _finish(fig, save)


# --------------------------------------------------------------------------------------------
# trajectories of p(gold)


def is_table_source(source: Any) -> bool:
    """Whether ``source`` is read as a long table (one row per (epoch, example)): an Arrow /
    Parquet file, a directory of them, or an object speaking the Arrow PyCapsule stream
    interface."""
    if isinstance(source, (str, os.PathLike)):
        # As `compute` decides: everything but a `.npy` array goes to the readers' discovery
        # (files, directories, globs), which names what it cannot read.
        path = Path(source)
        return path.is_dir() or path.suffix.lower() != ".npy"
    from ._tables import is_table

    return is_table(source) and not isinstance(source, np.ndarray)


def trajectories(
    ids: npt.ArrayLike,
    source: Any,
    labels: npt.ArrayLike | None = None,
    *,
    kind: Kind,
) -> pd.DataFrame:
    """p(gold) at every epoch for the examples ``ids``: a DataFrame indexed by epoch, one
    column per id (in the order given).

    ``source`` is what the map was computed from: a dense ``(epochs, examples, classes)``
    array or ``.npy`` path (``ids`` are then row positions and ``labels`` the examples'
    labels), or a long table — an Arrow IPC / Parquet file, a directory of them, or any Arrow
    stream — with columns ``epoch``, ``id``, ``label`` and ``logits`` or ``probs`` (a list of
    floats per row), whose ``id`` values are matched and whose labels are used. Only the chosen
    examples are read. p(gold) at each epoch is the engine's ``confidence`` of that single
    observation, so it agrees with the map exactly.

    >>> import numpy as np, fastcarto
    >>> z = np.array([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 0.0]]])
    >>> fastcarto.trajectories([1], z, [1, 1], kind="logits").round(3)[1].tolist()
    [0.731, 0.269]
    """
    from ._inputs import KINDS, check_choice

    check_choice("kind", kind, KINDS)
    frame, _ = _trajectories(ids, source, labels, kind=kind)
    return frame


def _trajectories(
    ids: npt.ArrayLike, source: Any, labels: npt.ArrayLike | None, *, kind: Kind
) -> tuple[pd.DataFrame, dict[Any, Any]]:
    """The trajectories and each id's label."""
    import pandas as pd

    from ._compute import compute

    wanted = np.atleast_1d(np.asarray(ids))
    if wanted.ndim != 1 or wanted.size == 0:
        raise ValueError("ids must be a non-empty list of example ids")
    repeated = pd.Index(wanted)[pd.Index(wanted).duplicated()]
    if len(repeated):
        raise ValueError(f"ids must be distinct; {repeated.tolist()[0]!r} is given more than once")
    if is_table_source(source):
        if labels is not None:
            raise ValueError("labels come from the table's 'label' column; do not pass labels=")
        epoch, row_ids, row_labels, outputs = _read_long_rows(source, wanted, kind)
    else:
        epoch, row_ids, row_labels, outputs = _read_dense_rows(source, wanted, labels)
    # One engine pass over the chosen (epoch, example) observations, each as its own example:
    # its confidence is p(gold) at that epoch.
    gold = compute(outputs[None], row_labels, kind=kind, nan_policy="omit")["confidence"]
    long = pd.DataFrame({"epoch": epoch, "id": row_ids, "p": gold})
    repeated_rows = long.duplicated(["epoch", "id"]).to_numpy()
    if repeated_rows.any():
        at = int(np.argmax(repeated_rows))
        dup_id, dup_epoch = row_ids.tolist()[at], int(epoch[at])
        shown = repr(dup_id) if isinstance(dup_id, str) else dup_id
        raise _core.EpochOrderError(
            f"example with id {shown} has more than one row for epoch {dup_epoch} (duplicate row)"
        )
    frame = long.pivot(index="epoch", columns="id", values="p")
    order = wanted.tolist()
    frame = frame.reindex(columns=order)
    frame.columns.name = "id"
    label_of = dict(zip(row_ids.tolist(), row_labels.tolist(), strict=True))
    return frame, label_of


def _read_dense_rows(
    source: Any, wanted: npt.NDArray[Any], labels: npt.ArrayLike | None
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[Any]]:
    if isinstance(source, (str, os.PathLike)):
        # A `.npy` file (`is_table_source` sends every other path to the readers).
        arr: npt.NDArray[Any] = np.load(source, mmap_mode="r", allow_pickle=False)
    else:
        arr = np.asarray(source)
    if arr.ndim != 3:
        raise ValueError(f"outputs must have shape (epochs, examples, classes), got {arr.shape}")
    if labels is None:
        raise ValueError("pass labels= (one label per example) with an array source")
    y = np.asarray(labels)
    n_epochs, n_examples, n_classes = arr.shape
    if y.shape != (n_examples,):
        raise ValueError(f"labels must have shape ({n_examples},), got {y.shape}")
    if wanted.dtype.kind not in "iu":
        raise TypeError("ids of an array source are row positions (integers)")
    # Ids are the map's ids, the rows' positions: no Python-style negative indices, whose
    # curves would be labelled with an id that no example has.
    outside = wanted[(wanted < 0) | (wanted >= n_examples)]
    if outside.size:
        raise IndexError(
            f"ids of an array source are row positions 0..{n_examples - 1}, got {outside[0]}"
        )
    rows = wanted
    # Only the chosen rows are read (a memory map reads just those pages).
    picked = np.ascontiguousarray(arr[:, rows, :])
    epoch = np.repeat(np.arange(n_epochs), rows.size)
    return (
        epoch,
        np.tile(wanted, n_epochs),
        np.tile(y[rows], n_epochs).astype(np.int64),
        picked.reshape(n_epochs * rows.size, n_classes),
    )


def _read_long_rows(
    source: Any, wanted: npt.NDArray[Any], kind: str
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[Any]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    epochs: list[npt.NDArray[Any]] = []
    ids: list[npt.NDArray[Any]] = []
    labels: list[npt.NDArray[Any]] = []
    outputs: list[npt.NDArray[Any]] = []
    width: int | None = None
    for batch in _long_batches(source, wanted, kind):
        missing = [c for c in ("epoch", "id", "label", kind) if c not in batch.schema.names]
        if missing:
            raise ValueError(
                f"the table lacks column(s) {', '.join(missing)}; it has "
                f"{', '.join(batch.schema.names)}"
            )
        try:
            keep = pc.is_in(batch.column("id"), value_set=pa.array(wanted.tolist()))
        except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise TypeError(
                f"the ids {wanted[:3].tolist()} do not match the table's ids, of type "
                f"{batch.column('id').type}"
            ) from err
        batch = batch.filter(keep)
        if batch.num_rows == 0:
            continue
        column = batch.column(kind)
        if pa.types.is_fixed_size_list(column.type):
            size = column.type.list_size
        elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            size = int(lengths[0])
            if (lengths != size).any():
                raise ValueError(f"rows of {kind!r} have different numbers of classes")
        else:
            raise TypeError(f"column {kind!r} must be a list of floats, got {column.type}")
        if width is not None and size != width:
            raise ValueError(f"rows of {kind!r} have different numbers of classes")
        width = size
        values = column.flatten().to_numpy(zero_copy_only=False)
        outputs.append(np.asarray(values).reshape(-1, size))
        epochs.append(batch.column("epoch").to_numpy(zero_copy_only=False))
        ids.append(np.asarray(batch.column("id").to_pylist()))
        labels.append(batch.column("label").to_numpy(zero_copy_only=False))
    if not ids:
        raise ValueError(f"none of the ids {wanted[:5].tolist()} is in the table")
    row_ids = np.concatenate(ids)
    absent = [i for i in wanted.tolist() if i not in set(row_ids.tolist())]
    if absent:
        raise ValueError(f"ids not found in the table: {absent[:5]}")
    out = np.concatenate(outputs)
    if out.dtype not in (np.float32, np.float64):
        out = out.astype(np.float64)
    return np.concatenate(epochs), row_ids, np.concatenate(labels).astype(np.int64), out


def _long_batches(source: Any, wanted: npt.NDArray[Any], kind: str) -> Iterator[pa.RecordBatch]:
    """Record batches of a long table, reading only the needed columns where the format
    allows (Parquet row groups whose id statistics exclude every wanted id are skipped)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    columns = ["epoch", "id", "label", kind]
    if not isinstance(source, (str, os.PathLike)):
        from ._tables import as_arrow_stream

        reader = pa.RecordBatchReader.from_stream(as_arrow_stream(source))
        yield from reader
        return
    # The readers' own discovery: a file, a directory (hidden names skipped) or a glob.
    for file, fmt, _, _ in _core.discover(os.fspath(source)):
        if fmt == "parquet":
            dataset = ds.dataset(file, format="parquet")
            names = dataset.schema.names
            wanted_filter = ds.field("id").isin(wanted.tolist()) if "id" in names else None
            yield from dataset.to_batches(
                columns=[c for c in columns if c in names], filter=wanted_filter
            )
        elif fmt in ("ipc-file", "ipc-stream"):
            yield from _ipc_batches(file, stream=fmt == "ipc-stream")
        else:
            raise ValueError(
                f"{file}: trajectories read long tables ({', '.join(_core.TABLE_SUFFIXES)}) or one "
                ".npy array of shape (epochs, examples, classes)"
            )


def _ipc_batches(file: Path, *, stream: bool) -> Iterator[pa.RecordBatch]:
    """Batches of an Arrow IPC stream, or of an IPC file (memory-mapped)."""
    import pyarrow as pa

    with pa.memory_map(str(file)) as source:
        if stream:
            yield from pa.ipc.open_stream(source)
            return
        reader: Any = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def plot_trajectories(
    ids: npt.ArrayLike,
    source: Any,
    labels: npt.ArrayLike | None = None,
    *,
    kind: Kind,
    title: str | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Figure:
    """p(gold) over the epochs for the examples ``ids`` (read back from ``source`` as in
    :func:`fastcarto.trajectories`), one line each. Returns the Figure; ``save`` writes it."""
    from ._inputs import KINDS, check_choice

    check_choice("kind", kind, KINDS)
    frame, label_of = _trajectories(ids, source, labels, kind=kind)
    fig = _figure((6.8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    columns: Sequence[Any] = list(frame.columns)
    many = len(columns) > 10
    for i, column in enumerate(columns):
        if many:
            ax.plot(frame.index, frame[column], color="0.55", linewidth=0.7, alpha=0.6)
        else:
            ax.plot(frame.index, frame[column], marker="o", markersize=3, linewidth=1.5,
                    color=OKABE_ITO[i % len(OKABE_ITO)],
                    label=f"id {column} (given label {label_of.get(column)})")  # fmt: skip
    if many:
        ax.plot(frame.index, frame.mean(axis=1), color=OKABE_ITO[0], linewidth=2.2,
                label=f"mean of {len(columns)} examples")  # fmt: skip
    ax.axhline(0.5, color="0.5", linestyle=":", linewidth=1.0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel("p(gold): probability of the given label")
    ax.legend(frameon=False, fontsize=8, loc="best")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title if title is not None else "Training dynamics of chosen examples")
    return _finish(fig, save)
