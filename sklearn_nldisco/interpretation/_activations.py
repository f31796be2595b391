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
:mod:`scipy.sparse` does on conversion. ``n_latents`` is at most
``2**31 - 1``.

Damaged and hostile files
-------------------------
:func:`load_activations` reads every member's ``.npy`` header (dtype and
shape) before any array data, and checks that each declared size agrees with
the size the zip directory records for the member, that this size is no more
than its compressed bytes can expand to (deflate expands at most about
1,032 times), and that the members agree with each other (one entry per run,
``sum(n_bins)`` labels, ``nnz`` of each triplet array). Only then are the
arrays read, so memory use is bounded by what the file can hold, and a small
file that declares huge arrays is refused before anything of the declared
size is allocated. A truncated or corrupted archive (a bad zip directory,
deflate stream or CRC) is reported as ``ValueError``, as is any value that
points outside its range: a ``run`` position with no run, a ``bin`` position
past its run's bins, a ``latent`` position past ``n_latents``.
"""

import math
import os
import struct
import zipfile
import zlib
from collections.abc import Hashable, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp

FORMAT_NAME = "sklearn_nldisco.activations"
FORMAT_VERSION = 1

# Kinds of NumPy dtype allowed for values and for bin labels.
_VALUE_KINDS = "biuf"
# Column indices of the loaded CSR matrix fit in int32.
_MAX_LATENTS = np.iinfo(np.int32).max
# Deflate expands data at most about 1,032 times; the slack covers headers.
_MAX_DEFLATE_RATIO = 1100
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# What zipfile, zlib and numpy.lib.format raise for a damaged archive.
_DAMAGE_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    OverflowError,
)
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
    if n_latents > _MAX_LATENTS:
        raise ValueError(
            f"codes must have at most {_MAX_LATENTS} latents (columns); got "
            f"{n_latents}."
        )
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
        is truncated or damaged (a bad zip directory, compressed stream or
        checksum), is inconsistent (members that disagree in length, a
        ``run``, ``bin`` or ``latent`` position outside its range, sizes
        larger than the file can hold, more than ``2**31 - 1`` latents),
        holds pickled data, or lacks ``run`` (the message lists the runs it
        holds). The message names the file.
    OSError
        If the file cannot be opened (``FileNotFoundError`` for a missing
        file).

    See Also
    --------
    save_activations : Write activations to a file.
    Activations.align : Metadata rows in the order of the codes.

    Notes
    -----
    Every size the file declares is checked against the others and against
    what the file's compressed bytes can hold before any array data is read,
    so a small hostile file is refused without a large allocation; the
    memory needed is then bounded by the arrays the file really holds.
    """
    members = _read_members(path)
    runs = members["runs"]
    n_bins = members["n_bins"]
    n_latents = int(members["n_latents"])

    position = _run_position(runs, run, path)
    selected = members["run"] == position
    rows = members["bin"][selected]
    latents = members["latent"][selected]
    values = members["value"][selected]
    n_rows = int(n_bins[position])
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

    latent_names = members["latent_names"] if members["has_latent_names"] else None
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


@contextmanager
def _damage_is_value_error(path, what):
    """Report an error of zipfile, zlib or numpy while reading as ValueError."""
    try:
        yield
    except _DAMAGE_ERRORS as exc:
        detail = " ".join(str(exc).split()) or "no detail"
        raise ValueError(
            f"{path!r} is damaged or truncated: cannot read {what} "
            f"({type(exc).__name__}: {detail})."
        ) from exc


