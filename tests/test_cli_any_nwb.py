"""``nldisco run`` on NWB files that are not MC_Maze: no trials, own events and columns.

The files are built here with pynwb, in the layout docs/datasets.md
describes: units; position as a ``SpatialSeries`` in a ``Position``
container of ``processing/behavior``; optionally a trials table with an
event column and a categorical and a numeric column of the user's task.
"""

import datetime
import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import error_line

from sklearn_nldisco._cli._config import resolve
from sklearn_nldisco._cli._stages import bin_spikes, load, split
from sklearn_nldisco._cli._variables import (
    BOOKKEEPING,
    catalogue,
    choose_events,
    direction_columns,
    place_cells,
)
from sklearn_nldisco.cli import main
from sklearn_nldisco.datasets import load_nwb

TINY = ["--n-latents", "8", "--k", "2", "--levels", "4,8", "--max-iter", "3", "--seeds", "1",
        "--n-permutations", "20", "--quiet"]
DURATION_S = 120.0
SAMPLE_S = 0.02


def _nwbfile():
    from pynwb import NWBFile

    return NWBFile(session_description="test session", identifier="test",
                   session_start_time=datetime.datetime(2024, 1, 1,
                                                        tzinfo=datetime.timezone.utc))


def _path_xy(t):
    """A smooth path over a 100 x 100 cm arena."""
    return np.column_stack([50 + 40 * np.cos(t / 3), 50 + 40 * np.sin(t / 5)])


def _add_place_units(nwbfile, rng, t, xy, n_units=10):
    for _ in range(n_units):
        centre = rng.uniform(10, 90, 2)
        rate = 2 + 40 * np.exp(-np.sum((xy - centre) ** 2, axis=1) / (2 * 15.0**2))
        nwbfile.add_unit(spike_times=t[rng.random(len(t)) < rate * SAMPLE_S])


def write_foraging_file(path, *, head_direction=False):
    """Units with place fields; position in processing/behavior; no trials table."""
    from pynwb import NWBHDF5IO
    from pynwb.behavior import CompassDirection, Position

    rng = np.random.default_rng(0)
    t = np.arange(0.0, DURATION_S, SAMPLE_S)
    xy = _path_xy(t)
    nwbfile = _nwbfile()
    _add_place_units(nwbfile, rng, t, xy)
    behavior = nwbfile.create_processing_module(name="behavior", description="tracking")
    position = Position(name="Position")
    position.create_spatial_series(name="position", data=xy, timestamps=t,
                                   reference_frame="arena corner", unit="cm")
    behavior.add(position)
    if head_direction:
        compass = CompassDirection(name="CompassDirection")
        compass.create_spatial_series(name="head_direction", data=np.mod(t, 2 * np.pi) - np.pi,
                                      timestamps=t, reference_frame="north", unit="radians")
        behavior.add(compass)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def write_task_file(path, *, n_trials=40, empty_mc_maze_events=False):
    """Units; trials with ``cue_time``, ``context`` (str) and ``reward_size`` (float)."""
    from pynwb import NWBHDF5IO

    rng = np.random.default_rng(1)
    nwbfile = _nwbfile()
    nwbfile.add_trial_column(name="cue_time", description="cue onset (s)")
    nwbfile.add_trial_column(name="context", description="block context")
    nwbfile.add_trial_column(name="reward_size", description="reward (ul)")
    if empty_mc_maze_events:
        for name in ("target_on_time", "go_cue_time", "move_onset_time"):
            nwbfile.add_trial_column(name=name, description="not recorded here")
    starts = np.arange(n_trials) * 3.0
    contexts = np.array(["light", "dark"])[np.arange(n_trials) % 2]
    for trial, start in enumerate(starts):
        extra = dict.fromkeys(("target_on_time", "go_cue_time", "move_onset_time"), np.nan) \
            if empty_mc_maze_events else {}
        nwbfile.add_trial(start_time=start, stop_time=start + 2.0, cue_time=start + 1.0,
                          context=contexts[trial], reward_size=float(trial % 4) + 0.5,
                          **extra)
    t = np.arange(0.0, starts[-1] + 3.0, 0.005)
    in_trial = t - np.floor(t / 3.0) * 3.0
    after_cue = (in_trial >= 1.0) & (in_trial < 2.0)
    for unit in range(8):
        rate = np.where(after_cue, 30.0, 4.0) if unit < 4 else np.full(len(t), 10.0)
        nwbfile.add_unit(spike_times=t[rng.random(len(t)) < rate * 0.005])
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


@pytest.fixture(scope="module")
def foraging_file(tmp_path_factory):
    return write_foraging_file(tmp_path_factory.mktemp("nwb") / "foraging.nwb",
                               head_direction=True)


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    return write_task_file(tmp_path_factory.mktemp("nwb") / "task.nwb")


def _settings(path, **options):
    return resolve({}, {"nwb_file": str(path), "quiet": True, **options})


# ---------------------------------------------------------------- reading


