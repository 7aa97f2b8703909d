"""``fastcarto.Datalab``: cleanlab's dataset audit, with fastcarto's engine behind it.

The API is cleanlab 2.x's ``Datalab`` (same names, same issue types, columns, scores and
report), so switching is a change of import. The class only orchestrates: it turns the
user's data into one :class:`~fastcarto._audit._base.AuditInputs` per ``find_issues`` call,
runs each issue type's module (``fastcarto._audit.<name>``, listed in
``fastcarto._audit.ISSUE_TYPES``) and keeps their results; every number comes from the
modules and the Rust core behind them. ``docs/audit.md`` documents each type's formulas.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._audit import ISSUE_TYPES
from ._audit._base import AuditInputs, IssueResult, KnnGraph

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ._datamap import DataMap

__all__ = ["Datalab"]

#: Runs at least this large show a progress bar over the issue types (with ``verbosity >= 1``).
PROGRESS_MIN_EXAMPLES = 20_000

#: Columns ``get_issues(name)`` adds from the type's results, as cleanlab adds them from info.
_EXTRA_COLUMNS = {
    "label": ("given_label", "predicted_label"),
    "near_duplicate": ("near_duplicate_sets", "distance_to_nearest_neighbor"),
    "class_imbalance": ("given_label",),
}
#: Info entries that hold label codes, shown as the user's labels by ``get_info``.
_LABEL_INFO = ("given_label", "predicted_label")


class Datalab:
    """Audits a classification dataset for label errors, outliers, near-duplicates, non-IID
    order, class imbalance, underperforming groups and missing features, as cleanlab's
    ``Datalab`` does (same API, issue types, columns and thresholds).

    Parameters
    ----------
    data:
        The dataset: a ``dict`` of equal-length columns, a ``pandas.DataFrame``, a
        ``pyarrow.Table``, a ``polars.DataFrame``, anything with ``__arrow_c_stream__``, or a
        Hugging Face ``datasets.Dataset``.
    task:
        ``"classification"`` (the only task supported).
    label_name:
        The column with the given labels, of any hashable type; they become codes
        ``0..K-1`` in sorted order (``class_names``), as cleanlab maps them. None: no labels
        (the label and class-imbalance checks do not run).
    verbosity:
        0: silent. 1 (default): a progress bar on runs of at least 20,000 examples. Also the
        default verbosity of :meth:`report`.

    Examples
    --------
    >>> import numpy as np, fastcarto
    >>> rng = np.random.default_rng(0)
    >>> labels = np.where(np.arange(200) < 4, "rare", "common")
    >>> X = rng.normal(size=(200, 3))
    >>> X[7] = np.nan
    >>> lab = fastcarto.Datalab(data={"y": labels}, label_name="y")
    >>> lab.find_issues(features=X, issue_types={"null": {}, "class_imbalance": {}})
    >>> lab.get_issue_summary()
            issue_type  score  num_issues
    0             null  0.995           1
    1  class_imbalance  0.020           4
    >>> print(lab.get_info("class_imbalance")["Rarest Class"])
    rare
    """

    def __init__(
        self,
        data: Any,
        task: str = "classification",
        label_name: str | None = None,
        verbosity: int = 1,
    ) -> None:
        if task != "classification":
            raise ValueError(
                f"task must be 'classification' (fastcarto audits classifiers), got {task!r}"
            )
        self.task = task
        self.verbosity = int(verbosity)
        self.label_name = label_name
        self.data = data
        n, labels = _read_labels(data, label_name)
        self._n = n
        self._labels: npt.NDArray[np.int64] | None = None
        self._class_names: npt.NDArray[Any] | None = None
        names = _class_label_names(data, label_name)
        if labels is not None and names is not None:
            # A datasets ClassLabel column: its codes and names, as cleanlab keeps them.
            self._class_names = np.asarray(names, dtype=object)
            self._labels = np.ascontiguousarray(labels, dtype=np.int64)
            bad = (self._labels < 0) | (self._labels >= len(names))
            if bad.any():
                raise ValueError(
                    f"label {self._labels[bad][0]} is not a class of the ClassLabel column "
                    f"{label_name!r} ({len(names)} classes)"
                )
        elif labels is not None:
            self._class_names, codes = np.unique(labels, return_inverse=True)
            self._labels = np.ascontiguousarray(codes.reshape(-1), dtype=np.int64)
        self._results: dict[str, IssueResult] = {}
        self._features: Any = None
        self._dynamics: DataMap | None = None

    # ---------------------------------------------------------------------------------------
    # cleanlab's attributes

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        """The given labels as codes ``0..K-1`` (empty if there is no label column)."""
        return self._labels if self._labels is not None else np.empty(0, dtype=np.int64)

    @property
    def has_labels(self) -> bool:
        """Whether the data has a label column (``label_name`` was given)."""
        return self._labels is not None

    @property
    def class_names(self) -> list[Any]:
        """The label values, in code order (sorted); empty without labels."""
        return [] if self._class_names is None else self._class_names.tolist()

    @property
    def issues(self) -> pd.DataFrame:
        """``is_<type>_issue`` and ``<type>_score`` of every example, for every type found."""
        import pandas as pd

        frames = [_core_columns(name, r.issues) for name, r in self._results.items()]
        if not frames:
            return pd.DataFrame(index=range(self._n))
        return pd.concat(frames, axis=1)

    @property
    def issue_summary(self) -> pd.DataFrame:
        """One row per issue type found: ``issue_type``, ``score`` (lower = more severe) and
        ``num_issues``."""
        import pandas as pd

        names = list(self._results)
        return pd.DataFrame(
            {
                "issue_type": pd.Series(names, dtype=object),
                "score": np.array([self._results[k].score for k in names], dtype=np.float64),
                "num_issues": np.array(
                    [int(self._results[k].issues[f"is_{k}_issue"].sum()) for k in names],
                    dtype=np.int64,
                ),
            }
        )

    def __repr__(self) -> str:
        found = ", ".join(self._results) or "none yet"
        return (
            f"Datalab({self._n:,} examples, {len(self.class_names)} classes; issue types checked: "
            f"{found})"
        )

    # ---------------------------------------------------------------------------------------
    # the audit

    def find_issues(
        self,
        *,
        features: Any = None,
        pred_probs: Any = None,
        knn_graph: Any = None,
        issue_types: Mapping[str, Mapping[str, Any]] | None = None,
        dynamics: Any = None,
    ) -> None:
        """Checks the dataset for each issue type the inputs allow (or those in ``issue_types``).

        Parameters
        ----------
        features:
            ``(n, d)`` numeric features (embeddings): a numpy array, an ``np.memmap``, the path
            of a ``.npy`` file (memory-mapped), a ``pandas``/``polars`` frame or Arrow data
            (numeric columns, or one fixed-size-list column). NaN is allowed (``null``).
        pred_probs:
            ``(n, K)`` out-of-sample predicted probabilities, one column per class.
        knn_graph:
            A precomputed neighbour graph: a ``scipy.sparse`` ``(n, n)`` matrix with the same
            number ``k`` of stored distances in every row (what cleanlab accepts, e.g.
            ``NearestNeighbors.kneighbors_graph(mode="distance")``), or a
            ``fastcarto._audit.KnnGraph``.
        issue_types:
            ``{type: {param: value}}``: only these types, with cleanlab's parameters (e.g.
            ``{"outlier": {"threshold": 0.2}, "class_imbalance": {}}``). None: every default
            type the inputs allow, as cleanlab decides.
        dynamics:
            Training dynamics: a :class:`fastcarto.DataMap` aligned with the rows (or with an
            ``id`` column numbering them), or a source :func:`fastcarto.compute` reads on its
            own (a ``Recorder`` run, a long table). Label issues then come from the dynamics.

        Raises
        ------
        TypeError
            ``issue_types`` is not a dict of dicts.
        ValueError
            An unknown issue type or parameter, a type that cannot run on the inputs given,
            no type that can run at all, or inputs whose number of rows differs from the
            data's.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> X = np.random.default_rng(0).normal(size=(40, 2))
        >>> X[3] = np.nan
        >>> lab = fastcarto.Datalab(data={"y": ["a", "b"] * 20}, label_name="y", verbosity=0)
        >>> lab.find_issues(features=X, issue_types={"null": {}})
        >>> int(lab.issues["is_null_issue"].sum())
        1
        """
        if issue_types is not None and not isinstance(issue_types, Mapping):
            raise TypeError(
                "issue_types must be a dict {issue_type: {parameter: value}}, "
                f"got {type(issue_types).__name__}"
            )
        if issue_types is not None and not issue_types:
            # cleanlab warns and returns; an empty request is a mistake we can name.
            raise ValueError(
                "issue_types is empty, so no issue type would run; pass None for the default "
                "types or e.g. {'outlier': {}}"
            )
        inputs = AuditInputs(
            n=self._n,
            labels=self._labels,
            class_names=self._class_names,
            features=_read_features(features, self._n),
            pred_probs=_read_pred_probs(pred_probs, self._n, self._class_names),
            dynamics=_read_dynamics(dynamics, self._n),
            knn_graph=_read_knn_graph(knn_graph, self._n),
        )
        given = {"features": features, "pred_probs": pred_probs, "knn_graph": knn_graph}
        plan = self._plan(inputs, _without_inputs(issue_types, given))
        if not plan:
            raise ValueError(
                "no issue type can run on these inputs: pass features=, pred_probs=, "
                "knn_graph= or dynamics= (or a label column)"
            )
        # Types that use neighbours share one graph, computed at the largest k any of them asks.
        inputs._computed["knn_k"] = max(
            [params["k"] for _, params in plan.values() if isinstance(params.get("k"), int)],
            default=0,
        )
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(plan),
            desc="Finding issues",
            unit="type",
            disable=self.verbosity < 1 or self._n < PROGRESS_MIN_EXAMPLES,
        )
        with bar:
            for name, (module, params) in plan.items():
                bar.set_postfix_str(name)
                result = module.find(inputs, **params)
                _check_result(name, result, self._n)
                self._results.pop(name, None)
                self._results[name] = result
                bar.update()
        if inputs.features is not None:
            self._features = inputs.features
        if inputs.dynamics is not None:
            self._dynamics = inputs.dynamics

    def _plan(
        self, inputs: AuditInputs, issue_types: Mapping[str, Mapping[str, Any]] | None
    ) -> dict[str, tuple[ModuleType, dict[str, Any]]]:
        """The issue types to run, in order, each with its module and parameters."""
        plan: dict[str, tuple[ModuleType, dict[str, Any]]] = {}
        if issue_types is None:
            for name in ISSUE_TYPES:
                module = _module(name, required=False)
                if module is not None and module.can_run(inputs):
                    plan[name] = (module, {})
            return plan
        for name, params in issue_types.items():
            if name not in ISSUE_TYPES:
                raise ValueError(
                    f"unknown issue type {name!r}; fastcarto's issue types are "
                    f"{', '.join(ISSUE_TYPES)}"
                )
            module = _module(name, required=True)
            assert module is not None
            if params is None:
                params = {}
            if not isinstance(params, Mapping):
                raise TypeError(
                    f"issue_types[{name!r}] must be a dict of parameters, "
                    f"got {type(params).__name__}"
                )
            _check_params(name, module, params)
            if not module.can_run(inputs):
                raise ValueError(f"issue type {name!r} cannot run on these inputs: {_needs(name)}")
            # cleanlab drops None values and lets the issue manager use its default.
            plan[name] = (module, {k: v for k, v in params.items() if v is not None})
        return plan

    # ---------------------------------------------------------------------------------------
    # results

    def get_issues(self, issue_name: str | None = None) -> pd.DataFrame:
        """Per-example results: every type's ``is_<type>_issue`` and ``<type>_score``, or one
        type's columns with its extra ones (``label``: ``given_label``, ``predicted_label``;
        ``near_duplicate``: ``near_duplicate_sets``, ``distance_to_nearest_neighbor``;
        ``class_imbalance``: ``given_label``), as cleanlab returns them.

        Parameters
        ----------
        issue_name:
            One issue type (``"label"``, ``"outlier"``, ...), or None for all.

        Returns
        -------
        pandas.DataFrame
            One row per example.

        Raises
        ------
        ValueError
            Before :meth:`find_issues`, or for a type it did not check.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> X = np.random.default_rng(0).normal(size=(40, 2))
        >>> X[3] = np.nan
        >>> lab = fastcarto.Datalab(data={"y": ["a", "b"] * 20}, label_name="y", verbosity=0)
        >>> lab.find_issues(features=X, issue_types={"null": {}})
        >>> lab.get_issues("null").head(4)
           is_null_issue  null_score
        0          False         1.0
        1          False         1.0
        2          False         1.0
        3           True         0.0
        """
        if not self._results:
            raise ValueError("no issues yet: call find_issues() first")
        issues = self.issues
        if issue_name is None:
            return issues
        columns = [c for c in issues.columns if issue_name in c]
        if not columns or issue_name not in self._results:
            raise ValueError(
                f"no results for issue type {issue_name!r}; checked: {', '.join(self._results)}"
            )
        out = issues[columns]
        result = self._results[issue_name]
        info = self.get_info(issue_name)
        extra: dict[str, Any] = {}
        for column in _EXTRA_COLUMNS.get(issue_name, ()):
            if column in result.issues.columns:
                values = result.issues[column].to_numpy()
                if column in _LABEL_INFO and self._class_names is not None:
                    values = _label_values(values, self._class_names)
                extra[column] = values
            elif info.get(column) is not None:
                extra[column] = info[column]
        return out.assign(**extra) if extra else out

    def get_issue_summary(self, issue_name: str | None = None) -> pd.DataFrame:
        """``issue_type``, ``score`` and ``num_issues`` of every type checked, or of one.

        ``score`` is in [0, 1], lower = more severe.

        Parameters
        ----------
        issue_name:
            One issue type, or None for all.

        Returns
        -------
        pandas.DataFrame
            One row per issue type.

        Raises
        ------
        ValueError
            Before :meth:`find_issues`, or for a type it did not check.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> X = np.random.default_rng(0).normal(size=(40, 2))
        >>> X[3] = np.nan
        >>> lab = fastcarto.Datalab(data={"y": ["a", "b"] * 20}, label_name="y", verbosity=0)
        >>> lab.find_issues(features=X, issue_types={"null": {}})
        >>> lab.get_issue_summary("null")
          issue_type  score  num_issues
        0       null  0.975           1
        """
        if not self._results:
            raise ValueError("no issues yet: call find_issues() first")
        summary = self.issue_summary
        if issue_name is None:
            return summary
        if issue_name not in self._results:
            raise ValueError(f"issue type {issue_name!r} not found in the summary")
        return summary[summary["issue_type"] == issue_name].reset_index(drop=True)

    def get_info(self, issue_name: str | None = None) -> dict[str, Any]:
        """Statistics and intermediate results of one issue type (``"statistics"``: of the
        dataset), or everything (None). Label codes in ``given_label``/``predicted_label`` are
        shown as the user's labels, as cleanlab shows them.

        Parameters
        ----------
        issue_name:
            An issue type, ``"statistics"``, or None for everything.

        Returns
        -------
        dict
            The type's statistics by name (for None: one dict per type, and
            ``"statistics"``).

        Raises
        ------
        ValueError
            An issue type that has not been checked.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> X = np.random.default_rng(0).normal(size=(40, 2))
        >>> X[3] = np.nan
        >>> lab = fastcarto.Datalab(data={"y": ["a", "b"] * 20}, label_name="y", verbosity=0)
        >>> lab.find_issues(features=X, issue_types={"null": {}})
        >>> lab.get_info("statistics")["class_names"]
        ['a', 'b']
        """
        if issue_name is None:
            out: dict[str, Any] = {"statistics": self._statistics()}
            out.update({name: dict(r.info) for name, r in self._results.items()})
            return out
        if issue_name == "statistics":
            return self._statistics()
        if issue_name not in self._results:
            raise ValueError(
                f"issue_name {issue_name} not found in self.info. These have not been computed yet."
            )
        info = dict(self._results[issue_name].info)
        if issue_name in ("label", "class_imbalance") and self._class_names is not None:
            for key in _LABEL_INFO:
                if info.get(key) is not None:
                    info[key] = _label_values(np.asarray(info[key]), self._class_names)
            info["class_names"] = self.class_names
        return info

    def _statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "num_examples": self._n,
            "multi_label": False,
            "health_score": (
                float(np.mean([r.score for r in self._results.values()])) if self._results else None
            ),
        }
        if self._class_names is not None:
            stats["class_names"] = self.class_names
            stats["num_classes"] = len(self.class_names)
        return stats

    # ---------------------------------------------------------------------------------------
    # the report

    def report(
        self,
        *,
        num_examples: int = 5,
        verbosity: int | None = None,
        include_description: bool = True,
        show_summary_score: bool = False,
        show_all_issues: bool = False,
    ) -> None:
        """Prints the report of :meth:`get_report` (cleanlab's ``Datalab.report``).

        Parameters
        ----------
        num_examples, verbosity, include_description, show_summary_score, show_all_issues:
            As in :meth:`get_report`.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> X = np.random.default_rng(0).normal(size=(40, 2))
        >>> X[3] = np.nan
        >>> lab = fastcarto.Datalab(data={"y": ["a", "b"] * 20}, label_name="y", verbosity=0)
        >>> lab.find_issues(features=X, issue_types={"null": {}})
        >>> lab.report(include_description=False)  # doctest: +ELLIPSIS
        Dataset Information: num_examples: 40, num_classes: 2
        <BLANKLINE>
        Here is a summary of various issues found in your data:
        ...
        """
        print(
            self.get_report(
                num_examples=num_examples,
                verbosity=verbosity,
                include_description=include_description,
                show_summary_score=show_summary_score,
                show_all_issues=show_all_issues,
            )
        )

    def get_report(
        self,
        *,
        num_examples: int = 5,
        verbosity: int | None = None,
        include_description: bool = True,
        show_summary_score: bool = False,
        show_all_issues: bool = False,
    ) -> str:
        """The audit as text, as cleanlab writes it: the summary table (types with the most
        issues first), then for each type its description, count, summary score and the
        ``num_examples`` most severe examples. With dynamics, the label section also shows
        each example's data-map region.

        Parameters
        ----------
        num_examples:
            How many of the most severe examples each section lists.
        verbosity:
            cleanlab's levels (0 to 4: more statistics); None for the Datalab's own.
        include_description:
            Describe each issue type.
        show_summary_score:
            Show each type's score in its section.
        show_all_issues:
            Also list the types that found no issue.

        Returns
        -------
        str
            The report.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> X = np.random.default_rng(0).normal(size=(40, 2))
        >>> X[3] = np.nan
        >>> lab = fastcarto.Datalab(data={"y": ["a", "b"] * 20}, label_name="y", verbosity=0)
        >>> lab.find_issues(features=X, issue_types={"null": {}})
        >>> print(lab.get_report(include_description=False).splitlines()[2])
        Here is a summary of various issues found in your data:
        """
        from ._audit import _report

        if not self._results:
            return "Please specify some `issue_types` in datalab.find_issues() to see a report.\n"
        return _report.write(
            self,
            num_examples=num_examples,
            verbosity=self.verbosity if verbosity is None else verbosity,
            include_description=include_description,
            show_summary_score=show_summary_score,
            show_all_issues=show_all_issues,
        )

    # ---------------------------------------------------------------------------------------
    # plots

    def plot(
        self,
        *,
        max_points: int = 50_000,
        seed: int = 0,
        title: str | None = None,
        save: str | os.PathLike[str] | None = None,
    ) -> Figure:
        """The features in 2-D (their first two principal components) coloured by issue type,
        as cleanlab's tutorial draws them: each example in the colour of the first type (in the
        summary's order) that flags it, unflagged examples in grey. Up to ``max_points``
        examples are drawn (a seeded random subsample above that; flagged ones always).

        Parameters
        ----------
        max_points:
            The most examples drawn.
        seed:
            Seed of the subsample.
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
            :meth:`find_issues` was not given ``features``.

        Examples
        --------
        >>> import matplotlib.pyplot as plt, numpy as np, fastcarto
        >>> X = np.random.default_rng(0).normal(size=(40, 2))
        >>> lab = fastcarto.Datalab(data={"y": [0, 1] * 20}, label_name="y", verbosity=0)
        >>> lab.find_issues(features=X, issue_types={"outlier": {"k": 5}})
        >>> fig = lab.plot(title="outliers")
        >>> len(fig.axes) >= 1
        True
        >>> plt.close(fig)
        """
        from ._audit import _plots

        if self._features is None:
            raise ValueError("lab.plot() draws the features: call find_issues(features=...) first")
        return _plots.plot_features(
            self._features,
            self.issues,
            list(self._results),
            max_points=max_points,
            seed=seed,
            title=title,
            save=save,
        )


# -------------------------------------------------------------------------------------------
# reading the inputs


def _module(name: str, *, required: bool) -> ModuleType | None:
    """The issue type's module; a default type whose module is not installed is skipped."""
    try:
        return importlib.import_module(f"fastcarto._audit.{name}")
    except ModuleNotFoundError as e:
        if required or e.name != f"fastcarto._audit.{name}":
            raise
        return None


def _without_inputs(
    issue_types: Mapping[str, Mapping[str, Any]] | None, given: Mapping[str, Any]
) -> Mapping[str, Mapping[str, Any]] | None:
    """``issue_types`` without the inputs cleanlab writes into it (its ``find_issues`` adds
    ``features=`` etc. to each type's parameters, in place, so a dict reused from a cleanlab
    call holds them): the same object as the argument is dropped, another one is an error."""
    if issue_types is None:
        return None
    out: dict[str, Mapping[str, Any]] = {}
    for name, params in issue_types.items():
        if isinstance(params, Mapping):
            for key in set(params) & set(given):
                if params[key] is not given[key] and params[key] is not None:
                    raise ValueError(
                        f"issue_types[{name!r}] gives {key}; pass it to find_issues({key}=...) "
                        "instead, once for every issue type"
                    )
            params = {k: v for k, v in params.items() if k not in given}
        out[name] = params
    return out


def _check_params(name: str, module: ModuleType, params: Mapping[str, Any]) -> None:
    signature = inspect.signature(module.find)
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    accepted = [p for p in list(signature.parameters)[1:]]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for issue type {name!r}; "
            f"it accepts: {', '.join(accepted) or 'no parameters'}"
        )


