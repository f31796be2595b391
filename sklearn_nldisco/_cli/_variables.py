"""What ``nldisco run`` scores: the events, trial columns and behaviour a recording has.

- **events**: trial columns of event times; each starts a task phase, named
  after the column without ``_time``, that lasts until the next event
  (``--events``; by default the MC_Maze events the trials have, else none);
- **trial variables**: the other trial columns, a condition per value or
  quantile bins (the scorer's discretisation); columns named ``*_time`` hold
  times, not conditions, and are only used as events;
- **behaviour**, by each series' ``kind``: a position gives a place-grid
  cell, a speed and a heading; a direction (``CompassDirection``) its angle
  in degrees; any other signal its mean per bin, one variable per channel;
- **without trials**: contiguous time blocks, binned separately and held out
  whole.

A choice the file cannot satisfy is a ``UsageError`` naming what is there.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._config import UsageError

# The variables the command scored on MC_Maze-shaped data before it read any
# other layout; still the automatic choice there (a curated few of the many
# MC_Maze columns and signals).
MC_MAZE_SELECTION = ("phase", "trial_type", "speed", "direction_deg")
MC_MAZE_EVENT_COLUMNS = ("target_on_time", "go_cue_time", "move_onset_time")
# Kinematics of the MC_Maze hand, as bin_metadata names them.
MC_MAZE_KINEMATICS_FROM = ("hand_pos", "hand_vel")
ALL_VARIABLES = "all"
NO_EVENTS = "none"
# Metadata columns that are bookkeeping, never variables (the scorer's own list).
BOOKKEEPING = ("bin_start", "bin_stop", "interval_id", "trial_id", "split", "event")
# Without trials, every HELD_OUT_EVERY-th block is held out; without
# --block-duration the recording is cut into DEFAULT_N_BLOCKS blocks.
HELD_OUT_EVERY = 5
DEFAULT_N_BLOCKS = 10
# A heading is defined where the speed exceeds this fraction of the 95th
# percentile of the speed: at rest the direction of motion is tracking noise.
HEADING_MIN_SPEED_FRACTION = 0.05


@dataclass(frozen=True)
class Variables:
    """The variables to score, which of them are trial-level, which are angles.

    ``trial_level`` variables (trial columns) are tested against permuted
    trials, the others against circular shifts; ``angles`` are in degrees.
    """

    names: tuple
    trial_level: tuple = ()
    angles: tuple = ("direction_deg",)


# ---------------------------------------------------------------- events


def has_trials(recording):
    """Whether the recording has a non-empty trials table."""
    return recording.trials is not None and len(recording.trials) > 0


def choose_events(recording, names, source):
    """The ``(column, phase)`` events that split each trial into phases.

    Parameters
    ----------
    recording : Recording
    names : tuple of str or None
        ``--events``: trial columns of event times, ``("none",)`` for none,
        None for the automatic choice (the MC_Maze events the trials have,
        when at least one besides ``start_time`` has times; else none).
    source : str
        The file, for the messages.

    Returns
    -------
    events : tuple of (str, str)
        Empty for no phases.

    Raises
    ------
    UsageError
        If a named column is missing, not numeric or holds no time, or
        events are named for a recording without trials.
    """
    from ..datasets import MC_MAZE_EVENTS

    trials = recording.trials if has_trials(recording) else None
    if names is None:
        if trials is None:
            return ()
        present = tuple((column, phase) for column, phase in MC_MAZE_EVENTS
                        if column in trials.columns and _has_times(trials[column]))
        return present if len(present) > 1 else ()
    if names == (NO_EVENTS,):
        return ()
    if trials is None:
        raise UsageError(f"--events {','.join(names)}: {source} has no trials table; events are "
                         "trial columns of event times")
    missing = [name for name in names if name not in trials.columns]
    if missing:
        raise UsageError(f"--events names {missing}, not trial columns of {source}; its trial "
                         f"columns are {list(trials.columns)}")
    for name in names:
        if not pd.api.types.is_numeric_dtype(trials[name]) \
                or pd.api.types.is_bool_dtype(trials[name]):
            raise UsageError(f"--events {name}: the trial column holds {trials[name].dtype} "
                             f"values in {source}, not event times in seconds")
        if not _has_times(trials[name]):
            raise UsageError(f"--events {name}: the trial column has no event time in {source} "
                             "(every value is missing)")
    events = [("start_time", "start")]
    events += [(name, _phase_name(name)) for name in dict.fromkeys(names)
               if name != "start_time"]
    return tuple(events)


def is_mc_maze_shaped(recording, events_setting):
    """Whether the original MC_Maze choice of variables applies: automatic
    events, and the trials have times in every MC_Maze event column."""
    if events_setting is not None or not has_trials(recording):
        return False
    trials = recording.trials
    return all(column in trials.columns and _has_times(trials[column])
               for column in MC_MAZE_EVENT_COLUMNS)


def _has_times(column):
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column) \
        and bool(np.isfinite(column.to_numpy(dtype=np.float64, na_value=np.nan)).any())


def _phase_name(column):
    return column[: -len("_time")] if column.endswith("_time") else column


# ---------------------------------------------------------------- trial columns


def trial_variables(trials, events):
    """Trial columns that are variables: not start/stop, event times, ``split`` or arrays."""
    event_columns = {column for column, _ in events}
    names = []
    for column in trials.columns:
        if column in ("start_time", "stop_time", "split") or column in event_columns \
                or column.endswith("_time"):
            continue
        values = trials[column]
        if values.dtype == object and not values.map(_is_scalar).all():
            continue  # one array per trial (target positions ...): not a condition
        names.append(column)
    return names


def _is_scalar(value):
    return value is None or np.ndim(value) == 0


# ---------------------------------------------------------------- behaviour


def series_kind(name, series):
    """``"position"``, ``"direction"`` or ``"signal"``: the series' ``kind``, else by name."""
    kind = getattr(series, "kind", None)
    if kind is None:
        kind = "position" if name.endswith("_pos") else "signal"
    if kind == "position" and not 1 <= np.shape(series.data)[1] <= 3:
        return "signal"
    return kind


