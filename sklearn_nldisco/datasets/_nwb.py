"""Read and write :class:`Recording` objects as NWB files.

The reader follows the layout of the Neural Latents Benchmark MC_Maze files
(DANDI 000128, 000138, 000139, 000140) and reads other NWB files of the same
shape: spikes in the units table, trials in the trials table, behavioural
signals in the ``behavior`` processing module. The writer produces that same
layout, so a written recording reads back unchanged.
"""

import datetime
import os
import uuid
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ._mc_maze import MC_MAZE_BEHAVIOUR, MC_MAZE_TRIAL_COLUMNS
from ._recording import BehaviourSeries, Recording

# pynwb and hdmf are imported inside the functions that use them: importing
# pynwb takes about a second, which the rest of the package need not pay.

_BEHAVIOUR_MODULE = "behavior"
# Columns that refer to other objects in the file rather than hold metadata.
_UNIT_COLUMNS_SKIPPED = ("spike_times", "electrodes", "waveform_mean", "waveform_sd", "waveforms")
_TRIAL_COLUMNS_SKIPPED = ("timeseries",)
# Containers of the NWB behaviour types whose series are read from acquisition.
_BEHAVIOUR_CONTAINERS = ("Position", "CompassDirection", "BehavioralTimeSeries",
                         "BehavioralEvents", "EyeTracking", "PupilTracking")
# Where a SpatialSeries is a position: in a Position container, or placed
# directly in the behaviour module (the MC_Maze layout) or in acquisition.
_POSITION_PARENTS = ("Position", "ProcessingModule", "NWBFile")


def load_nwb(path, *, behaviour=None, require=()):
    """Read a recording session from an NWB file into memory.

    Spike times, unit metadata, the trials table and the behavioural time
    series are read and the file is closed before returning.

    Parameters
    ----------
    path : str or path-like
        The ``.nwb`` file (HDF5 backend).
    behaviour : sequence of str or None, default=None
        Names of the behavioural series to read from the ``behavior``
        processing module. ``None`` reads every series there; ``()`` reads
        none, which is faster on large files. A name given here that the file
        lacks raises ``ValueError``.
    require : sequence of str, default=()
        Fields the file must have: a trials column (``"move_onset_time"``),
        a units column (``"heldout"``) or a behavioural series
        (``"hand_vel"``). A missing field raises ``ValueError`` naming it and
        the file, before the bulk of the data is read.

    Returns
    -------
    recording : Recording
        ``spike_times``: one sorted float64 array per unit.
        ``units``: indexed by the NWB unit id (index name ``"unit_id"``), with
        every metadata column of the units table (``heldout``,
        ``obs_intervals`` ...); ``electrode_group`` holds group names, taken
        from the units' electrodes when the table has no such column.
        ``trials``: ``nwbfile.trials.to_dataframe()`` indexed by the trial id
        (index name ``"trial_id"``), or ``None`` without a trials table.
        ``behaviour``: one :class:`BehaviourSeries` per series, by series
        name, in the unit of the file after applying its ``conversion`` and
        ``offset``.
        ``session_id``: the file's ``session_id``, else its ``identifier``.
        ``description``: the file's ``session_description``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not an NWB file, or lacks a field named in
        ``behaviour`` or ``require``.

    See Also
    --------
    load_mc_maze : Read an MC_Maze file and check it has the MC_Maze fields.
    write_nwb : The inverse.

    Notes
    -----
    Series are looked for directly in ``processing["behavior"]`` (the
    MC_Maze layout) and inside its containers (``Position``,
    ``BehavioralTimeSeries`` ...), then in ``acquisition``: a
    ``SpatialSeries`` there and the series inside behaviour containers,
    not other series (raw recordings live there too). Each series' ``kind``
    says what the file makes of it: ``"position"`` for a ``SpatialSeries``
    in a ``Position`` container or placed directly in the module or in
    acquisition, ``"direction"`` inside ``CompassDirection``, ``"signal"``
    otherwise. A series sampled at a fixed rate gets
    ``starting_time + arange(n) / rate`` as timestamps. Where two containers
    hold series of the same name, the second is keyed
    ``"<container>/<series>"`` (``"acquisition/<series>"`` or
    ``"acquisition/<container>/<series>"`` in acquisition). The trials ``timeseries`` column and the
    units ``electrodes`` and waveform columns are references into the file
    and are not read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sklearn_nldisco.datasets._simulate import make_reaching_session
    >>> recording, _ = make_reaching_session(n_units=5, n_trials=8, random_state=0)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "session.nwb"
    >>> write_nwb(recording, path)
    >>> loaded = load_nwb(path, require=("hand_vel", "move_onset_time"))
    >>> loaded.n_units, len(loaded.trials), sorted(loaded.behaviour)
    (5, 8, ['hand_pos', 'hand_vel'])
    >>> load_nwb(path, require=("eye_pos",))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...session.nwb lacks the required field(s) 'eye_pos'...
    """
    path = _check_readable(path)
    behaviour = None if behaviour is None else _as_names(behaviour, "behaviour")
    require = _as_names(require, "require")

    from pynwb import NWBHDF5IO

    # hdmf raises many exception types on an HDF5 file that is not NWB
    try:
        io = NWBHDF5IO(str(path), "r")
    except Exception as error:
        raise ValueError(f"could not read {path} as an NWB file: {error}") from error
    with io:
        try:
            nwbfile = io.read()
        except Exception as error:
            raise ValueError(f"could not read {path} as an NWB file: {error}") from error

        series = _find_behaviour_series(nwbfile)
        asked = tuple(series) if behaviour is None else behaviour
        _check_fields(nwbfile, series, (*asked, *require), path)

        spike_times, units = _read_units(nwbfile.units)
        trials = _read_trials(nwbfile.trials)
        recording = Recording(
            spike_times=spike_times,
            units=units,
            trials=trials,
            behaviour=_read_behaviour(series, asked),
            session_id=nwbfile.session_id or nwbfile.identifier,
            description=nwbfile.session_description,
        )
    return recording


