"""The text report of a :class:`fastcarto.Datalab`, laid out as cleanlab's ``Datalab.report``.

The summary table lists the types with the most issues first; each type's section then gives
its description, count, summary score, its most severe examples (lowest scores) and, by
verbosity, entries of its info (each module's ``VERBOSITY_LEVELS``, as cleanlab's issue
managers declare them). Training dynamics add each label-issue example's data-map region.
"""

from __future__ import annotations

import importlib
import json
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

#: cleanlab's default verbosity levels of an issue manager.
_DEFAULT_LEVELS: dict[int, list[str]] = {0: [], 1: [], 2: [], 3: []}


def write(
    lab: Any,
    *,
    num_examples: int,
    verbosity: int,
    include_description: bool,
    show_summary_score: bool,
    show_all_issues: bool,
) -> str:
    summary = lab.get_issue_summary()
    if not show_all_issues and not summary["num_issues"].sum() > 0:
        text = "No issues found in the data. Good job!"
        if not show_summary_score:
            text += (
                "\n\nTry re-running Datalab.report() with `show_summary_score = True` and "
                "`show_all_issues = True`."
            )
        return text
    ordered = summary.sort_values(by="num_issues", ascending=False, kind="stable")
    text = _summary(lab, ordered, show_summary_score, show_all_issues)
    names = [
        name
        for name, count in zip(ordered["issue_type"], ordered["num_issues"], strict=True)
        if show_all_issues or count > 0
    ]
    sections = [_section(lab, name, num_examples, verbosity, include_description) for name in names]
    return text + "\n\n\n".join(sections)


def _summary(lab: Any, summary: pd.DataFrame, with_score: bool, show_all: bool) -> str:
    stats = lab.get_info("statistics")
    head = f"Dataset Information: num_examples: {stats['num_examples']}"
    if stats.get("num_classes") is not None:
        head += f", num_classes: {stats['num_classes']}"
    if not show_all:
        summary = summary[summary["num_issues"] > 0]
    table = summary if with_score else summary.drop(columns=["score"])
    text = f"{head}\n\nHere is a summary of various issues found in your data:\n\n"
    text += str(table.to_string(index=False))
    if with_score:
        text += (
            "\n\n(Note: A lower score indicates a more severe issue across all examples in the "
            "dataset.)"
        )
    return text + (
        "\n\nLearn about each issue: docs/audit.md (fastcarto's audit guide)\n"
        "See which examples in your dataset exhibit each issue via: "
        "`datalab.get_issues(<ISSUE_NAME>)`\n\n"
        "Data indices corresponding to top examples of each issue are shown below.\n\n\n"
    )


def _section(
    lab: Any, name: str, num_examples: int, verbosity: int, include_description: bool
) -> str:
    module = importlib.import_module(f"fastcarto._audit.{name}")
    levels: dict[int, list[str]] = getattr(module, "VERBOSITY_LEVELS", _DEFAULT_LEVELS)
    top = max(levels) + 1
    if verbosity not in [*levels, top]:
        raise ValueError(
            f"Verbosity level {verbosity} not supported for {name}. Supported levels: "
            f"{sorted(levels)}; use verbosity={top} to print all info."
        )
    issues = lab.get_issues(name)
    info = lab.get_info(name)
    score_key = f"{name}_score"
    top_ids = issues.sort_values(by=score_key, ascending=True, kind="stable").index[:num_examples]
    score = float(lab.get_issue_summary(name)["score"].iloc[0])

    text = f"{' ' + name + ' issues ':-^60}\n\n"
    description = getattr(module, "DESCRIPTION", "")
    if include_description and description:
        text += "About this issue:\n\t" + description + "\n\n"
    text += (
        f"Number of examples with this issue: {int(issues[f'is_{name}_issue'].sum())}\n"
        f"Overall dataset quality in terms of this issue: {score:.4f}\n\n"
    )
    shown = issues.loc[top_ids]
    if name == "label" and lab._dynamics is not None:
        regions = lab._dynamics.regions()
        shown = shown.assign(region=regions.to_numpy()[np.asarray(top_ids)])
    text += "Examples representing most severe instances of this issue:\n"
    text += str(shown.to_string())

    omit = set(issues.columns)
    keys = set(chain.from_iterable(list(levels.values())[: verbosity + 1])) - omit
    if verbosity == top:
        keys |= set(info) - omit
    keys = {k for k in keys if k in info and k != "statistics"}
    if keys:
        text += "\n\nAdditional Information: "
        for key in [k for k in info if k in keys]:
            text += _info_entry(key, info[key])
    notes = getattr(module, "report_notes", None)
    if notes is not None:
        text += str(notes(lab.get_issues(name)))
    return text


def _info_entry(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return f"\n{key}:\n{json.dumps(value, indent=4, default=str)}"
    if isinstance(value, pd.DataFrame):
        rows = value.head(5).to_string()
        if len(value) > 5:
            rows += f"\n... (total {len(value)} rows)"
        return f"\n{key}:\n{rows}"
    return f"\n{key}: {_truncate(value)}"


def _truncate(value: Any, max_len: int = 4) -> str:
    """cleanlab's way of printing an info value: lists and arrays cut to ``max_len`` items."""
    if hasattr(value, "shape") or hasattr(value, "ndim"):
        array = np.array(value)
        if array.ndim > 1:
            with np.printoptions(threshold=max_len):
                return f"array of shape {array.shape}\n{array}"
        value = array.tolist()
    if isinstance(value, list):
        if value and all(isinstance(v, list) for v in value):
            return _truncate(np.array(value, dtype=object), max_len)
        if len(value) > max_len:
            value = [*value[:max_len], "..."]
    return str(value)