def _axes(n_channels):
    """Axis names as bin_metadata and kinematics give them."""
    return ["x", "y", "z"][:n_channels] if n_channels <= 3 else [str(i) for i in range(n_channels)]


def _channel_names(name, n_channels):
    return [name] if n_channels == 1 else [f"{name}_{axis}" for axis in _axes(n_channels)]


def position_variables(name, n_axes):
    """Names of the place-grid cell, speed and heading of a position series."""
    heading = f"{name}_heading_deg" if n_axes >= 2 else f"{name}_heading"
    return [f"{name}_cell", f"{name}_speed", heading]


def place_cells(position, n_cells):
    """Cell of an equal-width grid of ``n_cells`` per axis over the range of each axis.

    Parameters
    ----------
    position : ndarray of shape (n_bins, n_axes)
        One or two axes (more are ignored); NaN rows have no cell.
    n_cells : int

    Returns
    -------
    cells : Categorical
        Labels such as ``"x [0, 20) y [40, 60)"`` (the last cell of an axis
        includes its upper edge), ordered by row then column; missing where
        the position is.
    """
    position = position[:, :2]
    finite = np.isfinite(position).all(axis=1)
    code = np.full(len(position), -1, dtype=np.int64)
    if not finite.any():
        return pd.Categorical.from_codes(code, categories=[])
    labels = []
    index = np.zeros(finite.sum(), dtype=np.int64)
    for axis, letter in zip(range(position.shape[1]), "xy"):
        values = position[finite, axis]
        low, high = values.min(), values.max()
        edges = np.linspace(low, high, n_cells + 1)
        width = (high - low) / n_cells
        cell = np.zeros(len(values), dtype=np.int64) if width == 0 else \
            np.clip(np.floor((values - low) / width).astype(np.int64), 0, n_cells - 1)
        index = index * n_cells + cell
        prefix = f"{letter} " if position.shape[1] > 1 else ""
        labels.append([f"{prefix}[{edges[i]:.4g}, {edges[i + 1]:.4g})" for i in range(n_cells)])
    names = labels[0] if len(labels) == 1 else \
        [f"{row} {column}" for row in labels[0] for column in labels[1]]
    code[finite] = index
    present = np.unique(index)
    renumbered = np.full(len(names), -1, dtype=np.int64)
    renumbered[present] = np.arange(len(present))
    code[finite] = renumbered[index]
    return pd.Categorical.from_codes(code, categories=[names[i] for i in present])