def load_mc_maze(path, *, behaviour=MC_MAZE_BEHAVIOUR):
    """Read an MC_Maze training file, checking it has the MC_Maze fields.

    A thin wrapper of :func:`load_nwb` that requires the units ``heldout``
    column, the trial columns in ``MC_MAZE_TRIAL_COLUMNS`` and the
    behavioural series in ``behaviour``.

    Parameters
    ----------
    path : str or path-like
        An MC_Maze ``..._desc-train_behavior+ecephys.nwb`` file (DANDI
        000128, 000138, 000139 or 000140).
    behaviour : sequence of str, default=("hand_pos", "hand_vel", "cursor_pos", "eye_pos")
        The behavioural series to read; each must be present.

    Returns
    -------
    recording : Recording
        As from :func:`load_nwb`.

    Raises
    ------
    ValueError
        If a required field is missing. The ``..._desc-test_ecephys.nwb``
        files of the benchmark carry no behaviour and few trial columns: read
        those with :func:`load_nwb`.

    See Also
    --------
    load_nwb : Read any NWB file of this layout.

    Examples
    --------
    A file without behaviour is refused with the name of what is missing:

    >>> import tempfile, pathlib
    >>> from sklearn_nldisco.datasets._simulate import make_reaching_session
    >>> recording, _ = make_reaching_session(n_units=4, n_trials=8, random_state=0)
    >>> recording.behaviour = {}
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "no_behaviour.nwb"
    >>> write_nwb(recording, path)
    >>> load_mc_maze(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...no_behaviour.nwb lacks the required field(s) 'hand_pos', ...
    """
    behaviour = _as_names(behaviour, "behaviour")
    return load_nwb(
        path, behaviour=behaviour, require=(*MC_MAZE_TRIAL_COLUMNS, "heldout")
    )