def test_load_nwb_keeps_what_each_series_is(foraging_file):
    recording = load_nwb(foraging_file)
    assert recording.trials is None
    assert recording.behaviour["position"].kind == "position"
    assert recording.behaviour["head_direction"].kind == "direction"


def test_behaviour_in_acquisition_but_no_raw_series(tmp_path):
    from pynwb import NWBHDF5IO, TimeSeries
    from pynwb.behavior import BehavioralTimeSeries

    nwbfile = _nwbfile()
    nwbfile.add_unit(spike_times=[0.5, 1.5])
    running = BehavioralTimeSeries(name="BehavioralTimeSeries")
    running.create_timeseries(name="running_speed", data=np.ones(10), rate=10.0, unit="cm/s")
    nwbfile.add_acquisition(running)
    nwbfile.add_acquisition(TimeSeries(name="raw_voltage", data=np.zeros(10), rate=10.0,
                                       unit="V"))
    with NWBHDF5IO(str(tmp_path / "acq.nwb"), "w") as io:
        io.write(nwbfile)
    recording = load_nwb(tmp_path / "acq.nwb")
    assert list(recording.behaviour) == ["running_speed"]
    assert recording.behaviour["running_speed"].kind == "signal"


# ---------------------------------------------------------------- variables


def test_place_cells_label_an_equal_width_grid():
    position = np.array([[0.0, 0.0], [9.9, 0.0], [10.0, 10.0], [np.nan, 1.0], [4.0, 6.0]])
    cells = place_cells(position, 2)
    assert list(cells.categories) == ["x [0, 5) y [0, 5)", "x [0, 5) y [5, 10)",
                                      "x [5, 10) y [0, 5)", "x [5, 10) y [5, 10)"]
    assert list(cells.astype(object)[:3]) == ["x [0, 5) y [0, 5)", "x [5, 10) y [0, 5)",
                                              "x [5, 10) y [5, 10)"]
    assert pd.isna(cells[3]) and cells[4] == "x [0, 5) y [5, 10)"
    linear = place_cells(np.array([[0.0], [3.0], [6.0]]), 3)
    assert list(linear.astype(object)) == ["[0, 2)", "[2, 4)", "[4, 6)"]


def test_direction_is_a_circular_mean_in_degrees():
    from sklearn_nldisco.datasets._recording import BehaviourSeries

    # samples on both sides of +-pi: the linear mean would be 0
    series = BehaviourSeries([0.0, 0.1, 1.0, 1.1], np.radians([179.0, -179.0, 90.0, 90.0]),
                             unit="radians", kind="direction")
    degrees = direction_columns("heading", series, np.array([[0.0, 0.5], [1.0, 1.5]]))
    assert abs(abs(degrees["heading"].iloc[0]) - 180.0) < 1e-6
    assert degrees["heading"].iloc[1] == pytest.approx(90.0)


# ---------------------------------------------------------------- no trials


def test_no_trials_bins_whole_recording_in_held_out_blocks(foraging_file):
    settings = _settings(foraging_file, block_duration=10.0)
    loaded = load(settings)
    assert len(loaded.recording.trials) == 0
    binned = bin_spikes(loaded, settings)
    blocks = binned.metadata["interval_id"].to_numpy()
    assert binned.block_duration == pytest.approx(10.0)
    assert len(np.unique(blocks)) == 12
    assert (binned.metadata["trial_id"] == -1).all()
    data = split(binned, settings["seed"], loaded.source)
    held_out = np.unique(data.metadata_test["interval_id"])
    # every fifth block, whole: no held-out block has a training bin
    assert np.all(np.diff(held_out) == 5)
    assert len(data.metadata_test) == np.isin(blocks, held_out).sum()
    assert "every fifth time block" in data.how
    assert {"position_cell", "position_speed", "position_heading_deg",
            "head_direction"} <= set(binned.variables.names)
    assert {"position_heading_deg", "head_direction"} <= set(binned.variables.angles)
    assert binned.variables.trial_level == ()