def _read_members(path):
    """Every member of a version 1 file, checked before and after reading.

    Headers first: each member's dtype and shape, and the sizes they imply,
    are checked against the zip directory, the compressed size and each
    other before any array data is read.
    """
    if hasattr(path, "read"):
        opened = nullcontext(path)
    else:
        opened = open(os.fspath(path), "rb")
    with opened as file:
        with _damage_is_value_error(path, "the file"):
            start = file.tell()
            magic = file.read(len(_NPY_MAGIC))
            file_size = file.seek(0, os.SEEK_END) - start
            file.seek(start)
        if magic.startswith(_NPY_MAGIC):
            raise ValueError(
                f"{path!r} is not an activations file: it holds a single array, "
                "not an .npz archive."
            )
        if not magic.startswith(_ZIP_MAGICS):
            raise ValueError(
                f"{path!r} is not an activations file: it is not an .npz (zip) "
                "archive."
            )
        with _damage_is_value_error(path, "the zip directory"):
            archive = zipfile.ZipFile(file)
        with archive:
            return _read_archive(archive, path, file_size)


def _read_archive(archive, path, file_size):
    names = archive.namelist()
    if len(set(names)) != len(names):
        raise ValueError(f"{path!r} is corrupt: the archive repeats member names.")
    missing = [key for key in ("format", "format_version") if f"{key}.npy" not in names]
    if missing:
        raise ValueError(
            f"{path!r} is not an activations file: it lacks the members {missing}."
        )
    headers = {}
    for key in ("format", "format_version", *_MEMBERS):
        if key in headers:
            continue
        if f"{key}.npy" not in names:
            raise ValueError(f"{path!r} is corrupt: it lacks the member {key!r}.")
        info = archive.getinfo(f"{key}.npy")
        headers[key] = (info, _member_header(archive, info, key, path, file_size))
        if key == "format_version":
            # Identify the file before judging members a newer version may change.
            _check_format(archive, headers, path)

    def read(key):
        info, _ = headers[key]
        with _damage_is_value_error(path, f"member {key!r}"):
            with archive.open(info) as stream:
                return np.lib.format.read_array(stream, allow_pickle=False)

    def shape(key):
        return headers[key][1][1]

    # Sizes declared by the headers, checked before reading anything large.
    n_runs = shape("runs")[0]
    n_bins_total = shape("bin_index")[0]
    nnz = shape("value")[0]
    if n_runs == 0:
        raise ValueError(f"{path!r} is corrupt: it holds no runs.")
    for key in ("n_bins", "bin_index_name", "bin_index_has_name"):
        if shape(key) != (n_runs,):
            raise ValueError(
                f"{path!r} is corrupt: {key} has shape {shape(key)}; expected one "
                f"entry per run ({n_runs})."
            )
    for key in ("bin", "latent", "run"):
        if shape(key) != (nnz,):
            raise ValueError(
                f"{path!r} is corrupt: bin, latent, value and run differ in length "
                f"({key} has {shape(key)[0]}, value has {nnz})."
            )
    n_latents = int(read("n_latents"))
    if not 0 <= n_latents <= _MAX_LATENTS:
        raise ValueError(
            f"{path!r} is corrupt: n_latents is {n_latents}; expected 0 to "
            f"{_MAX_LATENTS}."
        )
    has_latent_names = bool(read("has_latent_names"))
    expected = (n_latents,) if has_latent_names else (0,)
    if shape("latent_names") != expected:
        raise ValueError(
            f"{path!r} is corrupt: latent_names has shape {shape('latent_names')}; "
            f"expected {expected} (has_latent_names={has_latent_names})."
        )
    if nnz > n_bins_total * n_latents:
        raise ValueError(
            f"{path!r} is corrupt: {nnz} stored values, more than the "
            f"{n_bins_total} bins times {n_latents} latents can hold."
        )

    members = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "n_latents": np.int64(n_latents),
        "has_latent_names": np.bool_(has_latent_names),
    }
    for key in ("runs", "n_bins", "bin_index_name", "bin_index_has_name"):
        members[key] = read(key)
    runs, n_bins = members["runs"], members["n_bins"]
    if np.unique(runs).size != n_runs:
        raise ValueError(f"{path!r} is corrupt: repeated run labels {runs.tolist()}.")
    if (n_bins < 0).any() or (n_bins > n_bins_total).any():
        raise ValueError(
            f"{path!r} is corrupt: n_bins must lie in [0, {n_bins_total}] (the "
            f"length of bin_index); got {_preview(n_bins.tolist())}."
        )
    # Every entry is at most n_bins_total, so this sum cannot overflow int64
    # unless the file has absurdly many runs, which Python integers handle.
    if n_runs * n_bins_total < 2**63:
        declared_total = int(n_bins.sum())
    else:
        declared_total = sum(int(count) for count in n_bins)
    if declared_total != n_bins_total:
        raise ValueError(
            f"{path!r} is corrupt: bin_index has {n_bins_total} labels but "
            f"sum(n_bins) is {declared_total}."
        )

    for key in ("bin_index", "latent_names", "run", "bin", "latent", "value"):
        members[key] = read(key)
    bin_index = members["bin_index"]
    if bin_index.dtype.kind == "f" and not np.isfinite(bin_index).all():
        raise ValueError(f"{path!r} is corrupt: bin labels must be finite.")
    run_positions = members["run"]
    if nnz and (run_positions.min() < 0 or run_positions.max() >= n_runs):
        raise ValueError(
            f"{path!r} is corrupt: run positions outside [0, {n_runs}) (the file "
            f"holds {n_runs} runs)."
        )
    rows = members["bin"]
    if nnz and (rows.min() < 0 or (rows >= n_bins[run_positions]).any()):
        raise ValueError(
            f"{path!r} is corrupt: bin positions outside [0, n_bins) of their run."
        )
    latents = members["latent"]
    if nnz and (latents.min() < 0 or latents.max() >= n_latents):
        raise ValueError(f"{path!r} is corrupt: latent positions outside [0, {n_latents}).")
    values = members["value"]
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"{path!r} is corrupt: values must be finite.")
    return members


