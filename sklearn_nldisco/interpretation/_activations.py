"""Sparse latent activations on disk, keyed by bin label rather than row order.

:func:`save_activations` writes the codes of one or several runs as
long-form triplets (bin, latent, value, run) together with each run's bin
index, so that :func:`load_activations` gives back the same sparse matrix and
the labels of its rows. Metadata is then joined by bin label
(:meth:`Activations.align`, :meth:`Activations.join`), never by position, so
a reordered or filtered metadata table cannot silently pair a row of codes
with the wrong bin.

File format
-----------
A file is a NumPy ``.npz`` archive written by :func:`numpy.savez_compressed`
at exactly the path given (no ``.npz`` suffix is added). Every member is a
plain numeric, boolean or fixed-width unicode (``<U``) array; there are no
object arrays, so the file is read with ``np.load(path, allow_pickle=False)``
and loading never runs code. Format version 1 holds these members, where
``n_runs`` is the number of runs, ``n_bins_total`` the sum of the runs' bin
counts and ``nnz`` the number of stored values:

========================  ===================  ================================
member                    dtype, shape         meaning
========================  ===================  ================================
``format``                ``<U``, ()           ``"sklearn_nldisco.activations"``
``format_version``        int64, ()            ``1``
``runs``                  int64 or ``<U``,     run labels, in the order given
                          (n_runs,)
``n_bins``                int64, (n_runs,)     rows of each run's codes
``n_latents``             int64, ()            columns, shared by all runs
``bin_index``             int, uint, float or  bin labels of every run, run
                          ``<U``,              after run (run ``r`` takes the
                          (n_bins_total,)      next ``n_bins[r]`` labels)
``bin_index_name``        ``<U``, (n_runs,)    name of each run's bin index
``bin_index_has_name``    bool, (n_runs,)      whether that name is set
``latent_names``          ``<U``, (n_latents,) latent names, or shape (0,)
``has_latent_names``      bool, ()             whether latent names are set
``bin``                   int64, (nnz,)        row of the value: position in
                                               its run's bin index
``latent``                int64, (nnz,)        column of the value
``value``                 bool, int, uint or   the value, in the codes' dtype
                          float, (nnz,)
``run``                   int64, (nnz,)        run of the value: position in
                                               ``runs``
========================  ===================  ================================

Within a run the triplets are in row-major order without repeated
(bin, latent) pairs. Zeros are not stored: explicit zeros of a sparse input
(and ``-0.0``) are dropped, as a dense input's zeros are, so the loaded matrix
is the canonical CSR form of the saved one (sorted indices, no duplicates, no
explicit zeros). Repeated entries of a COO input are summed first, as
:mod:`scipy.sparse` does on conversion.
"""

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp

FORMAT_NAME = "sklearn_nldisco.activations"
FORMAT_VERSION = 1

# Kinds of NumPy dtype allowed for values and for bin labels.
_VALUE_KINDS = "biuf"
_LABEL_KINDS = "iufU"

# Expected kind and number of dimensions of every member of a version 1 file.
_MEMBERS = {
    "format": ("U", 0),
    "format_version": ("i", 0),
    "runs": ("iU", 1),
    "n_bins": ("i", 1),
    "n_latents": ("i", 0),
    "bin_index": (_LABEL_KINDS, 1),
    "bin_index_name": ("U", 1),
    "bin_index_has_name": ("b", 1),
    "latent_names": ("U", 1),
    "has_latent_names": ("b", 0),
    "bin": ("i", 1),
    "latent": ("i", 1),
    "value": (_VALUE_KINDS, 1),
    "run": ("i", 1),
}


