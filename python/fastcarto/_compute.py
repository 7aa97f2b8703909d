"""`compute`: the data map of a whole training run in one parallel pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _tables
from ._datamap import DataMap
from ._dense import dense_table
from ._inputs import (
    COMPATS,
    KINDS,
    NAN_POLICIES,
    Compat,
    EpochSelection,
    Kind,
    NanPolicy,
    as_path,
    check_choice,
    check_ddof,
    check_threads,
)


def compute(
    source: Any,
    labels: Any = None,
    *,
    kind: Kind | None = None,
    compat: Compat | None = None,
    epochs: EpochSelection = None,
    nan_policy: NanPolicy = "raise",
    ddof: int = 0,
    columns: Mapping[str, str] | None = None,
    require_complete: bool = False,
    progress: bool = True,
    threads: int | None = None,
) -> DataMap:
    """Computes every training-dynamics metric for every example in one pass over the epochs.

    Parameters
    ----------
    source:
        Either dense outputs of shape ``(epochs, examples, classes)``, float32 or float64: a
        numpy array, an ``np.memmap``, anything ``np.asarray`` accepts (CPU tensors), or the path
        of a ``.npy`` file (memory-mapped by the engine, never read whole). ``classes == 1`` means
        a binary model's single logit / positive-class probability, with labels 0/1.

        Or a **long table**, one row per (epoch, example), with columns ``epoch``, ``id`` (int or
        string), ``label`` and ``logits`` or ``probs`` (a fixed-size list of floats per row):
        the path of an Arrow IPC file (``.arrow``/``.feather``, memory-mapped), an IPC stream
        (``.arrows``, what :class:`fastcarto.Recorder` writes), a Parquet file, a directory or
        glob of such files (one per epoch, shards, ``epoch=3/`` folders), or any Arrow object
        (pyarrow Table or RecordBatchReader, polars or pandas DataFrame, DuckDB result: anything
        with ``__arrow_c_stream__``; also a ``pyarrow.dataset`` Dataset or Scanner). Rows and
        files may come in any order; the result has one row per id, in increasing id order.
        Also allenai/cartography's ``training_dynamics/`` directory
        (``dynamics_epoch_{e}.jsonl``), and a directory of per-epoch ``.npy`` arrays
        ``[examples, classes]`` named after their epoch (``epoch_3.npy``), with ``labels.npy``
        (or ``labels=``) and optionally ``ids.npy``.
    labels:
        One integer label per example, shape ``(examples,)``; or 0/1 targets of shape
        ``(examples, classes)`` for multi-label models with independent sigmoid outputs, whose
        metrics are then reported per (example, class) pair (long form, with a ``class`` column).
        Either may be given as the path of a file, read as the CLI's ``--labels``: a ``.npy``
        array, or a ``.txt`` (whitespace-separated) / ``.csv`` file with one example per line.
    kind:
        ``"logits"`` (probabilities are their softmax, or sigmoid for one column) or ``"probs"``
        (rows must lie in [0, 1] and sum to 1). Declared by the caller, never guessed; a long
        table declares it by naming its outputs column ``logits`` or ``probs``. An array declared
        ``"logits"`` whose sampled rows (256 of the first and of the last epoch used) are all
        probability distributions gives a :class:`fastcarto.KindWarning`.
    compat:
        Reproduce a published implementation's conventions and column names exactly:
        ``"cartography"`` (allenai/cartography ``td_metrics``), ``"aum"`` (the ``aum`` package),
        ``"dataiq"`` (Data-IQ) or ``"toneva"`` (forgetting events). None gives fastcarto's table.
    epochs:
        Which epochs to use: an int ``k`` (the first ``k``, as cartography's burn-out), a slice, or
        increasing epoch indices. Reported epoch numbers stay positions in ``source``. For long
        tables and files these are epoch numbers: ``k`` means epochs 0 to ``k - 1``, which must
        all be present (an error otherwise), and slices and lists select the numbers they hold.
    nan_policy:
        ``"raise"`` (default) fails on NaN/inf naming the epoch and example; ``"omit"`` skips
        those (epoch, example) observations, and ``n_epochs`` counts what was used.
    ddof:
        Delta degrees of freedom of ``variability`` (0, the population std every published tool
        uses; 1 for the sample std).
    columns:
        Column names of a long table, for the roles ``epoch``, ``id``, ``label`` and
        ``outputs``, e.g. ``{"id": "guid", "outputs": "scores"}``.
    require_complete:
        Long tables: an example missing some of the epochs present is an error (by default its
        metrics use the epochs it has, and ``n_epochs`` says how many).
    progress:
        Show a progress bar while reading large files (tqdm).
    threads:
        Worker threads (default: ``FASTCARTO_NUM_THREADS`` or all cores). The GIL is released.

    Returns
    -------
    DataMap
        Columns ``id, label, confidence, variability, correctness, forgetting, never_learned,
        first_learned, stable_from, aum, threshold_closeness, el2n, loss, entropy, final_pred,
        n_epochs`` (see ``docs/metrics.md`` for every formula).

    Raises
    ------
    TypeError, ValueError
        Arguments of the wrong type, shape or value (an unknown ``kind`` or ``compat``, no
        ``kind`` for an array, labels of another length).
    FileNotFoundError
        A path that does not exist.
    fastcarto.FileFormatError
        A file fastcarto cannot read (corrupt, truncated, or of another format).
    fastcarto.EmptyInputError
        A glob that matches no file, no epochs selected, or no examples.
    fastcarto.LabelError
        A label out of range, or one that changes between epochs (except ``compat="aum"``).
    fastcarto.NonFiniteError
        A NaN or infinite output with ``nan_policy="raise"``.
    fastcarto.InvalidProbabilitiesError
        ``kind="probs"`` rows outside [0, 1] or not summing to 1.
    fastcarto.EpochOrderError
        A long table with an (epoch, id) pair twice.
    fastcarto.FastcartoError
        ``require_complete`` and an example missing some epochs (and the other engine
        errors: every class above derives from it).

    Warns
    -----
    fastcarto.KindWarning
        ``kind="logits"`` outputs that look like probabilities.

    See Also
    --------
    Accumulator : the same map, built one batch at a time.
    Recorder : writes the long table from a training loop.

    Examples
    --------
    >>> import numpy as np, fastcarto
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(5, 100, 3)).astype(np.float32)   # 5 epochs, 100 examples
    >>> labels = rng.integers(0, 3, size=100)
    >>> dm = fastcarto.compute(logits, labels, kind="logits")
    >>> dm.to_pandas().columns[:5].tolist()
    ['id', 'label', 'confidence', 'variability', 'correctness']
    >>> fastcarto.compute(logits, labels, kind="logits", compat="cartography").columns[:4]
    ['guid', 'index', 'threshold_closeness', 'confidence']
    """
    check_choice("kind", kind, KINDS, optional=True)
    check_choice("compat", compat, COMPATS, optional=True)
    check_choice("nan_policy", nan_policy, NAN_POLICIES)
    check_threads(threads)
    check_ddof(ddof)

    path = as_path(source)
    if path is None:
        keyed = _tables.is_table(source)
    else:
        keyed = path.suffix.lower() != ".npy" or path.is_dir()
    if keyed:
        state, ids, kind = _tables.read_keyed(
            source,
            labels,
            kind=kind,
            columns=columns,
            nan_policy=nan_policy,
            epochs=epochs,
            require_complete=require_complete,
            progress=progress,
            threads=threads,
        )
        # The state is not kept: its memory is released as the table is written.
        table = state.take_table(compat=compat, ddof=int(ddof), ids=ids)
        return DataMap(table, kind=kind, compat=compat)
    if columns is not None:
        raise ValueError("columns= names the columns of a long table, not of an array")
    if kind is None:
        raise ValueError("pass kind='logits' or kind='probs': fastcarto never guesses it")
    table = dense_table(
        source,
        labels,
        kind=kind,
        epochs=epochs,
        nan_policy=nan_policy,
        threads=threads,
        compat=compat,
        ddof=ddof,
    )
    return DataMap(table, kind=kind, compat=compat)