def write_nwb(recording, path, *, overwrite=False, session_start_time=None):
    """Write a recording to an NWB file that :func:`load_nwb` reads back unchanged.

    The layout mimics MC_Maze: the units table holds ``spike_times`` and
    one column per column of ``recording.units``; the trials table holds
    every column of ``recording.trials``; each behavioural series is stored
    directly in ``processing["behavior"]``, as a ``SpatialSeries`` when its
    name ends in ``_pos`` (and it has at most three channels), otherwise as a
    ``TimeSeries``, always with explicit timestamps. Series with identical
    timestamps share one timestamps dataset (an HDF5 link).

    Parameters
    ----------
    recording : Recording
        Unit and trial ids (the index of ``units`` and ``trials``) must be
        integers. Table columns may hold booleans, integers, floats, strings
        without missing values, or arrays (one array per row, written as a
        ragged column). An ``electrode_group`` units column holds group
        names; each name becomes an NWB ``ElectrodeGroup``.
    path : str or path-like
        The file to create, conventionally ending in ``.nwb``.
    overwrite : bool, default=False
        Replace ``path`` if it exists; otherwise an existing file is an error.
    session_start_time : datetime or None, default=None
        The NWB session start time; ``None`` uses the present time (UTC).
        A naive datetime is taken as UTC.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    TypeError
        If ``recording`` is not a :class:`Recording`, or a table column has a
        type NWB cannot hold.
    ValueError
        If ids are not integers or a string column has missing values.

    See Also
    --------
    load_nwb : The inverse.

    Notes
    -----
    Round trip guarantees: spike times are bitwise equal; the units and
    trials frames are equal with their dtypes and index, except that
    ``start_time`` and ``stop_time`` come first among trial columns and the
    index names become ``"unit_id"`` and ``"trial_id"``; behaviour is
    bitwise equal. An empty ``session_id`` reads back as the file's random
    identifier.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from sklearn_nldisco.datasets._simulate import make_reaching_session
    >>> recording, _ = make_reaching_session(n_units=3, n_trials=8, random_state=1)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "session.nwb"
    >>> write_nwb(recording, path)
    >>> loaded = load_nwb(path)
    >>> all(np.array_equal(a, b) for a, b in zip(loaded.spike_times, recording.spike_times))
    True
    """
    from pynwb import NWBHDF5IO, NWBFile

    if not isinstance(recording, Recording):
        raise TypeError(
            f"recording must be a Recording; got {type(recording).__name__}."
        )
    path = Path(os.fspath(path))
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass overwrite=True to replace it."
        )
    if session_start_time is None:
        session_start_time = datetime.datetime.now(datetime.timezone.utc)
    elif session_start_time.tzinfo is None:
        session_start_time = session_start_time.replace(tzinfo=datetime.timezone.utc)

    nwbfile = NWBFile(
        session_description=recording.description,
        identifier=str(uuid.uuid4()),
        session_start_time=session_start_time,
        session_id=recording.session_id or None,
    )
    _write_units(nwbfile, recording)
    if recording.trials is not None:
        _write_trials(nwbfile, recording.trials)
    if recording.behaviour:
        _write_behaviour(nwbfile, recording.behaviour)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)


# --------------------------------------------------------------------- reading


def _check_readable(path):
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"No NWB file at {path}.")
    if not path.is_file() or not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an NWB file (not an HDF5 file).")
    return path


def _as_names(names, argument):
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"{argument} must be a sequence of names; got {names!r}.")
    return names


def _find_behaviour_series(nwbfile):
    """Every behavioural TimeSeries, by name, in the order the file lists them.

    In ``processing["behavior"]``: every series, directly there or inside
    a container. In ``acquisition``: a ``SpatialSeries`` placed directly
    there and the series inside behaviour containers (``Position``,
    ``CompassDirection``, ``BehavioralTimeSeries`` ...), but no other
    series: raw recordings (``ElectricalSeries``) live there too.
    """
    from pynwb import TimeSeries
    from pynwb.behavior import SpatialSeries

    found = {}

    def add(series, prefix):
        found[series.name if series.name not in found else f"{prefix}/{series.name}"] = series

    if _BEHAVIOUR_MODULE in nwbfile.processing:
        for name, interface in nwbfile.processing[_BEHAVIOUR_MODULE].data_interfaces.items():
            if isinstance(interface, TimeSeries):
                add(interface, name)
                continue
            for child in getattr(interface, "children", ()):
                if isinstance(child, TimeSeries):
                    add(child, name)
    for name, interface in nwbfile.acquisition.items():
        if isinstance(interface, SpatialSeries):
            add(interface, "acquisition")
        elif getattr(interface, "neurodata_type", None) in _BEHAVIOUR_CONTAINERS:
            for child in interface.children:
                if isinstance(child, TimeSeries):
                    add(child, f"acquisition/{name}")
    return found


def _series_kind(series):
    """``"position"``, ``"direction"`` or ``"signal"``, from the series' type and container."""
    from pynwb.behavior import SpatialSeries

    container = getattr(series.parent, "neurodata_type", None)
    if container == "CompassDirection":
        return "direction"
    if isinstance(series, SpatialSeries) and container in _POSITION_PARENTS:
        return "position"
    return "signal"


def _check_fields(nwbfile, series, required, path):
    trial_columns = set()
    if nwbfile.trials is not None:
        trial_columns = set(nwbfile.trials.colnames) | {"start_time", "stop_time"}
    unit_columns = set(nwbfile.units.colnames) if nwbfile.units is not None else set()
    present = trial_columns | unit_columns | set(series)
    missing = [name for name in dict.fromkeys(required) if name not in present]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        raise ValueError(
            f"{path} lacks the required field(s) {listed}: not a trials column, "
            "units column or behavioural series there. It has trials columns "
            f"{sorted(trial_columns)}, units columns {sorted(unit_columns)} and "
            f"behavioural series {sorted(series)}."
        )