@dataclass(frozen=True, eq=False)
class Activations:
    """Sparse latent activations of one run, with the label of every row.

    Returned by :func:`load_activations`.

    Parameters
    ----------
    codes : scipy.sparse.csr_matrix of shape (n_bins, n_latents)
        The activations, in canonical CSR form and in their saved dtype.
    bin_index : pandas.Index of length n_bins
        Label of each row of ``codes``: integer, float or string, unique.
    latent_names : ndarray of str of shape (n_latents,) or None
        Name of each column of ``codes``, if they were saved.
    run : int or str
        Label of the run.

    See Also
    --------
    load_activations : Read activations from a file.
    save_activations : Write activations to a file.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> import scipy.sparse as sp
    >>> from sklearn_nldisco.interpretation._activations import Activations
    >>> acts = Activations(
    ...     codes=sp.csr_matrix(np.array([[0.0, 2.0], [1.0, 0.0]])),
    ...     bin_index=pd.Index([10, 20], name="bin"),
    ...     latent_names=None,
    ...     run=0,
    ... )
    >>> acts.to_frame()
       run  bin  latent  value
    0    0   10       1    2.0
    1    0   20       0    1.0
    """

    codes: sp.csr_matrix
    bin_index: pd.Index
    latent_names: np.ndarray | None
    run: Hashable

    def to_frame(self):
        """Stored values as a long-form table, one row per value.

        Returns
        -------
        frame : pandas.DataFrame
            Columns ``run``, ``bin`` (the bin label), ``latent`` (the column
            position), ``value`` and, when latent names were saved,
            ``latent_name``; rows in row-major order of ``codes``.
        """
        rows = np.repeat(np.arange(self.codes.shape[0]), np.diff(self.codes.indptr))
        latents = self.codes.indices.astype(np.int64)
        columns = {
            "run": np.full(rows.size, self.run),
            "bin": self.bin_index[rows].to_numpy(),
            "latent": latents,
            "value": self.codes.data,
        }
        frame = pd.DataFrame(columns)
        frame["bin"] = frame["bin"].astype(self.bin_index.dtype)
        if self.latent_names is not None:
            frame["latent_name"] = self.latent_names[latents]
        return frame

    def align(self, metadata):
        """Rows of ``metadata`` for the bins of ``codes``, in the same order.

        Rows are matched by bin label, never by position, so the result lines
        up with ``codes`` however ``metadata`` is ordered or filtered.

        Parameters
        ----------
        metadata : pandas.DataFrame
            One row per bin, indexed by unique bin labels; may hold more bins
            than ``codes``.

        Returns
        -------
        aligned : pandas.DataFrame of n_bins rows
            ``metadata.loc[bin_index]``: row ``i`` describes row ``i`` of
            ``codes``.

        Raises
        ------
        ValueError
            If the index of ``metadata`` has duplicates or lacks bins of
            ``bin_index``.
        """
        if not isinstance(metadata, pd.DataFrame):
            raise TypeError(
                f"metadata must be a pandas DataFrame indexed by bin; got "
                f"{type(metadata).__name__}."
            )
        if not metadata.index.is_unique:
            duplicated = metadata.index[metadata.index.duplicated()].unique()
            raise ValueError(
                f"metadata index must have unique bin labels; "
                f"{_preview(duplicated)} appear more than once."
            )
        positions = metadata.index.get_indexer(self.bin_index)
        missing = self.bin_index[positions < 0]
        if missing.size:
            raise ValueError(
                f"metadata lacks {missing.size} of the {self.bin_index.size} "
                f"bins of run {self.run!r}: {_preview(missing)}."
            )
        return metadata.iloc[positions]

    def join(self, metadata):
        """Long-form table of :meth:`to_frame` with each value's bin metadata.

        Parameters
        ----------
        metadata : pandas.DataFrame
            One row per bin, indexed by unique bin labels (see :meth:`align`).

        Returns
        -------
        frame : pandas.DataFrame
            The columns of :meth:`to_frame` followed by those of
            ``metadata``, taken from the row whose label is the value's bin.

        Raises
        ------
        ValueError
            If ``metadata`` lacks bins, has duplicate labels, or has a column
            named like one of :meth:`to_frame`.
        """
        frame = self.to_frame()
        clashes = sorted(set(map(str, metadata.columns)) & set(frame.columns))
        if clashes:
            raise ValueError(
                f"metadata columns {clashes} clash with the activation columns "
                f"{list(frame.columns)}; rename them before joining."
            )
        aligned = self.align(metadata)
        rows = np.repeat(np.arange(self.codes.shape[0]), np.diff(self.codes.indptr))
        extra = aligned.iloc[rows].reset_index(drop=True)
        return pd.concat([frame, extra], axis=1)


