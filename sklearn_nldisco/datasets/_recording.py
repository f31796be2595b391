"""The in-memory form of one recording session, whatever file it came from."""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class BehaviourSeries:
    """One sampled behavioural signal (hand position, velocity, eye, cursor ...).

    Parameters
    ----------
    timestamps : ndarray of shape (n_samples,)
        Sample times in seconds, increasing.
    data : ndarray of shape (n_samples, n_channels)
        The samples; a 1-D signal is stored with one channel.
    unit : str, default="unknown"
        Physical unit of ``data`` (e.g. ``"mm"``, ``"mm/s"``).
    kind : {"position", "direction", "signal"} or None, default=None
        What the signal is, as far as the file says: ``"position"`` (an NWB
        ``SpatialSeries`` in a ``Position`` container or directly in the
        behaviour module), ``"direction"`` (in a ``CompassDirection``
        container: angles), ``"signal"`` (anything else). None: not known;
        ``nldisco run`` then takes a name ending in ``_pos`` as a position.
    """

    timestamps: np.ndarray
    data: np.ndarray
    unit: str = "unknown"
    kind: str | None = None

    def __post_init__(self):
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        data = np.asarray(self.data)
        self.data = data[:, None] if data.ndim == 1 else data
        if self.timestamps.ndim != 1 or self.data.shape[0] != self.timestamps.shape[0]:
            raise ValueError(
                "BehaviourSeries needs 1-D timestamps and data with one row per "
                f"timestamp; got timestamps {self.timestamps.shape} and data "
                f"{self.data.shape}."
            )


@dataclass(repr=False)
class Recording:
    """Spikes, trials and behaviour of one session.

    This is what :func:`load_nwb` returns and what the simulated session is
    made of. Everything is in seconds on the session's clock.

    Parameters
    ----------
    spike_times : list of ndarray
        One 1-D float64 array of spike times (s) per unit, sorted.
    units : DataFrame
        One row per unit, in the order of ``spike_times``. Its index
        (named ``unit_id``) holds the unit ids; optional columns such as ``electrode_group`` or
        ``heldout`` carry per-unit metadata.
    trials : DataFrame or None
        One row per trial, with at least ``start_time`` and ``stop_time``,
        then event-time columns (``target_on_time``, ``go_cue_time``,
        ``move_onset_time`` ...), condition columns (``trial_type``,
        ``maze_id`` ...) and, for MC_Maze, the ``split`` column. The index
        (named ``trial_id``) holds the trial ids.
    behaviour : dict of str to BehaviourSeries
        Sampled behavioural signals by name (``hand_pos``, ``hand_vel``,
        ``cursor_pos``, ``eye_pos`` ...).
    session_id : str, default=""
        An identifier of the session.
    description : str, default=""
        Free text (e.g. the file it was read from).
    """

    spike_times: list
    units: pd.DataFrame
    trials: pd.DataFrame | None = None
    behaviour: dict = field(default_factory=dict)
    session_id: str = ""
    description: str = ""

    def __post_init__(self):
        if len(self.units) != len(self.spike_times):
            raise ValueError(
                f"Recording has {len(self.spike_times)} spike trains but "
                f"{len(self.units)} rows in units; expected one row per unit."
            )

    @property
    def n_units(self):
        """Number of units."""
        return len(self.spike_times)

    @property
    def unit_ids(self):
        """Unit ids, in the order of ``spike_times``."""
        return self.units.index.to_numpy()

    def __repr__(self):
        # one line whatever the size: the arrays are summarised, never printed
        trains = [np.asarray(times) for times in self.spike_times]
        n_spikes = sum(times.size for times in trains)
        starts = [times.min() for times in trains if times.size]
        stops = [times.max() for times in trains if times.size]
        if self.trials is not None and {"start_time", "stop_time"} <= set(self.trials.columns):
            starts.append(self.trials["start_time"].min())
            stops.append(self.trials["stop_time"].max())
        span = "None"
        if starts and np.isfinite(np.nanmin(starts)):
            span = f"({float(np.nanmin(starts)):.6g}, {float(np.nanmax(stops)):.6g})"
        n_trials = None if self.trials is None else len(self.trials)
        return (f"Recording(session_id={self.session_id!r}, n_units={self.n_units}, "
                f"n_spikes={n_spikes}, n_trials={n_trials}, "
                f"behaviour={list(self.behaviour)}, span_s={span})")