def _needs(name: str) -> str:
    return {
        "null": "it needs features=",
        "label": "it needs labels (label_name=) and pred_probs=, features= or dynamics=",
        "outlier": "it needs features=, knn_graph= or pred_probs= with labels",
        "near_duplicate": "it needs features= or knn_graph=",
        "non_iid": "it needs features=, knn_graph= or pred_probs=",
        "class_imbalance": "it needs labels (label_name=)",
        "underperforming_group": "it needs labels, pred_probs= and features= or knn_graph=",
    }.get(name, "required inputs are missing")


def _read_labels(data: Any, label_name: str | None) -> tuple[int, npt.NDArray[Any] | None]:
    """The number of rows of ``data`` and its label column (None without ``label_name``)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        n = len(data)
        column = None if label_name is None else _column(data, label_name, list(data.columns))
    elif isinstance(data, Mapping):
        lengths = {k: len(v) for k, v in data.items()}
        if not lengths:
            raise ValueError("data is an empty dict; give it at least the label column")
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the columns of data have different lengths: {lengths}")
        n = next(iter(lengths.values()))
        column = None if label_name is None else _column(data, label_name, list(data))
    elif hasattr(data, "__arrow_c_stream__") or type(data).__module__.startswith("pyarrow"):
        import pyarrow as pa

        table = pa.table(data)
        n = table.num_rows
        if label_name is None:
            column = None
        else:
            if label_name not in table.column_names:
                raise KeyError(
                    f"label_name {label_name!r} is not a column of data "
                    f"(columns: {', '.join(table.column_names)})"
                )
            column = table.column(label_name).to_pandas().to_numpy()
    elif hasattr(data, "column_names") and hasattr(data, "__len__"):
        # A Hugging Face ``datasets.Dataset``, as cleanlab's Datalab takes.
        n = len(data)
        names = list(data.column_names)
        column = None if label_name is None else list(_column(data, label_name, names))
    else:
        raise TypeError(
            "data must be a dict of columns, a pandas or polars DataFrame, a pyarrow Table or "
            f"a datasets.Dataset, got {type(data).__name__}"
        )
    if column is None:
        return n, None
    labels = np.asarray(column)
    if labels.ndim != 1:
        raise ValueError(f"the label column must be 1-d, got shape {labels.shape}")
    if n == 0:
        raise ValueError("data has no rows")
    missing = np.flatnonzero(pd.isna(labels))
    if missing.size:
        raise ValueError(
            f"the label column has {missing.size} missing value(s) (first at row {missing[0]}); "
            "drop or fill those rows first"
        )
    if labels.dtype == object:
        kinds = {type(v) for v in labels}
        if len(kinds) > 1:
            raise TypeError(
                "labels mix types ("
                + ", ".join(sorted(t.__name__ for t in kinds))
                + "); give every label the same type"
            )
    return n, labels


def _class_label_names(data: Any, label_name: str | None) -> list[Any] | None:
    """The class names of a ``datasets.ClassLabel`` label column, else None."""
    features = getattr(data, "features", None)
    if label_name is None or not isinstance(features, Mapping):
        return None
    names = getattr(features.get(label_name), "names", None)
    return list(names) if isinstance(names, list) else None


def _column(data: Any, name: str, names: list[Any]) -> Any:
    if name not in names:
        raise KeyError(
            f"label_name {name!r} is not a column of data (columns: {', '.join(map(str, names))})"
        )
    return data[name]


def _read_features(features: Any, n: int) -> npt.NDArray[np.floating[Any]] | None:
    """2-d float32/float64 features, memory-mapped when they come from a ``.npy`` file."""
    if features is None:
        return None
    if isinstance(features, (str, bytes, os.PathLike)):
        path = Path(os.fsdecode(features))
        if path.suffix != ".npy":
            raise ValueError(f"features as a path must be a .npy file, got {path}")
        if not path.is_file():
            raise FileNotFoundError(f"features file not found: {path}")
        array: Any = np.load(path, mmap_mode="r")
    elif hasattr(features, "__arrow_c_stream__") or hasattr(features, "__arrow_c_array__"):
        array = _arrow_matrix(features)
    elif hasattr(features, "to_numpy") and not isinstance(features, np.ndarray):
        array = features.to_numpy()
    else:
        array = features if isinstance(features, np.ndarray) else np.asarray(features)
    if array.ndim != 2:
        raise ValueError(f"features must be 2-d (examples, features), got shape {array.shape}")
    if array.shape[0] != n:
        raise ValueError(
            f"features have {array.shape[0]} rows but the dataset has {n} examples; "
            "give one row per example"
        )
    if array.shape[1] == 0:
        raise ValueError("features have no columns")
    if array.dtype in (np.float32, np.float64):
        return array  # type: ignore[no-any-return]
    if array.dtype == np.float16:
        return np.asarray(array, dtype=np.float32)
    if array.dtype.kind in "biu":
        return np.asarray(array, dtype=np.float64)
    raise TypeError(f"features must be numeric, got dtype {array.dtype}")


def _arrow_matrix(data: Any) -> npt.NDArray[Any]:
    """Arrow features as a matrix: numeric columns side by side, or one fixed-size-list column."""
    import pyarrow as pa

    table = pa.table(data) if hasattr(data, "__arrow_c_stream__") else pa.table({"x": data})
    if table.num_columns == 1 and pa.types.is_fixed_size_list(table.schema.field(0).type):
        column = table.column(0).combine_chunks()
        width = column.type.list_size
        if column.null_count:
            raise ValueError("the features column has null rows; use NaN for missing values")
        values = column.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(column), width)  # type: ignore[no-any-return]
    for field in table.schema:
        if not (pa.types.is_floating(field.type) or pa.types.is_integer(field.type)):
            raise TypeError(
                f"features column {field.name!r} has type {field.type}; give numeric columns "
                "or one fixed-size list column"
            )
    columns = [
        table.column(i).to_numpy().astype(np.float64, copy=False) for i in range(table.num_columns)
    ]
    return np.column_stack(columns)


def _read_pred_probs(
    pred_probs: Any, n: int, class_names: npt.NDArray[Any] | None
) -> npt.NDArray[np.floating[Any]] | None:
    if pred_probs is None:
        return None
    if isinstance(pred_probs, (str, os.PathLike)):
        pred_probs = np.load(Path(pred_probs), mmap_mode="r")
    probs = np.asarray(pred_probs)
    if probs.ndim != 2:
        raise ValueError(f"pred_probs must be 2-d (examples, classes), got shape {probs.shape}")
    if probs.shape[0] != n:
        raise ValueError(f"pred_probs have {probs.shape[0]} rows but the dataset has {n} examples")
    if class_names is not None and probs.shape[1] != len(class_names):
        raise ValueError(
            f"pred_probs have {probs.shape[1]} columns but the labels have {len(class_names)} "
            f"classes ({', '.join(map(str, class_names[:10]))}"
            f"{', ...' if len(class_names) > 10 else ''}); "
            "give one column per class, in sorted label order"
        )
    if probs.dtype not in (np.float32, np.float64):
        if probs.dtype.kind not in "biuf":
            raise TypeError(f"pred_probs must be numeric, got dtype {probs.dtype}")
        probs = probs.astype(np.float64)
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        raise ValueError(
            f"pred_probs have NaN or infinite values in {int(bad.sum())} row(s) "
            f"(first: row {int(np.flatnonzero(bad)[0])})"
        )
    return probs


def _read_knn_graph(knn_graph: Any, n: int) -> KnnGraph | None:
    """A user's neighbour graph: a ``KnnGraph``, or a scipy sparse matrix as cleanlab takes."""
    if knn_graph is None:
        return None
    if isinstance(knn_graph, KnnGraph):
        graph = knn_graph
    else:
        import scipy.sparse

        if not scipy.sparse.issparse(knn_graph):
            raise TypeError(
                "knn_graph must be a scipy.sparse matrix of distances (as "
                "NearestNeighbors.kneighbors_graph(mode='distance') returns), "
                f"got {type(knn_graph).__name__}"
            )
        graph = KnnGraph.from_csr(_sorted_rows(scipy.sparse.csr_matrix(knn_graph)))
    if graph.indices.shape[0] != n:
        raise ValueError(
            f"knn_graph has {graph.indices.shape[0]} rows but the dataset has {n} examples"
        )
    return graph


