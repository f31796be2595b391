"""Read a Kilosort/Phy output folder into a :class:`Recording`.

Spike sorters of the Kilosort family write their result as NumPy arrays and
tab-separated tables that the Phy curation GUI reads and updates in place:
``spike_times.npy`` (sample index of each spike), ``spike_clusters.npy``
(cluster of each spike, after curation) or ``spike_templates.npy`` (template
of each spike, before it), ``cluster_group.tsv`` (curation labels),
``cluster_KSLabel.tsv`` (the sorter's own labels), ``cluster_info.tsv``
(per-cluster metrics) and ``params.py`` (the sampling rate among them).
"""

import ast
import warnings
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

from ._recording import Recording

# Label files in order of precedence (the curator's word over the sorter's),
# each with the column that holds the label.
_LABEL_FILES = (("cluster_group.tsv", "group"), ("cluster_KSLabel.tsv", "KSLabel"))
# Phy's name for a cluster nobody has labelled.
_UNLABELLED = "unsorted"


def load_phy(folder, *, sample_rate=None, labels=("good",)):
    r"""Read the spikes and unit labels of a Kilosort/Phy output folder.

    Parameters
    ----------
    folder : str or path-like
        The folder Kilosort wrote and Phy curates (the one holding
        ``spike_times.npy`` and ``params.py``).
    sample_rate : float, default=None
        Sampling rate (Hz) of ``spike_times.npy``. None reads
        ``sample_rate`` from the folder's ``params.py``, which is parsed, not
        executed.
    labels : str, sequence of str or None, default=("good",)
        Keep the clusters with these labels (``"good"``, ``"mua"``,
        ``"noise"``, ``"unsorted"``, or any label the curator used); None
        keeps every cluster.

    Returns
    -------
    recording : Recording
        ``spike_times``: one sorted float64 array of spike times (s) per
        cluster, ``spike_times.npy / sample_rate``.
        ``units``: indexed by cluster id (index name ``"unit_id"``), in
        increasing order, with a ``label`` column and, when the folder has
        them, the columns of ``cluster_info.tsv`` (but its ``group``, which
        is the label again) and the sorter's ``KSLabel``. Only clusters that
        have spikes are units.
        ``trials``: None. ``behaviour``: empty.
        ``session_id``: the folder's name. ``description``: where the units
        came from.

    Raises
    ------
    FileNotFoundError
        If ``folder``, ``spike_times.npy``, or both ``spike_clusters.npy``
        and ``spike_templates.npy`` are missing.
    ValueError
        If the arrays are not 1-D, differ in length, hold negative or
        non-finite spike times, if a table lacks its columns, if the sample
        rate is unknown, or if no cluster has one of ``labels``.

    Warns
    -----
    UserWarning
        When ``spike_clusters.npy`` is missing and the templates, before any
        curation, are read as units.

    See Also
    --------
    load_nwb : Read a recording from an NWB file.
    sklearn_nldisco.preprocessing.SpikeBinner : Bin the spike times.

    Notes
    -----
    A cluster's label is its row in ``cluster_group.tsv`` (columns
    ``cluster_id`` and ``group``, written by Phy), or, without that file,
    in ``cluster_KSLabel.tsv`` (``cluster_id`` and ``KSLabel``, written by
    Kilosort). A cluster with no label, and every cluster of a folder with
    neither file, is ``"unsorted"``, as Phy shows it.

    Sample indices are converted by one division each, so the spike of
    sample ``k`` is at ``k / sample_rate`` exactly as a float, which
    :class:`~sklearn_nldisco.preprocessing.SpikeBinner` places in the bin
    that its integer sample index says.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from sklearn_nldisco.datasets import load_phy
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = pathlib.Path(tmp.name)
    >>> np.save(folder / "spike_times.npy", np.array([30, 300, 600, 900], dtype=np.uint64))
    >>> np.save(folder / "spike_clusters.npy", np.array([2, 5, 2, 7], dtype=np.uint32))
    >>> _ = (folder / "cluster_group.tsv").write_text("cluster_id\tgroup\n2\tgood\n5\tmua\n")
    >>> _ = (folder / "params.py").write_text("sample_rate = 30000.0\n")
    >>> recording = load_phy(folder, labels=None)
    >>> recording.units["label"].to_dict()
    {2: 'good', 5: 'mua', 7: 'unsorted'}
    >>> recording.spike_times[0].tolist()
    [0.001, 0.02]
    >>> load_phy(folder).unit_ids.tolist()
    [2]
    >>> tmp.cleanup()
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; expected a Kilosort/Phy output folder.")
    selected = _check_labels(labels)
    rate = _sample_rate(folder, sample_rate)

    samples = _read_array(folder / "spike_times.npy")
    cluster_path = folder / "spike_clusters.npy"
    source = "clusters"
    if not cluster_path.is_file():
        cluster_path = folder / "spike_templates.npy"
        if not cluster_path.is_file():
            raise FileNotFoundError(
                f"{folder} has neither spike_clusters.npy nor spike_templates.npy; "
                "expected one of them to say which unit each spike belongs to."
            )
        source = "templates (no spike_clusters.npy: no curation)"
        warnings.warn(
            f"{folder} has no spike_clusters.npy; reading spike_templates.npy, so "
            "units are the sorter's templates before any curation.",
            UserWarning,
            stacklevel=2,
        )
    clusters = _read_array(cluster_path)
    _check_spikes(samples, clusters, folder, cluster_path.name)

    cluster_ids, counts = np.unique(clusters, return_counts=True)
    units = pd.DataFrame(index=pd.Index(cluster_ids.astype(np.int64), name="unit_id"))
    units["label"] = _labels(folder, units.index)
    info = _cluster_info(folder, units.index)
    if info is not None:
        units = units.join(info)
    if "KSLabel" not in units.columns and (folder / "cluster_KSLabel.tsv").is_file():
        units["KSLabel"] = _read_table(folder / "cluster_KSLabel.tsv", "KSLabel")["KSLabel"]

    keep = np.ones(len(units), dtype=bool)
    if selected is not None:
        keep = units["label"].isin(selected).to_numpy()
        if not keep.any():
            present = units["label"].value_counts().to_dict()
            raise ValueError(
                f"labels={list(selected)} matches no cluster of {folder}; its clusters "
                f"are labelled {present}. Expected labels among those, or labels=None "
                "for every cluster."
            )

    # sort by cluster, then by sample index (exact integers), then convert
    order = np.lexsort((samples, clusters))
    times = samples[order].astype(np.float64) / rate
    trains = np.split(times, np.cumsum(counts)[:-1])
    return Recording(
        spike_times=[train for train, kept in zip(trains, keep) if kept],
        units=units[keep],
        session_id=folder.name,
        description=f"spike sorting output in {folder}; units are its {source}",
    )


def _check_labels(labels):
    if labels is None:
        return None
    if isinstance(labels, str):
        return (labels,)
    try:
        selected = tuple(labels)
    except TypeError:
        selected = None
    if not selected or not all(isinstance(label, str) for label in selected):
        raise ValueError(
            f"labels={labels!r} is not a label or a non-empty sequence of labels; "
            "expected e.g. ('good',), ('good', 'mua') or None for every cluster."
        )
    return selected


def _sample_rate(folder, sample_rate):
    """The sampling rate given, else ``sample_rate`` of ``params.py``."""
    argument = "sample_rate"
    if sample_rate is None:
        params = folder / "params.py"
        if not params.is_file():
            raise ValueError(
                f"the sample rate of {folder} is unknown: it has no params.py; pass "
                "sample_rate (Hz)."
            )
        sample_rate = _read_params(params).get("sample_rate")
        if sample_rate is None:
            raise ValueError(
                f"{params} sets no sample_rate as a plain number; pass sample_rate (Hz)."
            )
        argument = f"sample_rate in {params}"
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, Real)
        or not np.isfinite(sample_rate)
        or sample_rate <= 0
    ):
        raise ValueError(f"{argument}={sample_rate!r}; expected a positive number of Hz.")
    return float(sample_rate)


def _read_params(path):
    """Variables that ``params.py`` assigns literal values to, read without running it."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} cannot be parsed ({error}); expected Phy's params.py.") from None
    params = {}
    for statement in tree.body:
        if not (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            continue
        try:
            params[statement.targets[0].id] = ast.literal_eval(statement.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue  # an expression, not a value: not needed here
    return params


def _read_array(path):
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected it in a Kilosort/Phy folder.")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path} cannot be read as a NumPy array ({error}).") from None
    # Kilosort 2 and 3 save column vectors
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"{path.name} has shape {array.shape}; expected one value per spike, "
            "shape (n_spikes,) or (n_spikes, 1)."
        )
    return array