def _read_units(units):
    if units is None or len(units) == 0:
        return [], pd.DataFrame(index=pd.Index([], dtype=np.int64, name="unit_id"))
    ids = np.asarray(units.id[:])
    if "spike_times" in units.colnames:
        spike_index = units["spike_times"]
        all_times = np.asarray(spike_index.target.data[:], dtype=np.float64)
        ends = np.asarray(spike_index.data[:], dtype=np.int64)
        spike_times = [np.sort(times) for times in np.split(all_times, ends[:-1])]
    else:
        spike_times = [np.empty(0) for _ in ids]

    frame = units.to_dataframe(
        exclude={name for name in _UNIT_COLUMNS_SKIPPED if name in units.colnames}
    )
    frame.index = pd.Index(ids, name="unit_id")
    if "electrode_group" in frame.columns:
        frame["electrode_group"] = [group.name for group in frame["electrode_group"]]
    elif "electrodes" in units.colnames:
        names = _electrode_group_names(units)
        if names is not None:
            frame["electrode_group"] = names
    return spike_times, frame


def _electrode_group_names(units):
    """The group of each unit's first electrode, when the file records one."""
    region_index = units["electrodes"]
    region = getattr(region_index, "target", region_index)
    electrodes = region.table
    if "group_name" in electrodes.colnames:
        groups = np.asarray(electrodes["group_name"].data[:]).astype(str)
    elif "group" in electrodes.colnames:
        groups = np.array([group.name for group in electrodes["group"].data[:]])
    else:
        return None
    rows = np.asarray(region.data[:], dtype=np.int64)
    if region is region_index:
        first = rows
    else:
        ends = np.asarray(region_index.data[:], dtype=np.int64)
        starts = np.concatenate(([0], ends[:-1]))
        if np.any(ends == starts):
            return None
        first = rows[starts]
    return [str(name) for name in groups[first]]


def _read_trials(trials):
    if trials is None:
        return None
    frame = trials.to_dataframe(
        exclude={name for name in _TRIAL_COLUMNS_SKIPPED if name in trials.colnames}
    )
    frame.index.name = "trial_id"
    return frame


def _read_behaviour(series, names):
    behaviour = {}
    timestamps_read = {}  # MC_Maze series link one timestamps dataset: read it once
    for name in names:
        interface = series[name]
        data = np.asarray(interface.data[:])
        conversion = interface.conversion if interface.conversion is not None else 1.0
        offset = getattr(interface, "offset", 0.0) or 0.0
        if conversion != 1.0 or offset != 0.0:
            data = data * conversion + offset
        stored = interface.timestamps
        if stored is None:
            timestamps = interface.starting_time + np.arange(len(data)) / interface.rate
        else:
            key = getattr(stored, "name", None) or id(stored)
            if key not in timestamps_read:
                timestamps_read[key] = np.asarray(stored[:], dtype=np.float64)
            timestamps = timestamps_read[key]
        behaviour[name] = BehaviourSeries(timestamps=timestamps, data=data, unit=interface.unit,
                                          kind=_series_kind(interface))
    return behaviour


# --------------------------------------------------------------------- writing


def _integer_ids(index, table):
    if not pd.api.types.is_integer_dtype(index.dtype):
        raise ValueError(
            f"NWB ids are integers; the index of recording.{table} has dtype "
            f"{index.dtype}. Reset it to integer ids first."
        )
    return np.asarray(index, dtype=np.int64)


def _column_data(frame, name, table):
    """VectorData (and VectorIndex for ragged values) for one frame column."""
    from hdmf.common import VectorData, VectorIndex

    column = frame[name]
    description = f"{name} (from Recording.{table})"
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or (
        isinstance(dtype, np.dtype) and dtype.kind in "iuf"
    ):
        return [VectorData(name=name, description=description, data=column.to_numpy())]
    values = column.to_numpy(dtype=object)
    if all(isinstance(value, str) for value in values):
        return [VectorData(name=name, description=description, data=values)]
    if all(isinstance(value, (np.ndarray, list, tuple)) for value in values):
        rows = [np.asarray(value) for value in values]
        flat = np.concatenate(rows) if rows else np.empty(0)
        ends = np.cumsum([len(row) for row in rows])
        data = VectorData(name=name, description=description, data=flat)
        index = VectorIndex(name=f"{name}_index", data=ends, target=data)
        return [data, index]
    if column.isna().any() and column.dropna().map(type).eq(str).all():
        raise ValueError(
            f"Column {name!r} of recording.{table} holds strings with missing "
            "values, which NWB cannot store; fill them first."
        )
    raise TypeError(
        f"Column {name!r} of recording.{table} has dtype {dtype}; NWB tables "
        "hold booleans, integers, floats, strings or one array per row."
    )


