"""Plots of a data map: the map itself, AUM and forgetting (p(gold) trajectories are drawn by
``_trajectories``, with these helpers).

matplotlib is imported inside each function, so ``import fastcarto`` never pays for it. Figures
are ``matplotlib.figure.Figure`` objects created without pyplot: nothing is shown or kept in a
global registry, any backend (or none) works, and callers own the figure they get back.

The options' defaults are those of the ``DataMap`` methods that call these functions, and are
written there only.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from ._label_issues import _threshold_mask, aum_threshold
from ._metric_table import MetricTable
from ._regions import REGIONS, RegionRule, require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure


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
#: Colours of the issue types (Okabe & Ito, skipping the ones the data map uses for regions).
ISSUE_COLORS = {
    "label": "#D55E00",
    "outlier": "#CC79A7",
    "near_duplicate": "#0072B2",
    "non_iid": "#F0E442",
    "class_imbalance": "#56B4E9",
    "underperforming_group": "#E69F00",
    "null": "#000000",
}
REGION_COLORS = {"easy-to-learn": "#009E73", "ambiguous": "#E69F00", "hard-to-learn": "#D55E00"}
_HIST_COLOR = "#0072B2"
_DPI = 150
#: At most this many panels for ``by_class=True``.
MAX_CLASS_PANELS = 36


def _figure(figsize: tuple[float, float], **kwargs: Any) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=_DPI, **kwargs)


def _finish(fig: Figure, save: str | os.PathLike[str] | None) -> Figure:
    if save is not None:
        fig.savefig(os.fspath(save), dpi=_DPI)
    return fig


def _finish_chart(
    fig: Figure,
    ax: Axes,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    save: str | os.PathLike[str] | None,
) -> Figure:
    """The end of a one-panel chart: axis labels, legend, an open frame and the title."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title)
    return _finish(fig, save)


def _correctness_colors(dm: MetricTable) -> tuple[Colormap, Normalize, list[float] | None]:
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


def _constant_epochs(dm: MetricTable) -> int | None:
    if "n_epochs" not in dm.columns or len(dm) == 0:
        return None
    n = np.asarray(dm["n_epochs"])
    lo, hi = int(n.min()), int(n.max())
    return hi if lo == hi and hi > 0 else None


def _correctness(dm: MetricTable) -> npt.NDArray[np.float64]:
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
    dm: MetricTable,
    *,
    by_class: bool,
    mode: PlotMode,
    max_points: int,
    seed: int,
    rule: RegionRule | None,
    title: str | None,
    save: str | os.PathLike[str] | None,
    issues: Any = None,
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
    if by_class and issues is not None:
        raise ValueError("issues= marks the single map; pass by_class=False")
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
    ax.set_xlim(0.0, x_max)
    ax.set_ylim(-0.02, 1.02)
    _draw_regions(ax, codes, (v_thr, c_thr), x_max, points=(var[finite], conf[finite]))
    if issues is not None:
        mark_issues(ax, issues, conf, var, finite)
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


def _default_title(dm: MetricTable) -> str:
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
    points: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
) -> None:
    """The boundaries of the region rule (thin dashed lines) and, inside each region, its name
    and share, placed where the fewest of ``points`` (variability, confidence) lie so that no
    label hides the densest examples."""
    v_thr, c_thr = thresholds
    left = min(v_thr, x_max) if math.isfinite(v_thr) else x_max
    if left < x_max:
        ax.axvline(left, color="0.2", linestyle="--", linewidth=1.0, zorder=1.5)
    ax.hlines(c_thr, 0.0, left, colors="0.2", linestyles="--", linewidth=1.0, zorder=1.5)
    if not labels:
        return
    n = int((codes >= 0).sum())
    y_lo, y_hi = -0.02, 1.02
    c_mid = min(max(c_thr, y_lo), y_hi)
    rects = {
        "easy-to-learn": (0.0, left, c_mid, y_hi),
        "hard-to-learn": (0.0, left, y_lo, c_mid),
        "ambiguous": (left, x_max, y_lo, y_hi),
    }
    counts = _binned_counts(points, x_max, (y_lo, y_hi))
    # The label's box in data units, from its size in points and the axes' size on the figure.
    fig = ax.get_figure()
    assert fig is not None
    width_pt, height_pt = (size * 72 / fig.dpi for size in (ax.bbox.width, ax.bbox.height))
    per_pt = (x_max / width_pt, (y_hi - y_lo) / height_pt)
    placed: list[tuple[float, float, float, float]] = []
    for code, region in enumerate(REGIONS):
        count = int((codes == code).sum())
        if count == 0:
            continue
        text = f"{region}\n{count:,} ({100 * count / max(n, 1):.0f}%)"
        chars = max(len(line) for line in text.splitlines())
        box = ((0.62 * chars + 1.2) * fontsize * per_pt[0], 3.2 * fontsize * per_pt[1])
        x0, y0 = _emptiest_spot(rects[region], box, counts, (x_max, y_lo, y_hi), placed)
        placed.append((x0, y0, x0 + box[0], y0 + box[1]))
        ax.text(
            x0 + box[0] / 2, y0 + box[1] / 2, text, ha="center", va="center",
            fontsize=fontsize, zorder=5,
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": REGION_COLORS[region],
                  "lw": 1.2, "alpha": 0.75},
        )  # fmt: skip


#: Bins per axis of the point counts that label placement looks at.
_PLACEMENT_BINS = 64


