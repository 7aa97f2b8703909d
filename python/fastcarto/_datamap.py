"""`DataMap`: the per-example metrics table and what users do with it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _label_issues, _plots, _regions, _trajectories
from ._metric_table import MetricTable

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    from matplotlib.figure import Figure

    from ._label_issues import Method
    from ._plots import PlotMode
    from ._regions import RegionRule

# Integer columns that are missing for some examples (never learned, wrong at the end, ...):
# pandas gets them as nullable Int64 rather than float64 with NaN.
_NULLABLE_INT = ("label", "first_learned", "stable_from", "final_pred")


class DataMap(MetricTable):
    """Training-dynamics metrics, one row per example (per (example, class) for multi-label).

    Built by :func:`fastcarto.compute` or :meth:`fastcarto.Accumulator.finalize`; the columns are
    documented in ``docs/metrics.md``. Speaks pandas, pyarrow and polars, and the Arrow PyCapsule
    interface, so ``pl.DataFrame(datamap)`` and ``pa.table(datamap)`` work without copies.
    ``dm[name]`` reads one column as a numpy array (nullable integers as float with NaN).

    Parameters
    ----------
    table:
        The metrics, a ``pyarrow.Table`` or ``RecordBatch`` (rarely built by hand).
    kind:
        ``"logits"`` or ``"probs"``: what the metrics were computed from.
    compat:
        The published convention the table follows, or None for fastcarto's own.

    Examples
    --------
    >>> import numpy as np, fastcarto
    >>> logits = np.array([[[2.0, 0.0], [0.0, 1.0]], [[3.0, 0.0], [1.0, 0.0]]], dtype=np.float32)
    >>> dm = fastcarto.compute(logits, [0, 1], kind="logits")
    >>> len(dm)
    2
    >>> dm.to_pandas()["correctness"].tolist()
    [1.0, 0.5]
    """

    __slots__ = ()

    def to_pandas(self) -> pd.DataFrame:
        """The metrics as a ``pandas.DataFrame``; optional integers use the nullable ``Int64``.

        Returns
        -------
        pandas.DataFrame
            One row per row of the map, one column per metric.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.2, .8], [.6, .4], [.5, .5]]] * 2)
        >>> dm = fastcarto.compute(p, [0, 0, 0, 1], kind="probs")
        >>> dm.to_pandas()[["id", "label", "confidence"]].values.tolist()
        [[0.0, 0.0, 0.9], [1.0, 0.0, 0.2], [2.0, 0.0, 0.6], [3.0, 1.0, 0.5]]
        """
        import pandas as pd

        df = self._table.to_pandas()
        for name in _NULLABLE_INT:
            column = self._table.column(name) if name in df.columns else None
            if column is not None and column.null_count:
                # From the values and the validity directly: through Python lists it took
                # several times the map's own computation.
                values = column.fill_null(0).to_numpy().astype(np.int64, copy=False)
                missing = column.is_null().to_numpy(zero_copy_only=False)
                df[name] = pd.arrays.IntegerArray(values, missing)
        return df

    def to_polars(self) -> pl.DataFrame:
        """The metrics as a ``polars.DataFrame`` (requires polars).

        Returns
        -------
        polars.DataFrame
            One row per row of the map, one column per metric (no copy).

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.2, .8], [.6, .4], [.5, .5]]] * 2)
        >>> dm = fastcarto.compute(p, [0, 0, 0, 1], kind="probs")
        >>> dm.to_polars()["confidence"].to_list()
        [0.9, 0.2, 0.6, 0.5]
        """
        import polars as pl

        out = pl.from_arrow(self._table)
        assert isinstance(out, pl.DataFrame)
        return out

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._table.__arrow_c_stream__(requested_schema)

    def __repr__(self) -> str:
        n = len(self)
        parts = [f"{n:,} {'rows' if 'class' in self.columns else 'examples'}", self._kind]
        if self._compat:
            parts.append(f"compat={self._compat!r}")
        if "n_epochs" in self.columns and n:
            epochs = self._table.column("n_epochs").to_numpy()
            lo, hi = int(epochs.min()), int(epochs.max())
            parts.append(f"{hi} epochs" if lo == hi else f"{lo}-{hi} epochs")
        stats = []
        for name in ("confidence", "variability"):
            values = self[name] if name in self.columns else np.empty(0)
            if np.isfinite(values).any():
                stats.append(f"{name} {np.nanmean(values):.3f}")
        if "never_learned" in self.columns and n:
            stats.append(f"never learned {100 * float(np.mean(self['never_learned'])):.1f}%")
        tail = f"; mean {', '.join(stats)}" if stats else ""
        return f"DataMap({', '.join(parts)}{tail})"

    # ----------------------------------------------------------------------------------------
    # regions, selection and queries (rules in fastcarto._regions; see docs/datamaps.md)

    def regions(self, rule: RegionRule | None = None) -> pd.Series:
        """The region of every example: ``easy-to-learn``, ``ambiguous`` or ``hard-to-learn``.

        The default :class:`fastcarto.RegionRule` calls the third of the examples with the
        highest variability ambiguous (as Swayamdipta et al. select their 33% most ambiguous),
        and splits the rest at confidence 0.5: easy-to-learn above, hard-to-learn below. Pass
        ``RegionRule(variability_quantile=..., variability=..., confidence=...)`` to change it.
        Examples with no finite confidence/variability get no region (NA).

        Parameters
        ----------
        rule:
            The thresholds; None for the default :class:`fastcarto.RegionRule`.

        Returns
        -------
        pandas.Series
            Categorical, named ``region``, aligned with the map's rows.

        Raises
        ------
        ValueError
            The map has no ``confidence`` or ``variability`` column.

        See Also
        --------
        RegionRule, select, query

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.2, .8], [.6, .4]], [[.95, .05], [.9, .1], [.3, .7]]])
        >>> dm = fastcarto.compute(p, [0, 0, 1], kind="probs")
        >>> dm.regions().tolist()
        ['easy-to-learn', 'ambiguous', 'easy-to-learn']
        >>> dm.regions(fastcarto.RegionRule(variability=1.0, confidence=0.6)).tolist()
        ['easy-to-learn', 'hard-to-learn', 'hard-to-learn']
        """
        import pandas as pd

        codes = _regions.region_codes(self, rule)
        return pd.Series(
            pd.Categorical.from_codes(codes, categories=_regions.REGIONS),
            name="region",
            copy=False,
        )

    def select(
        self, metric: str, fraction: float, *, worst: bool = False, both_ends: bool = False
    ) -> DataMap:
        """A fixed fraction of the examples ranked by one metric, as allenai/cartography selects
        training subsets (``cartography/selection/train_dy_filtering.py``).

        Ranking, as that code's ``consider_ascending_order``: lowest first for ``confidence``
        and ``correctness`` (hard-to-learn), highest first for ``variability`` (ambiguous),
        ``threshold_closeness`` and ``forgetfulness`` (never-learned examples count as the most
        forgotten, like cartography's 1000). fastcarto adds ``forgetting`` (raw count, highest
        first), ``aum`` (lowest first), ``el2n``, ``loss`` and ``entropy`` (highest first).
        ``worst=True`` reverses the order (``metric="confidence", worst=True`` gives the
        easy-to-learn subset). ``both_ends=True`` takes 70% of the selection from the top of the
        ranking and the rest from the bottom, as cartography does.

        Deliberate differences from cartography: exactly ``int(fraction * len(self))`` rows
        (its writer takes ``head(n + 1)``, one row more), ties ranked in row order (a stable
        sort; pandas' default sort is not stable), and examples whose metric is NaN (never
        observed) never selected.

        Parameters
        ----------
        metric:
            The column to rank by (one of those listed above).
        fraction:
            The share of the examples to select, in [0, 1].
        worst:
            Reverse the ranking.
        both_ends:
            Take 70% from the top of the ranking and 30% from the bottom.

        Returns
        -------
        DataMap
            The selected rows, in ranking order (``.select(...)["id"]`` gives the ids).

        Raises
        ------
        ValueError
            An unknown metric, a column the map lacks, or a fraction outside [0, 1].

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.2, .8], [.6, .4], [.5, .5]]] * 2)
        >>> dm = fastcarto.compute(p, [0, 0, 0, 1], kind="probs")
        >>> dm.select("confidence", 0.5)["id"].tolist()
        [1, 3]
        >>> dm.select("confidence", 0.5, worst=True)["id"].tolist()
        [0, 2]
        """
        rows = _regions.select_rows(self, metric, fraction, worst=worst, both_ends=both_ends)
        return _regions.subset(self, rows)

    def query(
        self,
        *,
        region: str | Iterable[str] | None = None,
        rule: RegionRule | None = None,
        **conditions: Any,
    ) -> DataMap:
        """The examples meeting every condition, as a :class:`DataMap` (row order kept).

        Each keyword names a column: ``(lo, hi)`` keeps ``lo <= value < hi`` (a half-open
        interval; ``None`` leaves an end open, so ``(0.9, None)`` includes 1.0), a number keeps
        equal values (``forgetting=0``, ``label=3``), ``True``/``False`` tests a boolean column
        (``never_learned=True``). Missing values (NaN, null) never match an interval or number.
        ``region=`` keeps one region or several (by ``rule``, default :class:`RegionRule`).
        ``forgetfulness`` (cartography's) may be queried even when the table has no such column.

        Parameters
        ----------
        region:
            A region name or several (``"easy-to-learn"``, ``"ambiguous"``,
            ``"hard-to-learn"``).
        rule:
            The rule that assigns regions (default :class:`RegionRule`).
        conditions:
            ``column=condition`` pairs, as above.

        Returns
        -------
        DataMap
            The matching rows, in the map's order.

        Raises
        ------
        ValueError
            An unknown column or region, or a condition of the wrong form.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.2, .8], [.6, .4], [.5, .5]]] * 2)
        >>> dm = fastcarto.compute(p, [0, 0, 0, 1], kind="probs")
        >>> dm.query(confidence=(None, 0.3), never_learned=True)["id"].tolist()
        [1]
        >>> dm.query(confidence=(0.5, 0.9))["id"].tolist()
        [2, 3]
        """
        mask = _regions.query_mask(self, conditions, region=region, rule=rule)
        return _regions.subset(self, mask)

    # ----------------------------------------------------------------------------------------
    # label issues (fastcarto._label_issues)

    def label_issues(
        self,
        *,
        method: Method | None = None,
        threshold_mask: npt.ArrayLike | None = None,
        percentile: float = 99.0,
    ) -> pd.DataFrame:
        """Which labels look wrong, from the training dynamics alone.

        One row per row of the map, in the same order, with cleanlab Datalab's column names:
        ``id`` (``class`` for multi-label maps), ``is_label_issue``, ``label_score`` in [0, 1]
        (lower = more likely mislabeled), ``given_label``, ``predicted_label`` (the prediction
        at the last epoch, ``final_pred``) and ``suggested_label`` (``predicted_label`` where
        flagged, else ``given_label``). ``label_score`` is the AUM (the mean over epochs of
        the given label's score minus the best other class's; logit margin for
        ``kind="logits"``, probability margin for ``kind="probs"``) mapped monotonically onto
        [0, 1] with 0.5 at AUM 0: ``1 / (1 + exp(-aum))`` for logits, ``(aum + 1) / 2`` for
        probabilities (cleanlab's normalized margin, averaged over epochs). Every rule flags
        the lowest scores; they differ in how many. Rows never observed are not flagged
        (``label_score`` NaN).

        ``method="count"`` (the default): **how many** labels are wrong is estimated as
        confident learning does (Northcutt et al., 2021; cleanlab's ``num_label_issues`` with
        ``estimation_method="off_diagonal_calibrated"``), from the mean probabilities over
        training rather than out-of-sample ones, and that many examples with the **lowest
        AUM** are flagged. For each row with given label ``y``, ``p_y`` is its
        ``confidence`` and ``p_o`` the mean probability of its most likely other class ``o``
        (``o = final_pred`` when that differs from ``y``): ``confidence - aum`` for
        ``kind="probs"``, ``min(confidence * exp(-aum), 1 - confidence)`` for logits (at each
        epoch that class has ``p(gold) * exp(-margin)``; the map keeps the two means, not the
        mean of the product). The threshold of class ``k`` is ``t_k``, the mean
        ``confidence`` of the rows labeled ``k``. A row counts when ``p_y >= t_y - 1e-6`` or
        ``p_o >= t_o - 1e-6``, and then votes for ``o`` if ``p_o > p_y``, else for ``y``.
        With ``n_k`` rows labeled ``k``, of which ``c_k`` count and ``w_k`` vote for another
        class, the estimate is ``round(N * sum_k n_k w_k / c_k / sum_k n_k)`` (classes with
        ``c_k > 0``): the calibrated confident joint's off-diagonal. Multi-label maps do this
        per class (two outcomes, ``o = 1 - y``) and flag that class's lowest-AUM rows.

        ``method="aum"``: flagged when the AUM is below 0, i.e. averaged over the epochs the
        given label's score was below the best other class's; exactly ``label_score < 0.5``.

        ``method="threshold"`` (the default when ``threshold_mask`` is given; Pleiss et al.,
        2020): for a map computed from a run trained on :func:`fastcarto.threshold_samples`'
        targets, pass its ``mask``: examples whose AUM is below the ``percentile`` (default
        99th) of the threshold samples' AUM are flagged. The threshold samples are not judged
        (``is_label_issue`` False, ``label_score`` NaN, ``suggested_label`` NA).

        Parameters
        ----------
        method:
            ``"count"``, ``"aum"`` or ``"threshold"``; None picks ``"threshold"`` when
            ``threshold_mask`` is given, else ``"count"``.
        threshold_mask:
            The threshold samples (a boolean mask or row positions) of
            :func:`fastcarto.threshold_samples`.
        percentile:
            The threshold samples' AUM percentile that separates the flagged examples.

        Returns
        -------
        pandas.DataFrame
            The columns above, one row per row of the map.

        Raises
        ------
        ValueError
            An unknown method, ``method="threshold"`` without ``threshold_mask``, a mask of
            the wrong length, or a map without the ``aum`` column.

        See Also
        --------
        fastcarto.Datalab : the same columns from out-of-sample probabilities.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.8, .2], [.2, .8], [.3, .7], [.6, .4]]] * 3)
        >>> dm = fastcarto.compute(p, [0, 0, 0, 1, 1], kind="probs")
        >>> issues = dm.label_issues()
        >>> issues[["is_label_issue", "suggested_label"]].values.tolist()
        [[False, 0], [False, 0], [True, 1], [False, 1], [False, 1]]
        >>> issues["label_score"].round(3).tolist()
        [0.9, 0.8, 0.2, 0.7, 0.4]
        >>> dm.label_issues(method="aum")["is_label_issue"].tolist()
        [False, False, True, False, True]
        """
        return _label_issues.label_issues(
            self, method=method, threshold_mask=threshold_mask, percentile=percentile
        )

    def aum_threshold(self, threshold_mask: npt.ArrayLike, *, percentile: float = 99.0) -> float:
        """The mislabeling threshold of Pleiss et al. (2020).

        The ``percentile`` (default 99th) of the AUM of the threshold samples
        ``threshold_mask`` (see :func:`fastcarto.threshold_samples`).

        Parameters
        ----------
        threshold_mask:
            The threshold samples: a boolean mask over the rows, or row positions.
        percentile:
            In [0, 100].

        Returns
        -------
        float
            Examples whose AUM is below it are flagged by ``label_issues(method="threshold")``.

        Raises
        ------
        ValueError
            A mask of the wrong length, no threshold samples, or samples that do not all carry
            the extra class.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> p = np.array([[[.9, .05, .05], [.1, .8, .1], [.2, .2, .6], [.1, .3, .6]]] * 2)
        >>> dm = fastcarto.compute(p, [0, 1, 2, 2], kind="probs")
        >>> round(dm.aum_threshold([False, False, True, True], percentile=50.0), 2)
        0.35
        """
        return _label_issues.aum_threshold(self, threshold_mask, percentile=percentile)

    def class_summary(
        self,
        *,
        rule: RegionRule | None = None,
        method: Method | None = None,
        threshold_mask: npt.ArrayLike | None = None,
        percentile: float = 99.0,
    ) -> pd.DataFrame:
        """Per-class label quality, like cleanlab Datalab's ``classes_by_label_quality``.

        One row per given label (per ``class`` for multi-label maps): ``examples``,
        ``label_issues`` (by :meth:`label_issues`), ``label_noise`` (their fraction), the count
        in each region (by :meth:`regions`), ``mean_confidence`` and ``mean_label_score``;
        sorted by ``label_noise``, worst first. Threshold samples are left out.

        Parameters
        ----------
        rule:
            The region rule (default :class:`RegionRule`).
        method, threshold_mask, percentile:
            The label-issue rule, as in :meth:`label_issues`.

        Returns
        -------
        pandas.DataFrame
            One row per class, indexed by it.

        Raises
        ------
        ValueError
            As :meth:`label_issues` and :meth:`regions`.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.8, .2], [.2, .8], [.3, .7], [.6, .4]]] * 3)
        >>> dm = fastcarto.compute(p, [0, 0, 0, 1, 1], kind="probs")
        >>> dm.class_summary()[["examples", "label_issues"]].values.tolist()
        [[3, 1], [2, 0]]
        """
        return _label_issues.class_summary(
            self,
            rule=rule,
            method=method,
            threshold_mask=threshold_mask,
            percentile=percentile,
        )

    def report(
        self,
        *,
        rule: RegionRule | None = None,
        method: Method | None = None,
        threshold_mask: npt.ArrayLike | None = None,
        percentile: float = 99.0,
    ) -> str:
        """A short text summary of the map.

        Region counts and rule, label issues, never-learned and forgotten examples, and the
        classes with the most label issues.

        Parameters
        ----------
        rule:
            The region rule (default :class:`RegionRule`).
        method, threshold_mask, percentile:
            The label-issue rule, as in :meth:`label_issues`.

        Returns
        -------
        str
            Several lines of plain text.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.8, .2], [.2, .8], [.3, .7], [.6, .4]]] * 3)
        >>> dm = fastcarto.compute(p, [0, 0, 0, 1, 1], kind="probs")
        >>> print(dm.report().splitlines()[4])
        never learned: 2 (40.0%); forgotten at least once: 0 (0.0%)
        """
        return _label_issues.report(
            self,
            rule=rule,
            method=method,
            threshold_mask=threshold_mask,
            percentile=percentile,
        )

    # ----------------------------------------------------------------------------------------
    # plots (fastcarto._plots; matplotlib is imported only when one is drawn)

    def plot(
        self,
        *,
        by_class: bool = False,
        mode: PlotMode = "auto",
        max_points: int = 50_000,
        seed: int = 0,
        rule: RegionRule | None = None,
        title: str | None = None,
        save: str | os.PathLike[str] | None = None,
        issues: Any = None,
    ) -> Figure:
        """The data map of Swayamdipta et al. (2020): variability (x) against confidence (y),
        coloured by correctness, with marginal histograms and the three regions of ``rule``.

        ``mode="auto"`` draws every example as a rasterized point up to ``max_points``, and a
        deterministic random subsample (``seed``) of ``max_points`` above; ``"density"`` bins
        all examples on a grid coloured by their mean correctness. The figure says which, and
        the histograms always count every example. ``by_class=True`` draws one panel per class
        instead (same axes, thresholds of the whole map). ``save`` writes the figure (PNG, PDF,
        SVG, ... by suffix). ``issues`` (a :class:`fastcarto.Datalab` over the same examples,
        after ``find_issues``) marks its outliers and near-duplicates on the map.

        Parameters
        ----------
        by_class:
            One panel per class.
        mode:
            ``"auto"``, ``"scatter"`` (every point) or ``"density"``.
        max_points:
            The most points drawn one by one.
        seed:
            Seed of the subsample drawn above ``max_points``.
        rule:
            The region rule (default :class:`RegionRule`).
        title:
            The figure's title (default: what the map was computed from).
        save:
            A path to write the figure to.
        issues:
            A :class:`fastcarto.Datalab` whose outliers and near-duplicates to mark.

        Returns
        -------
        matplotlib.figure.Figure
            The figure (never shown: call ``plt.show()`` or ``fig.savefig``).

        Raises
        ------
        ValueError
            A map without confidence/variability, an unknown mode, or ``issues`` over another
            number of examples.

        Examples
        --------
        >>> import matplotlib.pyplot as plt, numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.2, .8], [.6, .4], [.5, .5]],
        ...               [[.8, .2], [.4, .6], [.3, .7], [.4, .6]]])
        >>> dm = fastcarto.compute(p, [0, 0, 0, 1], kind="probs")
        >>> fig = dm.plot(title="four examples")
        >>> fig.axes[0].get_xlabel()
        'variability (std. of p(gold) over epochs)'
        >>> plt.close(fig)
        """
        return _plots.plot_datamap(
            self,
            by_class=by_class,
            mode=mode,
            max_points=max_points,
            seed=seed,
            rule=rule,
            title=title,
            save=save,
            issues=issues,
        )

    def plot_aum(
        self,
        *,
        threshold_mask: npt.ArrayLike | None = None,
        percentile: float = 99.0,
        bins: int = 60,
        title: str | None = None,
        save: str | os.PathLike[str] | None = None,
    ) -> Figure:
        """Histogram of the AUM with the mislabeling threshold.

        With ``threshold_mask``, the threshold samples' and the other examples' AUM apart, and
        the ``percentile`` threshold; else AUM = 0, the threshold of
        ``label_issues(method="aum")``.

        Parameters
        ----------
        threshold_mask, percentile:
            As in :meth:`label_issues`.
        bins:
            Number of histogram bins.
        title:
            The figure's title.
        save:
            A path to write the figure to.

        Returns
        -------
        matplotlib.figure.Figure
            The figure.

        Raises
        ------
        ValueError
            A map without the ``aum`` column, or a bad ``threshold_mask``.

        Examples
        --------
        >>> import matplotlib.pyplot as plt, numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.2, .8], [.6, .4], [.5, .5]],
        ...               [[.8, .2], [.4, .6], [.3, .7], [.4, .6]]])
        >>> dm = fastcarto.compute(p, [0, 0, 0, 1], kind="probs")
        >>> fig = dm.plot_aum(bins=10)
        >>> len(fig.axes)
        1
        >>> plt.close(fig)
        """
        return _plots.plot_aum(
            self,
            threshold_mask=threshold_mask,
            percentile=percentile,
            bins=bins,
            title=title,
            save=save,
        )

    def plot_forgetting(
        self,
        *,
        log: bool = False,
        title: str | None = None,
        save: str | os.PathLike[str] | None = None,
    ) -> Figure:
        """How many examples were forgotten 0, 1, 2, ... times (Toneva et al., 2019).

        The never-learned examples are a bar of their own.

        Parameters
        ----------
        log:
            A logarithmic count axis.
        title:
            The figure's title.
        save:
            A path to write the figure to.

        Returns
        -------
        matplotlib.figure.Figure
            The figure.

        Raises
        ------
        ValueError
            A map without the ``forgetting`` column.

        Examples
        --------
        >>> import matplotlib.pyplot as plt, numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.2, .8], [.6, .4], [.5, .5]],
        ...               [[.8, .2], [.4, .6], [.3, .7], [.4, .6]]])
        >>> dm = fastcarto.compute(p, [0, 0, 0, 1], kind="probs")
        >>> fig = dm.plot_forgetting(log=True)
        >>> len(fig.axes)
        1
        >>> plt.close(fig)
        """
        return _plots.plot_forgetting(self, log=log, title=title, save=save)

    def plot_trajectories(
        self,
        ids: npt.ArrayLike,
        source: Any,
        *,
        labels: npt.ArrayLike | None = None,
        title: str | None = None,
        save: str | os.PathLike[str] | None = None,
    ) -> Figure:
        """p(gold) over the epochs for some examples, read back from their outputs.

        Parameters
        ----------
        ids:
            The examples to draw.
        source:
            The outputs this map was computed from (see :func:`fastcarto.plot_trajectories`).
        labels:
            Gold labels; default this map's ``label`` column for array and ``.npy`` sources.
        title:
            The figure's title.
        save:
            A path to write the figure to.

        Returns
        -------
        matplotlib.figure.Figure
            The figure.

        Raises
        ------
        ValueError
            No ``labels`` for a multi-label map, or a ``source`` of another size.

        Examples
        --------
        >>> import matplotlib.pyplot as plt, numpy as np, fastcarto
        >>> p = np.array([[[.9, .1], [.2, .8], [.6, .4], [.5, .5]],
        ...               [[.8, .2], [.4, .6], [.3, .7], [.4, .6]]])
        >>> dm = fastcarto.compute(p, [0, 0, 0, 1], kind="probs")
        >>> fig = dm.plot_trajectories([1, 2], p)
        >>> len(fig.axes[0].lines) >= 2
        True
        >>> plt.close(fig)
        """
        if labels is None and not _trajectories.is_table_source(source):
            if "label" not in self.columns or "class" in self.columns:
                raise ValueError("pass labels= (this map has no single-label 'label' column)")
            labels = self.to_arrow().column("label").to_numpy(zero_copy_only=False)
            # The labels are this map's, so a source of another size is the source's fault.
            shape = _trajectories.dense_shape(source)
            if shape is not None and len(shape) == 3 and shape[1] != len(self):
                raise ValueError(
                    f"source holds {shape[1]} examples (outputs of shape {shape}) but this map "
                    f"has {len(self)}: pass the outputs this map was computed from"
                )
        return _trajectories.plot_trajectories(
            ids,
            source,
            labels,
            kind=self.kind,  # type: ignore[arg-type]
            title=title,
            save=save,
        )