def position_columns(name, series, binner, n_cells):
    """Place-grid cell, speed (units per second) and heading of one position series."""
    from ..preprocessing import kinematics, resample_to_bins

    position = resample_to_bins(series.timestamps, series.data, binner)
    position = position[:, None] if position.ndim == 1 else position
    motion = kinematics(binner, position=position)
    speed = motion["speed"].to_numpy()
    cell_name, speed_name, heading_name = position_variables(name, position.shape[1])
    finite = speed[np.isfinite(speed)]
    threshold = HEADING_MIN_SPEED_FRACTION * np.percentile(finite, 95) if finite.size else 0.0
    moving = speed > threshold
    if position.shape[1] >= 2:
        heading = np.where(moving, motion["direction_deg"].to_numpy(), np.nan)
    else:
        heading = pd.Categorical(np.where(~moving, None, np.where(
            motion["vel_x"].to_numpy() > 0, "+x", "-x")), categories=["+x", "-x"])
    return pd.DataFrame({cell_name: place_cells(position, n_cells), speed_name: speed,
                         heading_name: heading}, index=pd.RangeIndex(len(position)))


def direction_columns(name, series, binner):
    """Angles in degrees in [-180, 180), the circular mean of the samples in each bin.

    The unit decides radians or degrees (``rad...`` or ``deg...``); any
    other unit is taken as radians when every value lies within ±2π.
    """
    from ..preprocessing import resample_to_bins

    data = np.asarray(series.data, dtype=np.float64)
    unit = str(getattr(series, "unit", "")).lower()
    in_radians = unit.startswith("rad") or (
        not unit.startswith("deg")
        and np.nanmax(np.abs(data), initial=0.0) <= 2 * np.pi + 1e-6)
    radians = data if in_radians else np.radians(data)
    cosine = resample_to_bins(series.timestamps, np.cos(radians), binner)
    sine = resample_to_bins(series.timestamps, np.sin(radians), binner)
    degrees = np.degrees(np.arctan2(sine, cosine))
    degrees = np.where(degrees >= 180.0, degrees - 360.0, degrees)
    degrees = degrees[:, None] if degrees.ndim == 1 else degrees
    return pd.DataFrame(degrees, columns=_channel_names(name, degrees.shape[1]),
                        index=pd.RangeIndex(len(degrees)))


# ---------------------------------------------------------------- the metadata


@dataclass(frozen=True)
class Catalogue:
    """Every variable a recording offers, named as in the metadata, from the recording alone.

    ``found`` is everything found (the choice of ``--variables all``):
    ``phase`` (with events), the trial variables, and per series its
    position variables, its angles or its channels. ``available`` adds what
    can be named but is not chosen by itself: the channels of a position,
    and the MC_Maze hand kinematics (``speed``, ``direction_deg`` ...).
    ``renamed`` maps each trial variable's column to its metadata name
    (``trial_<name>`` where another column has the name).
    """

    kinds: dict
    found: Variables
    available: tuple
    renamed: dict