def _sorted_rows(csr: Any) -> Any:
    """``csr`` with each row's entries in ascending distance (a sparse matrix may keep them by
    column, e.g. after ``sort_indices()``), ties in column order."""
    csr = csr.copy()
    csr.sort_indices()
    counts = np.diff(csr.indptr)
    rows = np.repeat(np.arange(csr.shape[0]), counts)
    order = np.lexsort((csr.data, rows))  # by row, then distance; stable, so ties by column
    csr.data, csr.indices = csr.data[order], csr.indices[order]
    csr.has_sorted_indices = False
    return csr


def _read_dynamics(dynamics: Any, n: int) -> DataMap | None:
    """Training dynamics as a ``DataMap`` whose row ``i`` is example ``i``."""
    if dynamics is None:
        return None
    from ._compute import compute
    from ._datamap import DataMap

    if isinstance(dynamics, DataMap):
        dm = dynamics
    elif isinstance(dynamics, np.ndarray) or (
        isinstance(dynamics, (str, os.PathLike)) and os.fspath(dynamics).endswith(".npy")
    ):
        raise TypeError(
            "dense dynamics need their kind and labels: pass "
            "dynamics=fastcarto.compute(outputs, labels, kind='logits') (or kind='probs')"
        )
    else:
        dm = compute(dynamics, progress=False)
    if "class" in dm.columns:
        raise ValueError("dynamics of a multi-label run cannot audit a classification dataset")
    if "id" not in dm.columns:
        if len(dm) != n:
            raise ValueError(f"dynamics have {len(dm)} examples but the dataset has {n}")
        return dm
    ids = np.asarray(dm["id"])
    if (
        ids.dtype.kind not in "iu"
        or len(ids) != n
        or not np.array_equal(np.sort(ids), np.arange(n))
    ):
        raise ValueError(
            f"dynamics ids must number the dataset's {n} examples 0..{n - 1} once each "
            f"(got {len(ids)} rows)"
        )
    if np.array_equal(ids, np.arange(n)):
        return dm
    import pyarrow as pa

    order = np.argsort(ids, kind="stable")
    return DataMap(dm.to_arrow().take(pa.array(order)), kind=dm.kind, compat=dm.compat)


def _check_result(name: str, result: IssueResult, n: int) -> None:
    """An issue type's result has cleanlab's shape (a bug in fastcarto otherwise)."""
    for column in (f"is_{name}_issue", f"{name}_score"):
        if column not in result.issues.columns:
            raise RuntimeError(f"fastcarto bug: issue type {name!r} returned no {column} column")
    if len(result.issues) != n:
        raise RuntimeError(f"fastcarto bug: issue type {name!r} returned {len(result.issues)} rows")


def _core_columns(name: str, issues: pd.DataFrame) -> pd.DataFrame:
    """The columns cleanlab keeps in ``Datalab.issues``: the flag and the score."""
    return issues[[f"is_{name}_issue", f"{name}_score"]].reset_index(drop=True)


def _label_values(codes: npt.NDArray[Any], class_names: npt.NDArray[Any]) -> npt.NDArray[Any]:
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        return codes
    return np.asarray(class_names[codes])