def _write_units(nwbfile, recording):
    from hdmf.common import VectorData, VectorIndex
    from pynwb.misc import Units

    units = recording.units
    if len(units) != recording.n_units:
        raise ValueError(
            f"recording.units has {len(units)} rows for {recording.n_units} spike trains."
        )
    if recording.n_units == 0:
        return
    ids = _integer_ids(units.index, "units")
    trains = [np.asarray(times, dtype=np.float64) for times in recording.spike_times]
    spike_data = VectorData(
        name="spike_times",
        description="spike times (s) of each unit",
        data=np.concatenate(trains),
    )
    columns = [
        spike_data,
        VectorIndex(
            name="spike_times_index",
            data=np.cumsum([len(times) for times in trains]),
            target=spike_data,
        ),
    ]
    for name in units.columns:
        if name == "electrode_group":
            columns.append(_electrode_group_column(nwbfile, units[name]))
        elif name == "obs_intervals":
            intervals = [
                np.asarray(value, dtype=np.float64).reshape(-1, 2)
                for value in units[name]
            ]
            columns.extend(
                _column_data(
                    pd.DataFrame({name: pd.Series(intervals, dtype=object)}), name, "units"
                )
            )
        else:
            columns.extend(_column_data(units, name, "units"))
    nwbfile.units = Units(
        name="units", description="units of the session", id=ids, columns=columns
    )


def _electrode_group_column(nwbfile, names):
    from hdmf.common import VectorData

    device = nwbfile.create_device(name="array", description="recording array")
    groups = {}
    for name in dict.fromkeys(names):
        if not isinstance(name, str):
            raise TypeError(
                f"recording.units['electrode_group'] holds group names; got {name!r}."
            )
        groups[name] = nwbfile.create_electrode_group(
            name=name, description=name, location=name, device=device
        )
    return VectorData(
        name="electrode_group",
        description="electrode group of each unit",
        data=[groups[name] for name in names],
    )


def _write_trials(nwbfile, trials):
    from hdmf.common import VectorData
    from pynwb.epoch import TimeIntervals

    for name in ("start_time", "stop_time"):
        if name not in trials.columns:
            raise ValueError(f"recording.trials needs a {name!r} column to be written.")
    ids = _integer_ids(trials.index, "trials")
    columns = [
        VectorData(
            name=name,
            description=f"{name} of each trial (s)",
            data=trials[name].to_numpy(dtype=np.float64),
        )
        for name in ("start_time", "stop_time")
    ]
    for name in trials.columns:
        if name not in ("start_time", "stop_time"):
            columns.extend(_column_data(trials, name, "trials"))
    nwbfile.trials = TimeIntervals(
        name="trials", description="trials of the session", id=ids, columns=columns
    )


def _write_behaviour(nwbfile, behaviour):
    from pynwb import TimeSeries
    from pynwb.behavior import SpatialSeries

    module = nwbfile.create_processing_module(
        name=_BEHAVIOUR_MODULE, description="behavioural time series"
    )
    owners = []  # series that hold their own timestamps dataset
    for name, series in behaviour.items():
        if not isinstance(series, BehaviourSeries):
            raise TypeError(
                f"recording.behaviour[{name!r}] must be a BehaviourSeries; got "
                f"{type(series).__name__}."
            )
        # share the timestamps dataset of an earlier series sampled identically
        timestamps = next(
            (
                owner
                for owner in owners
                if np.array_equal(owner.timestamps, series.timestamps)
            ),
            series.timestamps,
        )
        arguments = dict(
            name=name,
            data=series.data,
            timestamps=timestamps,
            unit=series.unit,
            description=f"{name} ({series.unit})",
        )
        if name.endswith("_pos") and series.data.shape[1] <= 3:
            interface = SpatialSeries(reference_frame="unknown", **arguments)
        else:
            interface = TimeSeries(**arguments)
        module.add(interface)
        if timestamps is series.timestamps:
            owners.append(interface)