def _check_spikes(samples, clusters, folder, cluster_name):
    if len(samples) != len(clusters):
        raise ValueError(
            f"{folder} has {len(samples)} spikes in spike_times.npy but "
            f"{len(clusters)} in {cluster_name}; expected one entry per spike in each."
        )
    if len(samples) == 0:
        raise ValueError(f"spike_times.npy of {folder} holds no spikes.")
    if samples.dtype.kind not in "iuf":
        raise ValueError(
            f"spike_times.npy of {folder} has dtype {samples.dtype}; expected sample "
            "indices (integers)."
        )
    if clusters.dtype.kind not in "iu":
        raise ValueError(
            f"{cluster_name} of {folder} has dtype {clusters.dtype}; expected integer "
            "cluster ids."
        )
    if samples.dtype.kind == "f" and not np.isfinite(samples).all():
        raise ValueError(f"spike_times.npy of {folder} holds non-finite values.")
    if samples.dtype.kind != "u" and (samples < 0).any():
        first = int(np.flatnonzero(samples < 0)[0])
        raise ValueError(
            f"spike_times.npy of {folder} holds a negative sample index "
            f"({samples[first]} at spike {first}); expected indices >= 0."
        )


def _read_table(path, column):
    """A cluster table indexed by ``cluster_id`` (``id`` in older Phy), with ``column``."""
    try:
        table = pd.read_csv(path, sep="\t")
    except (ValueError, pd.errors.ParserError) as error:
        raise ValueError(f"{path} cannot be read as a tab-separated table ({error}).") from None
    id_column = next((name for name in ("cluster_id", "id") if name in table.columns), None)
    if id_column is None or (column is not None and column not in table.columns):
        expected = "cluster_id" if column is None else f"cluster_id and {column}"
        raise ValueError(
            f"{path.name} has columns {list(table.columns)}; expected {expected}."
        )
    if table[id_column].duplicated().any():
        duplicated = sorted(set(table.loc[table[id_column].duplicated(), id_column].tolist()))
        raise ValueError(
            f"{path.name} lists cluster(s) {duplicated} more than once; expected one "
            "row per cluster."
        )
    try:
        ids = table[id_column].to_numpy(dtype=np.int64)
    except (TypeError, ValueError):
        raise ValueError(f"{path.name} has cluster ids that are not integers.") from None
    return table.drop(columns=id_column).set_index(pd.Index(ids, name="unit_id"))


def _labels(folder, cluster_ids):
    """Each cluster's label, from the first label file the folder has."""
    for name, column in _LABEL_FILES:
        path = folder / name
        if path.is_file():
            labels = _read_table(path, column)[column].reindex(cluster_ids)
            return labels.where(labels.notna(), _UNLABELLED).astype(str).to_numpy(dtype=object)
    return np.full(len(cluster_ids), _UNLABELLED, dtype=object)


def _cluster_info(folder, cluster_ids):
    path = folder / "cluster_info.tsv"
    if not path.is_file():
        return None
    # ``group`` there is Phy's copy of cluster_group.tsv, already the label
    info = _read_table(path, None).drop(columns="group", errors="ignore")
    return info.reindex(cluster_ids)