def _binned_counts(
    points: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None,
    x_max: float,
    y_range: tuple[float, float],
) -> npt.NDArray[np.int64]:
    """Counts of the points on a grid over the axes, as a summed-area table (one pass, however
    many points: a box's count is then four lookups)."""
    bins = _PLACEMENT_BINS
    table = np.zeros((bins + 1, bins + 1), dtype=np.int64)
    if points is None:
        return table
    var, conf = points
    ok = np.isfinite(var) & np.isfinite(conf)
    y_lo, y_hi = y_range
    ix = np.clip((var[ok] * (bins / x_max)).astype(np.int64), 0, bins - 1)
    iy = np.clip(((conf[ok] - y_lo) * (bins / (y_hi - y_lo))).astype(np.int64), 0, bins - 1)
    grid = np.bincount(ix * bins + iy, minlength=bins * bins).reshape(bins, bins)
    table[1:, 1:] = grid.cumsum(axis=0).cumsum(axis=1)
    return table


def _emptiest_spot(
    rect: tuple[float, float, float, float],
    box: tuple[float, float],
    counts: npt.NDArray[np.int64],
    axes: tuple[float, float, float],
    placed: list[tuple[float, float, float, float]],
) -> tuple[float, float]:
    """The lower-left corner, inside ``rect`` (x0, x1, y0, y1) where it fits, of a ``box``
    (width, height) covering the fewest points and no label already placed: the corners first,
    then the edges' middles, then the centre."""
    x_max, y_lo, y_hi = axes
    rx0, rx1, ry0, ry1 = rect
    w, h = box
    pad_x, pad_y = 0.015 * x_max, 0.015 * (y_hi - y_lo)
    xs = (rx0 + pad_x, rx1 - pad_x - w, (rx0 + rx1 - w) / 2)
    ys = (ry1 - pad_y - h, ry0 + pad_y, (ry0 + ry1 - h) / 2)
    order = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (2, 1), (0, 2), (1, 2), (2, 2)]
    bins = counts.shape[0] - 1

    def covered(x0: float, y0: float) -> int:
        i0, i1 = (int(np.clip(round(v / x_max * bins), 0, bins)) for v in (x0, x0 + w))
        j0, j1 = (
            int(np.clip(round((v - y_lo) / (y_hi - y_lo) * bins), 0, bins)) for v in (y0, y0 + h)
        )
        return int(counts[i1, j1] - counts[i0, j1] - counts[i1, j0] + counts[i0, j0])

    best: tuple[float, float, float] | None = None
    for i, j in order:
        x0 = min(max(xs[i], pad_x), x_max - pad_x - w)
        y0 = min(max(ys[j], y_lo + pad_y), y_hi - pad_y - h)
        overlaps = any(x0 < b[2] and b[0] < x0 + w and y0 < b[3] and b[1] < y0 + h for b in placed)
        score = covered(x0, y0) + (1 << 62 if overlaps else 0)
        if best is None or score < best[0]:
            best = (score, x0, y0)
    assert best is not None
    return best[1], best[2]


def _draw_correctness_histogram(
    ax: Axes,
    corr: npt.NDArray[np.float64],
    cmap: Colormap,
    norm: Normalize,
    dm: MetricTable,
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
    dm: MetricTable,
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
    dm: MetricTable,
    *,
    threshold_mask: npt.ArrayLike | None,
    percentile: float,
    bins: int,
    title: str | None,
    save: str | os.PathLike[str] | None,
) -> Figure:
    """See :meth:`DataMap.plot_aum`."""
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
                   label=f"AUM = 0 (method='aum'): {flagged:,} below flagged")  # fmt: skip
    margin = "logit" if dm.kind == "logits" else "probability"
    return _finish_chart(
        fig,
        ax,
        xlabel=f"area under the margin (mean {margin} margin of the given label)",
        ylabel=what,
        title=title if title is not None else f"AUM ({len(dm):,} {what}, {dm.kind})",
        save=save,
    )


def plot_forgetting(
    dm: MetricTable,
    *,
    log: bool,
    title: str | None,
    save: str | os.PathLike[str] | None,
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
    return _finish_chart(
        fig,
        ax,
        xlabel="forgetting events (correct -> wrong transitions between epochs)",
        ylabel=what,
        title=title if title is not None else f"Forgetting ({len(dm):,} {what})",
        save=save,
    )


def mark_issues(
    ax: Axes,
    lab: Any,
    conf: npt.NDArray[np.float64],
    var: npt.NDArray[np.float64],
    finite: npt.NDArray[np.bool_],
) -> None:
    """Outliers and near-duplicates of ``lab`` marked on the data map's main panel."""
    if lab._n != len(conf):
        raise ValueError(f"issues= audits {lab._n:,} examples but the data map has {len(conf):,}")
    issues = lab.issues
    drawn = False
    for name, marker, label in (
        ("outlier", "x", "outlier"),
        ("near_duplicate", "D", "near duplicate"),
    ):
        column = f"is_{name}_issue"
        if column not in issues.columns:
            continue
        rows = np.flatnonzero(issues[column].to_numpy(dtype=bool) & finite)
        style: dict[str, Any] = (
            {"c": ISSUE_COLORS[name], "linewidths": 1.0}
            if marker == "x"
            else {"facecolors": "none", "edgecolors": ISSUE_COLORS[name], "linewidths": 0.9}
        )
        ax.scatter(
            var[rows], conf[rows], s=22, marker=marker, zorder=5,
            label=f"{label} ({rows.size:,})", **style,
        )  # fmt: skip
        drawn = True
    if not drawn:
        raise ValueError(
            "issues= marks outliers and near-duplicates, but the audit checked neither: "
            "run find_issues with features="
        )
    ax.legend(frameon=False, fontsize=8, loc="lower right")