def catalogue(recording, events):
    """The :class:`Catalogue` of ``recording`` with ``events`` (from :func:`choose_events`)."""
    behaviour = recording.behaviour
    kinds = {name: series_kind(name, series) for name, series in behaviour.items()}
    found, extra, angles = [], [], ["direction_deg"]
    for name, series in behaviour.items():
        channels = _channel_names(name, np.shape(series.data)[1])
        if kinds[name] == "position":
            derived = position_variables(name, len(channels))
            found += derived
            extra += channels
            angles += [column for column in derived if column.endswith("_heading_deg")]
        else:
            found += channels
            angles += channels if kinds[name] == "direction" else []
    hand = [name for name in MC_MAZE_KINEMATICS_FROM[::-1] if name in behaviour]
    if hand:  # bin_metadata's kinematics of the MC_Maze hand, velocity first
        axes = _axes(np.shape(behaviour[hand[0]].data)[1])
        extra += [f"vel_{axis}" for axis in axes] + ["speed"] \
            + (["direction_deg"] if len(axes) >= 2 else []) \
            + [f"acc_{axis}" for axis in axes] + ["acceleration"]
    renamed, trial_level = {}, []
    if has_trials(recording):
        taken = set(found) | set(extra) | set(BOOKKEEPING) | {"phase"}
        renamed = {column: f"trial_{column}" if column in taken else column
                   for column in trial_variables(recording.trials, events)}
        trial_level = list(renamed.values())
    names = (["phase"] if events else []) + trial_level + found
    return Catalogue(kinds, Variables(tuple(names), tuple(trial_level), tuple(angles)),
                     tuple(dict.fromkeys(names + extra)), renamed)


def check_variable_names(names, catalogue, source):
    """Raise ``UsageError`` if ``--variables`` names something the recording lacks."""
    if names is None or names == (ALL_VARIABLES,):
        return
    missing = [name for name in names if name not in catalogue.available]
    if missing:
        raise UsageError(f"--variables names {missing}, not variables of {source}; it has "
                         f"{list(catalogue.available)}")


def build_metadata(binner, recording, events, catalogue, place_grid):
    """Per-bin metadata of every variable in ``catalogue``.

    Returns
    -------
    metadata : DataFrame
        ``bin_metadata`` of the behaviour (``bin_start``, ``bin_stop``,
        ``interval_id``, each series per channel, the MC_Maze hand
        kinematics where ``hand_pos`` or ``hand_vel`` exist), the trial
        labels (``trial_id``, the trial variables, ``split``, and ``phase``
        and ``event`` with events; ``trial_id`` -1 everywhere without
        trials), and the position and direction variables.
    """
    from ..preprocessing import bin_metadata, trial_labels

    kinds = catalogue.kinds
    plain = {name: series for name, series in recording.behaviour.items()
             if kinds[name] != "direction"}
    signals = bin_metadata(binner, None, plain, kinematics_from=MC_MAZE_KINEMATICS_FROM)
    bins = signals[["bin_start", "bin_stop", "interval_id"]]
    signals = signals.drop(columns=bins.columns)
    derived = []
    for name, series in recording.behaviour.items():
        if kinds[name] == "position":
            derived.append(position_columns(name, series, binner, place_grid))
        elif kinds[name] == "direction":
            derived.append(direction_columns(name, series, binner))
    if has_trials(recording):
        trials = recording.trials
        renamed = catalogue.renamed
        conditions = [*renamed.values(), *(["split"] if "split" in trials.columns else [])]
        labels = trial_labels(binner, trials.rename(columns=renamed),
                              events=events or [("start_time", "start")],
                              conditions=conditions)
        if not events:
            labels = labels.drop(columns=["phase", "event"])
    else:
        labels = pd.DataFrame({"trial_id": np.full(len(bins), -1, dtype=np.int64)},
                              index=bins.index)
    metadata = pd.concat([bins, labels, signals, *derived], axis=1)
    duplicated = sorted(set(metadata.columns[metadata.columns.duplicated()]))
    if duplicated:
        raise UsageError(f"two behavioural variables would both be named {duplicated}; rename "
                         "the series in the file")
    return metadata