def _member_header(archive, info, key, path, file_size):
    """Dtype and shape of one member, checked against the zip directory."""
    if info.compress_type == zipfile.ZIP_STORED:
        max_bytes = info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        max_bytes = info.compress_size * _MAX_DEFLATE_RATIO
    else:
        raise ValueError(
            f"{path!r} is not an activations file: member {key!r} uses zip "
            f"compression method {info.compress_type}, not stored or deflate."
        )
    if info.compress_size > file_size or info.file_size > max_bytes:
        raise ValueError(
            f"{path!r} is corrupt: member {key!r} claims {info.file_size} bytes "
            f"from {info.compress_size} compressed bytes in a file of {file_size}."
        )
    with _damage_is_value_error(path, f"the header of member {key!r}"):
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            header_bytes = stream.tell()
    if dtype.hasobject:
        raise ValueError(
            f"{path!r} is not a safe activations file: member {key!r} "
            f"cannot be read without unpickling (dtype {dtype})."
        )
    kinds, ndim = _MEMBERS[key]
    if dtype.kind not in kinds or len(shape) != ndim:
        raise ValueError(
            f"{path!r} is corrupt: member {key!r} has dtype {dtype} and "
            f"{len(shape)} dimensions; expected kind {kinds!r} and {ndim}."
        )
    data_bytes = math.prod(shape) * dtype.itemsize
    if header_bytes + data_bytes != info.file_size:
        raise ValueError(
            f"{path!r} is corrupt: member {key!r} declares shape {shape} of "
            f"{dtype} ({data_bytes} bytes) but holds "
            f"{info.file_size - header_bytes} bytes of data."
        )
    return dtype, shape


def _check_format(archive, headers, path):
    """Refuse a file of another format, or of another format version."""
    values = {}
    for key in ("format", "format_version"):
        info, _ = headers[key]
        with _damage_is_value_error(path, f"member {key!r}"):
            with archive.open(info) as stream:
                values[key] = np.lib.format.read_array(stream, allow_pickle=False).item()
    if values["format"] != FORMAT_NAME:
        raise ValueError(
            f"{path!r} is not an activations file: format is {values['format']!r}, "
            f"expected {FORMAT_NAME!r}."
        )
    if values["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} has activations format version {values['format_version']}; "
            f"this version of sklearn_nldisco reads version {FORMAT_VERSION}."
        )


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