def save_activations(
    path, codes, *, bin_index=None, run=None, latent_names=None, metadata=None
):
    """Write sparse latent activations, with their bin labels, to a file.

    The file format is described in the module docstring: a pickle-free
    ``.npz`` archive of (bin, latent, value, run) triplets plus each run's bin
    index. Zeros are not stored.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        Where to write; the name is used as given.
    codes : sparse matrix or ndarray of shape (n_bins, n_latents), or dict
        Activations of one run, or a dict mapping each run label (int or
        str, all of one type) to that run's activations. All runs share
        ``n_latents`` and the dtype (bool, integer or float).
    bin_index : array-like or pandas.Index of length n_bins, or dict, \
default=None
        Unique label of each row: integers, floats or strings. Defaults to
        the index of ``metadata`` if given, else ``arange(n_bins)``. With a
        dict of runs, a dict mapping each run to its bin index (runs left
        out get the default).
    run : int or str, default=None
        Label of the run when ``codes`` is a single matrix; ``0`` if None.
        Must be None when ``codes`` is a dict.
    latent_names : array-like of str of shape (n_latents,), default=None
        Name of each latent.
    metadata : pandas.DataFrame or dict, default=None
        Bin metadata (or a dict of it per run), used only for its index: it
        supplies ``bin_index`` or, when both are given, must equal it. Its
        columns are not written.

    Raises
    ------
    ValueError
        If a bin index has the wrong length or duplicate labels, values are
        not finite, runs disagree in ``n_latents`` or dtype, or arguments
        contradict each other.
    TypeError
        If values or labels have an unsupported type.

    See Also
    --------
    load_activations : Read the file back.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import pandas as pd
    >>> import scipy.sparse as sp
    >>> from sklearn_nldisco.interpretation._activations import (
    ...     load_activations, save_activations)
    >>> codes = sp.csr_matrix(np.array([[0.0, 1.5, 0.0],
    ...                                 [2.0, 0.0, 0.0],
    ...                                 [0.0, 0.0, 0.0]], dtype=np.float32))
    >>> metadata = pd.DataFrame({"speed": [0.1, 0.4, 0.2]},
    ...                         index=pd.Index([7, 9, 12], name="bin"))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "session1.acts")
    ...     save_activations(path, codes, metadata=metadata, run="session1")
    ...     acts = load_activations(path)
    >>> (acts.codes != codes).nnz, acts.codes.dtype
    (0, dtype('float32'))
    >>> acts.bin_index
    Index([7, 9, 12], dtype='int64', name='bin')
    >>> acts.join(metadata.iloc[::-1])
            run  bin  latent  value  speed
    0  session1    7       1    1.5    0.1
    1  session1    9       0    2.0    0.4
    """
    runs, per_run_codes, per_run_bins, per_run_metadata = _per_run_arguments(
        codes, bin_index, run, metadata
    )
    run_labels = _run_labels(runs)

    matrices = [_canonical_csr(c, f"codes of run {r!r}") for r, c in zip(runs, per_run_codes)]
    n_latents = matrices[0].shape[1]
    value_dtype = matrices[0].dtype
    for r, matrix in zip(runs, matrices):
        if matrix.shape[1] != n_latents:
            raise ValueError(
                f"every run must have the same number of latents; run {r!r} has "
                f"{matrix.shape[1]}, run {runs[0]!r} has {n_latents}."
            )
        if matrix.dtype != value_dtype:
            raise ValueError(
                f"every run must have the same dtype; run {r!r} has "
                f"{matrix.dtype}, run {runs[0]!r} has {value_dtype}."
            )

    labels, names = [], []
    for r, matrix, bins, meta in zip(runs, matrices, per_run_bins, per_run_metadata):
        values, name = _bin_labels(bins, meta, matrix.shape[0], r)
        labels.append(values)
        names.append(name)
    if len({values.dtype.kind == "U" for values in labels}) > 1:
        raise ValueError(
            "bin labels must be all strings or all numbers across runs; got "
            f"{[str(values.dtype) for values in labels]}."
        )

    if latent_names is None:
        latent_names_array = np.empty(0, dtype="<U1")
    else:
        latent_names_array = _string_array(latent_names, "latent_names")
        if latent_names_array.shape != (n_latents,):
            raise ValueError(
                f"latent_names must have one name per latent ({n_latents}); got "
                f"shape {latent_names_array.shape}."
            )

    triplets = [matrix.tocoo() for matrix in matrices]
    members = {
        "format": np.array(FORMAT_NAME),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "runs": run_labels,
        "n_bins": np.array([m.shape[0] for m in matrices], dtype=np.int64),
        "n_latents": np.array(n_latents, dtype=np.int64),
        "bin_index": np.concatenate(labels),
        "bin_index_name": np.array(["" if n is None else n for n in names], dtype=str).reshape(-1),
        "bin_index_has_name": np.array([n is not None for n in names], dtype=bool),
        "latent_names": latent_names_array,
        "has_latent_names": np.array(latent_names is not None),
        "bin": np.concatenate([t.row.astype(np.int64) for t in triplets]),
        "latent": np.concatenate([t.col.astype(np.int64) for t in triplets]),
        "value": np.concatenate([t.data for t in triplets]).astype(value_dtype, copy=False),
        "run": np.repeat(np.arange(len(runs), dtype=np.int64), [t.nnz for t in triplets]),
    }
    if hasattr(path, "write"):
        np.savez_compressed(path, **members)
    else:
        # Opened here so that numpy does not append ".npz" to the name.
        with open(path, "wb") as file:
            np.savez_compressed(file, **members)