def test_run_without_trials_scores_position(foraging_file, tmp_path, one_torch_thread):
    out = tmp_path / "run"
    assert main(["run", str(foraging_file), "--out", str(out), *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_trials"] == 0
    assert "time block" in metrics["split"]
    assert {"position_cell", "position_speed",
            "position_heading_deg"} <= set(metrics["selectivity_variables"])
    table = pd.read_csv(out / "selectivity.csv")
    cells = table.loc[table["variable"] == "position_cell", "condition"]
    assert len(cells) and cells.str.match(r"x \[[-\d.]+, [-\d.]+\) y \[").all()
    report = (out / "report.html").read_text()
    assert "position_cell" in report and "x [" in report
    # the latent cards trace held-out time blocks, there being no trials
    assert re.search(r'"label": ?"time block \d+"', report)


# ---------------------------------------------------------------- trials of a user's task


def test_run_with_a_user_event_scores_phases_and_trial_columns(task_file, tmp_path,
                                                                one_torch_thread):
    out = tmp_path / "run"
    assert main(["run", str(task_file), "--out", str(out), "--events", "cue_time",
                 *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_trials"] == 40
    assert metrics["selectivity_variables"] == ["phase", "context", "reward_size"]
    table = pd.read_csv(out / "selectivity.csv")
    assert set(table.loc[table["variable"] == "phase", "condition"]) == {"start", "cue"}
    assert set(table.loc[table["variable"] == "context", "condition"]) == {"light", "dark"}
    assert table.loc[table["variable"] == "reward_size", "condition"].nunique() >= 2
    # the cue drives half of the units: some latent is selective for it
    cue = table.loc[(table["variable"] == "phase") & (table["condition"] == "cue")]
    assert cue["selectivity"].max() > 0.6


def test_catalogue_names_the_metadata_columns(task_file, foraging_file):
    for path, options in ((task_file, {"events": ("cue_time",)}), (foraging_file, {})):
        settings = _settings(path, **options)
        binned = bin_spikes(load(settings), settings)
        columns = [column for column in binned.metadata.columns if column not in BOOKKEEPING]
        recording = load(settings).recording
        offered = catalogue(recording, choose_events(recording, settings["events"], "here"))
        assert set(offered.available) == set(columns)


def test_without_events_no_phase_and_chosen_variables(task_file):
    settings = _settings(task_file)
    binned = bin_spikes(load(settings), settings)
    assert binned.variables.names == ("context", "reward_size")
    assert binned.variables.trial_level == ("context", "reward_size")
    assert "phase" not in binned.metadata and "cue_time" not in binned.variables.names
    settings = _settings(task_file, events=("cue_time",), variables=("phase",))
    binned = bin_spikes(load(settings), settings)
    assert binned.variables.names == ("phase",)
    assert list(binned.metadata["phase"].cat.categories) == ["start", "cue"]


def test_empty_mc_maze_event_columns_are_not_events(tmp_path):
    path = write_task_file(tmp_path / "empty_events.nwb", empty_mc_maze_events=True)
    settings = _settings(path)
    binned = bin_spikes(load(settings), settings)
    assert binned.variables.names == ("context", "reward_size")


def test_config_keys_of_the_new_settings(task_file, tmp_path):
    import tomllib

    from sklearn_nldisco._cli._config import read_config, write_config

    config = tmp_path / "run.toml"
    config.write_text('events = ["cue_time"]\nvariables = ["phase", "context"]\n'
                      "block_duration = 30.0\nplace_grid = 8\n")
    settings = resolve(read_config(config), {})
    assert settings["events"] == ("cue_time",) and settings["variables"] == ("phase", "context")
    write_config(settings, tmp_path / "written.toml")
    written = tomllib.loads((tmp_path / "written.toml").read_text())
    assert written["events"] == ["cue_time"] and written["place_grid"] == 8


# ---------------------------------------------------------------- one-line errors


@pytest.mark.parametrize("which, options, message", [
    ("task", ["--events", "reward_time"], "--events names ['reward_time']"),
    ("task", ["--events", "context"], "not event times"),
    ("task", ["--variables", "position_cell"], "--variables names ['position_cell']"),
    ("task", ["--variables", "phase"], "--variables names ['phase']"),
    ("foraging", ["--events", "cue_time"], "has no trials table"),
    ("foraging", ["--block-duration", "500"], "fewer than two blocks"),
    ("foraging", ["--variables", "all,position_cell"], "'all' stands alone"),
    ("foraging", ["--place-grid", "1"], "--place-grid must be >= 2"),
    ("foraging", ["--block-duration", "0"], "--block-duration must be"),
])
def test_what_the_file_lacks_is_one_line(task_file, foraging_file, tmp_path, capsys, which,
                                          options, message):
    path = task_file if which == "task" else foraging_file
    line = error_line(capsys, ["run", str(path), "--out", str(tmp_path / "out"), *options])
    assert message in line
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_a_constant_variable_named_is_an_error(tmp_path, capsys):
    from pynwb import NWBHDF5IO

    nwbfile = _nwbfile()
    nwbfile.add_trial_column(name="animal", description="one animal")
    for trial in range(6):
        nwbfile.add_trial(start_time=trial * 2.0, stop_time=trial * 2.0 + 1.0, animal="m1")
    nwbfile.add_unit(spike_times=np.linspace(0.01, 11.9, 300))
    with NWBHDF5IO(str(tmp_path / "constant.nwb"), "w") as io:
        io.write(nwbfile)
    # found once the bins are labelled, after the first progress lines: --quiet leaves one
    line = error_line(capsys, ["run", str(tmp_path / "constant.nwb"), "--out",
                                str(tmp_path / "out"), "--variables", "animal", "--k", "1",
                                "--quiet"])  # --k 1: one unit (more than k is refused first)
    assert "--variables ['animal']: fewer than two conditions" in line