def choose_variables(metadata, found, names, mc_maze_shaped, source):
    """The variables to score: ``--variables``, else the automatic choice.

    The automatic choice is :data:`MC_MAZE_SELECTION` on an MC_Maze-shaped
    recording, everything found otherwise; ``("all",)`` is everything found.
    Variables with fewer than two conditions over all bins are left out of
    an automatic choice; a named one is an error.

    Raises
    ------
    UsageError
        If a named variable has fewer than two conditions (a constant or
        empty column); names the metadata lacks are checked earlier, by
        :func:`check_variable_names`.
    """
    if names is None:
        chosen = MC_MAZE_SELECTION if mc_maze_shaped else found.names
    elif names == (ALL_VARIABLES,):
        chosen = found.names
    else:
        chosen = tuple(dict.fromkeys(names))
    chosen = [name for name in chosen if name in metadata]
    scorable = scorable_variables(metadata, chosen, found.angles)
    if names not in (None, (ALL_VARIABLES,)):
        constant = [name for name in chosen if name not in scorable]
        if constant:
            raise UsageError(f"--variables {constant}: fewer than two conditions to compare in "
                             f"{source} (constant or missing in every bin)")
    return Variables(tuple(scorable), tuple(name for name in scorable
                                            if name in found.trial_level), found.angles)


def scorable_variables(metadata, names, angles):
    """Those of ``names`` that ``SelectivityScorer`` cuts into two or more conditions.

    Asked of the scorer itself (one latent that is never active, one null
    draw), so that the command and the scorer never disagree.
    """
    from ..interpretation import SelectivityScorer

    if not names or len(metadata) == 0:
        return []
    probe = SelectivityScorer(variables=list(names), angle_variables=list(angles),
                              n_permutations=1, max_permutations=1, p_value="gaussian",
                              random_state=0)
    try:
        tested = set(probe.score_latents(np.zeros((len(metadata), 1)), metadata)["variable"])
    except ValueError as error:
        if "two or more conditions" in str(error):
            return []
        raise
    return [name for name in names if name in tested]


# ---------------------------------------------------------------- without trials


def time_blocks(recording, bin_size, block_duration, source):
    """Contiguous blocks covering the spikes, each a whole number of bins.

    Returns
    -------
    blocks : DataFrame
        ``start_time`` and ``stop_time`` of each block, in time order.
    block_duration : float
        The duration of a block (the last one may be shorter).

    Raises
    ------
    UsageError
        If the recording has no spikes or fewer than two blocks.
    """
    trains = [times for times in recording.spike_times if len(times)]
    if not trains:
        raise UsageError(f"{source} has no spikes to bin")
    start = min(float(times[0]) for times in trains)
    stop = max(float(times[-1]) for times in trains)
    n_bins = int(np.floor((stop - start) / bin_size)) + 1
    if block_duration is None:
        block_bins = max(1, int(np.ceil(n_bins / DEFAULT_N_BLOCKS)))
    else:
        block_bins = max(1, int(round(block_duration / bin_size)))
    n_blocks = int(np.ceil(n_bins / block_bins))
    if n_blocks < 2:
        raise UsageError(
            f"{source} has no trials and its spikes span {stop - start:.3g} s: fewer than two "
            f"blocks of {block_bins * bin_size:.3g} s to hold one out; give a shorter "
            "--block-duration")
    first_bin = np.arange(n_blocks) * block_bins
    last_bin = np.minimum(first_bin + block_bins, n_bins)
    blocks = pd.DataFrame({"start_time": start + first_bin * bin_size,
                           "stop_time": start + last_bin * bin_size})
    blocks.index.name = "block"
    return blocks, block_bins * bin_size


def split_blocks(metadata, seed):
    """Every fifth block held out, from a seeded first one among the first five.

    Returns
    -------
    train, held_out : ndarray of bool of shape (n_bins,)
    held_out_blocks : ndarray of int
    """
    block = metadata["interval_id"].to_numpy()
    blocks = np.unique(block)
    first = np.random.default_rng(seed).integers(min(HELD_OUT_EVERY, len(blocks)))
    held_out_blocks = blocks[first::HELD_OUT_EVERY]
    held_out = np.isin(block, held_out_blocks)
    return ~held_out, held_out, held_out_blocks