def load_activations(path, *, run=None):
    """Read sparse latent activations written by :func:`save_activations`.

    The file is opened with ``allow_pickle=False`` and every member is checked
    before use, so a file holding pickled objects is rejected and no code from
    the file is run.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        The file to read.
    run : int or str, default=None
        Which run to load. May be None only when the file holds one run.

    Returns
    -------
    activations : Activations
        ``codes`` as CSR with the saved shape, dtype and values, the run's
        ``bin_index`` (integer, float or string ``pandas.Index``, with its
        name), ``latent_names`` and ``run``.

    Raises
    ------
    ValueError
        If the file is not an activations file, has another format version,
        is inconsistent, holds pickled data, or lacks ``run`` (the message
        lists the runs it holds).

    See Also
    --------
    save_activations : Write activations to a file.
    Activations.align : Metadata rows in the order of the codes.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path!r} is not an activations file: {exc}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path!r} is not an activations file: it holds a single array, "
            "not an .npz archive."
        )
    with archive:
        members = _read_members(archive, path)

    runs = members["runs"]
    n_runs = runs.size
    n_bins = members["n_bins"]
    n_latents = int(members["n_latents"])
    if n_runs == 0 or n_bins.shape != (n_runs,) or (n_bins < 0).any() or n_latents < 0:
        raise ValueError(f"{path!r} is corrupt: inconsistent runs, n_bins or n_latents.")
    for key in ("bin_index_name", "bin_index_has_name"):
        if members[key].shape != (n_runs,):
            raise ValueError(f"{path!r} is corrupt: {key} must have one entry per run.")
    if members["bin_index"].size != n_bins.sum():
        raise ValueError(f"{path!r} is corrupt: bin_index length differs from sum(n_bins).")
    nnz = members["value"].size
    if any(members[key].shape != (nnz,) for key in ("bin", "latent", "run")):
        raise ValueError(f"{path!r} is corrupt: bin, latent, value and run differ in length.")

    position = _run_position(runs, run, path)
    selected = members["run"] == position
    rows = members["bin"][selected]
    latents = members["latent"][selected]
    values = members["value"][selected]
    n_rows = int(n_bins[position])
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(f"{path!r} is corrupt: bin positions outside [0, {n_rows}).")
    if latents.size and (latents.min() < 0 or latents.max() >= n_latents):
        raise ValueError(f"{path!r} is corrupt: latent positions outside [0, {n_latents}).")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"{path!r} is corrupt: values must be finite.")
    order = np.lexsort((latents, rows))
    rows, latents, values = rows[order], latents[order], values[order]
    if rows.size > 1 and ((np.diff(rows) == 0) & (np.diff(latents) == 0)).any():
        raise ValueError(f"{path!r} is corrupt: repeated (bin, latent) pairs.")
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    codes = sp.csr_matrix((values, latents, indptr), shape=(n_rows, n_latents))

    start = int(n_bins[:position].sum())
    name = None
    if members["bin_index_has_name"][position]:
        name = members["bin_index_name"][position].item()
    bin_index = pd.Index(members["bin_index"][start : start + n_rows], name=name)
    if not bin_index.is_unique:
        raise ValueError(
            f"{path!r} is corrupt: duplicate bin labels in run {runs[position].item()!r}."
        )

    latent_names = None
    if members["has_latent_names"]:
        latent_names = members["latent_names"]
        if latent_names.shape != (n_latents,):
            raise ValueError(f"{path!r} is corrupt: latent_names must have n_latents entries.")
    return Activations(
        codes=codes, bin_index=bin_index, latent_names=latent_names, run=runs[position].item()
    )


def _per_run_arguments(codes, bin_index, run, metadata):
    """Split the arguments of :func:`save_activations` into per-run lists."""
    if isinstance(codes, Mapping):
        if run is not None:
            raise ValueError(
                f"run must be None when codes is a dict of runs; got run={run!r}."
            )
        if not codes:
            raise ValueError("codes must hold at least one run; got an empty dict.")
        runs = list(codes)
        for name, value in (("bin_index", bin_index), ("metadata", metadata)):
            if value is not None and not isinstance(value, Mapping):
                raise TypeError(
                    f"{name} must be a dict of runs when codes is; got "
                    f"{type(value).__name__}."
                )
            unknown = set(value or {}) - set(runs)
            if unknown:
                raise ValueError(
                    f"{name} names unknown runs {sorted(map(repr, unknown))}; "
                    f"the runs are {runs}."
                )
        return (
            runs,
            [codes[r] for r in runs],
            [(bin_index or {}).get(r) for r in runs],
            [(metadata or {}).get(r) for r in runs],
        )
    return [0 if run is None else run], [codes], [bin_index], [metadata]


def _run_labels(runs):
    """Run labels as one int64 or unicode array."""
    if all(isinstance(r, Integral) and not isinstance(r, (bool, np.bool_)) for r in runs):
        return np.array([int(r) for r in runs], dtype=np.int64)
    if all(isinstance(r, str) for r in runs):
        return np.array(runs, dtype=str)
    raise TypeError(
        f"run labels must be all integers or all strings; got {runs!r}."
    )


def _canonical_csr(codes, what):
    """``codes`` as canonical CSR: summed duplicates, sorted, no zeros."""
    if sp.issparse(codes):
        dtype = codes.dtype
    else:
        codes = np.asarray(codes)
        dtype = codes.dtype
    if dtype.kind not in _VALUE_KINDS:
        raise TypeError(
            f"{what} must hold bool, integer or float values; got dtype {dtype}."
        )
    if codes.ndim != 2:
        raise ValueError(
            f"{what} must be 2-D (n_bins, n_latents); got shape {codes.shape}."
        )
    matrix = sp.csr_matrix(codes, dtype=dtype, copy=True)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if dtype.kind == "f" and not np.isfinite(matrix.data).all():
        raise ValueError(
            f"{what} must be finite; found {np.count_nonzero(~np.isfinite(matrix.data))} "
            "NaN or infinite values."
        )
    return matrix


def _bin_labels(bin_index, metadata, n_bins, run):
    """Bin labels of one run as a numeric or unicode array, and the index name."""
    if metadata is not None:
        if not isinstance(metadata, pd.DataFrame):
            raise TypeError(
                f"metadata of run {run!r} must be a pandas DataFrame; got "
                f"{type(metadata).__name__}."
            )
        if bin_index is None:
            bin_index = metadata.index
        elif not pd.Index(bin_index).equals(metadata.index):
            raise ValueError(
                f"bin_index of run {run!r} differs from the index of its metadata; "
                "pass one of them, or make them equal."
            )
    if bin_index is None:
        return np.arange(n_bins, dtype=np.int64), None
    index = bin_index if isinstance(bin_index, pd.Index) else pd.Index(bin_index)
    if isinstance(index, pd.MultiIndex):
        raise TypeError(f"bin_index of run {run!r} must be flat; got a MultiIndex.")
    if len(index) != n_bins:
        raise ValueError(
            f"bin_index of run {run!r} must have one label per bin ({n_bins}); "
            f"got {len(index)}."
        )
    values = index.to_numpy()
    if values.dtype.kind not in "iuf":
        values = _string_array(values, f"bin_index of run {run!r}")
    elif values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"bin_index of run {run!r} must be finite; found NaN or inf.")
    if not index.is_unique:
        raise ValueError(
            f"bin_index of run {run!r} must have unique labels; "
            f"{_preview(index[index.duplicated()].unique())} appear more than once."
        )
    name = index.name
    if name is not None and not isinstance(name, str):
        raise TypeError(f"bin_index name of run {run!r} must be a string; got {name!r}.")
    return values, name


def _string_array(values, what):
    """``values`` as a fixed-width unicode array, refusing non-strings."""
    values = np.asarray(values)
    if values.dtype.kind == "U":
        return values
    items = values.tolist()
    if values.dtype.kind != "O" or not all(isinstance(item, str) for item in items):
        raise TypeError(
            f"{what} must be numbers or strings; got dtype {values.dtype}."
        )
    return np.array(items, dtype=str) if items else np.empty(0, dtype="<U1")


def _read_members(archive, path):
    """Every member of a version 1 file, checked for kind and dimensions."""
    missing = [key for key in ("format", "format_version") if key not in archive.files]
    if missing:
        raise ValueError(
            f"{path!r} is not an activations file: it lacks the members {missing}."
        )
    members = {}
    for key, (kinds, ndim) in _MEMBERS.items():
        if key not in archive.files:
            raise ValueError(f"{path!r} is corrupt: it lacks the member {key!r}.")
        try:
            value = archive[key]
        except ValueError as exc:
            # numpy refuses object arrays when allow_pickle=False.
            raise ValueError(
                f"{path!r} is not a safe activations file: member {key!r} "
                f"cannot be read without unpickling ({exc})."
            ) from exc
        if value.dtype.kind not in kinds or value.ndim != ndim:
            raise ValueError(
                f"{path!r} is corrupt: member {key!r} has dtype {value.dtype} and "
                f"{value.ndim} dimensions; expected kind {kinds!r} and {ndim}."
            )
        members[key] = value
        if key == "format" and value.item() != FORMAT_NAME:
            raise ValueError(
                f"{path!r} is not an activations file: format is {value.item()!r}, "
                f"expected {FORMAT_NAME!r}."
            )
        if key == "format_version" and value.item() != FORMAT_VERSION:
            raise ValueError(
                f"{path!r} has activations format version {value.item()}; this "
                f"version of sklearn_nldisco reads version {FORMAT_VERSION}."
            )
    return members


def _run_position(runs, run, path):
    """Position of ``run`` in the file's run labels."""
    labels = runs.tolist()
    if run is None:
        if len(labels) > 1:
            raise ValueError(
                f"{path!r} holds {len(labels)} runs {labels}; pass run= to pick one."
            )
        return 0
    same_type = isinstance(run, str) if runs.dtype.kind == "U" else (
        isinstance(run, Integral) and not isinstance(run, (bool, np.bool_))
    )
    if same_type and run in labels:
        return labels.index(run)
    raise ValueError(f"run {run!r} is not in {path!r}; it holds runs {labels}.")


def _preview(labels, limit=5):
    """The first few labels, for an error message."""
    shown = list(labels[:limit])
    return f"{shown}{' ...' if len(labels) > limit else ''}"
