"""Reading and writing recordings as NWB files."""

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pynwb import NWBHDF5IO, TimeSeries
from pynwb.behavior import BehavioralTimeSeries, Position, SpatialSeries
from pynwb.testing.mock.behavior import mock_SpatialSeries
from pynwb.testing.mock.ecephys import mock_Units
from pynwb.testing.mock.file import mock_NWBFile

from sklearn_nldisco.datasets import MC_MAZE_BEHAVIOUR, MC_MAZE_TRIAL_COLUMNS
from sklearn_nldisco.datasets._nwb import load_mc_maze, load_nwb, write_nwb
from sklearn_nldisco.datasets._recording import BehaviourSeries, Recording
from sklearn_nldisco.datasets._simulate import make_reaching_session


def _write(nwbfile, path):
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def _assert_frames_equal(actual, expected):
    """Frames equal with dtypes and index; object columns compared per cell."""
    assert list(actual.columns) == list(expected.columns)
    pd.testing.assert_index_equal(actual.index, expected.index, exact=True)
    for name in expected.columns:
        left, right = actual[name], expected[name]
        assert left.dtype == right.dtype, (name, left.dtype, right.dtype)
        if right.dtype == object and len(right) and isinstance(right.iloc[0], np.ndarray):
            for a, b in zip(left, right):
                assert a.dtype == b.dtype and np.array_equal(a, b), name
        else:
            pd.testing.assert_series_equal(left, right, check_exact=True)


def _assert_recordings_equal(actual, expected):
    assert actual.n_units == expected.n_units
    for a, b in zip(actual.spike_times, expected.spike_times):
        assert a.dtype == np.float64
        assert np.array_equal(a, b)
    _assert_frames_equal(actual.units, expected.units)
    _assert_frames_equal(actual.trials, expected.trials)
    assert sorted(actual.behaviour) == sorted(expected.behaviour)
    for name, series in expected.behaviour.items():
        read = actual.behaviour[name]
        assert np.array_equal(read.timestamps, series.timestamps)
        assert read.data.dtype == series.data.dtype
        assert np.array_equal(read.data, series.data)
        assert read.unit == series.unit
    assert actual.session_id == expected.session_id
    assert actual.description == expected.description


@pytest.fixture(scope="module")
def simulated():
    recording, _ = make_reaching_session(n_units=12, n_trials=16, random_state=3)
    return recording


@pytest.fixture(scope="module")
def simulated_file(simulated, tmp_path_factory):
    path = tmp_path_factory.mktemp("nwb") / "simulated.nwb"
    write_nwb(simulated, path)
    return path


def test_simulated_session_round_trip_is_lossless(simulated, simulated_file):
    _assert_recordings_equal(load_nwb(simulated_file), simulated)


def test_every_column_type_round_trips(tmp_path):
    spike_times = [np.array([0.1, 0.25, 1.0]), np.array([]), np.array([0.5])]
    unit_ids = pd.Index([4, 11, 12], name="unit_id")
    trial_ids = pd.Index([100, 205], name="trial_id")
    units = pd.DataFrame(
        {
            "heldout": [False, True, False],
            "electrode_group": ["M1", "PMd", "M1"],
            "obs_intervals": pd.Series(
                [np.array([[0.0, 2.0]]), np.array([[0.0, 1.0], [1.5, 2.0]]), np.array([[0, 2.0]])],
                index=unit_ids,
                dtype=object,
            ),
            "depth_um": np.array([10.0, np.nan, 30.0], dtype=np.float32),
        },
        index=unit_ids,
    )
    trials = pd.DataFrame(
        {
            "start_time": [0.0, 1.0],
            "stop_time": [0.9, 2.0],
            "move_onset_time": [0.5, np.nan],
            "maze_id": np.array([3, 7], dtype=np.int32),
            "num_targets": np.array([1, 3], dtype=np.uint8),
            "success": [True, False],
            "split": ["train", "test"],
            "target_pos": pd.Series(
                [np.array([[10.0, 20.0]]), np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])],
                index=trial_ids,
                dtype=object,
            ),
            "barrier_ids": pd.Series(
                [np.array([], dtype=np.int64), np.array([2, 5])], index=trial_ids, dtype=object
            ),
        },
        index=trial_ids,
    )
    behaviour = {
        "hand_pos": BehaviourSeries(np.arange(5) / 1000, np.arange(10.0).reshape(5, 2), "mm"),
        "eye_pos": BehaviourSeries(np.arange(5) / 1000, np.arange(10.0).reshape(5, 2), "mm"),
        "lever": BehaviourSeries([0.0, 0.3, 0.7], np.array([1, 0, 1], dtype=np.int16), "a.u."),
        "joint_angles": BehaviourSeries(np.arange(3) / 10, np.ones((3, 5)), "deg"),
    }
    recording = Recording(spike_times, units, trials, behaviour, "session-7", "a test session")
    path = tmp_path / "types.nwb"
    write_nwb(recording, path)
    _assert_recordings_equal(load_nwb(path), recording)


def test_write_layout_mimics_mc_maze(simulated_file):
    with h5py.File(simulated_file, "r") as file:
        behaviour = file["processing/behavior"]
        assert set(behaviour) == {"hand_pos", "hand_vel"}
        assert behaviour["hand_pos"].attrs["neurodata_type"] == "SpatialSeries"
        assert behaviour["hand_vel"].attrs["neurodata_type"] == "TimeSeries"
        # identical timestamps are stored once and linked
        link = behaviour["hand_vel"].get("timestamps", getlink=True)
        assert isinstance(link, h5py.SoftLink)
        assert "spike_times" in file["units"]


def _mc_maze_like(path, *, with_behaviour=True):
    """A small file laid out like the MC_Maze training files."""
    nwbfile = mock_NWBFile(session_description="maze reaching", session_id="Jenkins-small")
    device = nwbfile.create_device(name="electrode_array", description="Utah arrays")
    groups = [
        nwbfile.create_electrode_group(
            name=area, description=f"{area} array", location=area, device=device
        )
        for area in ("M1", "PMd")
    ]
    for channel in range(4):
        nwbfile.add_electrode(group=groups[channel // 2], location=groups[channel // 2].location)
    nwbfile.add_unit_column(name="heldout", description="held-out unit")
    rng = np.random.default_rng(0)
    spike_times = [np.sort(rng.uniform(0, 3, size)) for size in (5, 1, 8, 3)]
    for unit, times in enumerate(spike_times):
        nwbfile.add_unit(
            spike_times=times,
            obs_intervals=np.array([[0.0, 3.0]]),
            electrodes=[unit],
            heldout=unit == 3,
        )
    columns = {
        "trial_type": "condition id",
        "trial_version": "condition version",
        "maze_id": "maze",
        "success": "successful trial",
        "target_on_time": "target onset",
        "go_cue_time": "go cue",
        "move_onset_time": "movement onset",
        "rt": "reaction time (ms)",
        "delay": "delay (ms)",
        "num_targets": "number of targets",
        "num_barriers": "number of barriers",
        "active_target": "index of the reached target",
        "split": "train, val or test",
    }
    for name, description in columns.items():
        nwbfile.add_trial_column(name=name, description=description)
    nwbfile.add_trial_column(name="target_pos", description="targets (mm)", index=True)
    for trial in range(3):
        start = trial * 1.0
        nwbfile.add_trial(
            start_time=start,
            stop_time=start + 0.9,
            trial_type=trial + 1,
            trial_version=trial % 2,
            maze_id=10 + trial,
            success=trial != 1,
            target_on_time=start + 0.1,
            go_cue_time=start + 0.4,
            move_onset_time=start + 0.6,
            rt=200.0,
            delay=300.0,
            num_targets=trial + 1,
            num_barriers=0,
            active_target=0,
            split=("train", "val", "train")[trial],
            target_pos=rng.normal(size=(trial + 1, 2)),
        )
    if with_behaviour:
        module = nwbfile.create_processing_module(name="behavior", description="behaviour")
        timestamps = np.arange(3000) / 1000
        hand_pos = SpatialSeries(
            name="hand_pos", data=rng.normal(size=(3000, 2)), timestamps=timestamps,
            reference_frame="screen centre", unit="mm",
        )
        module.add(hand_pos)
        for name in ("cursor_pos", "eye_pos"):
            module.add(SpatialSeries(
                name=name, data=rng.normal(size=(3000, 2)), timestamps=hand_pos,
                reference_frame="screen centre", unit="mm",
            ))
        module.add(TimeSeries(
            name="hand_vel", data=rng.normal(size=(3000, 2)), timestamps=hand_pos, unit="mm/s",
        ))
    _write(nwbfile, path)
    return spike_times


def test_mc_maze_layout_is_read(tmp_path):
    path = tmp_path / "sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb"
    spike_times = _mc_maze_like(path)
    recording = load_mc_maze(path)
    assert recording.session_id == "Jenkins-small"
    assert all(np.array_equal(a, b) for a, b in zip(recording.spike_times, spike_times))
    units = recording.units
    assert units.index.tolist() == [0, 1, 2, 3]
    assert units["heldout"].tolist() == [False, False, False, True]
    assert units["electrode_group"].tolist() == ["M1", "M1", "PMd", "PMd"]
    assert np.array_equal(units["obs_intervals"].iloc[0], [[0.0, 3.0]])
    trials = recording.trials
    assert trials.index.name == "trial_id" and trials.index.tolist() == [0, 1, 2]
    assert set(MC_MAZE_TRIAL_COLUMNS) <= set(trials.columns)
    assert trials["success"].dtype == bool
    assert trials["split"].tolist() == ["train", "val", "train"]
    assert [len(pos) for pos in trials["target_pos"]] == [1, 2, 3]
    assert list(recording.behaviour) == list(MC_MAZE_BEHAVIOUR)
    for series in recording.behaviour.values():
        assert series.data.shape == (3000, 2)
        assert series.timestamps[1] == 0.001
    assert recording.behaviour["hand_vel"].unit == "mm/s"


def test_test_split_file_without_behaviour_names_what_is_missing(tmp_path):
    path = tmp_path / "sub-Jenkins_ses-small_desc-test_ecephys.nwb"
    _mc_maze_like(path, with_behaviour=False)
    with pytest.raises(ValueError, match=r"desc-test_ecephys\.nwb lacks .*'hand_pos'"):
        load_mc_maze(path)
    # it still reads without asking for behaviour
    assert load_nwb(path).behaviour == {}
    assert load_mc_maze(path, behaviour=()).n_units == 4


def test_missing_required_field_names_field_and_file(tmp_path):
    nwbfile = mock_NWBFile()
    mock_Units(num_units=3, nwbfile=nwbfile)
    nwbfile.add_trial(start_time=0.0, stop_time=1.0)
    path = _write(nwbfile, tmp_path / "mock.nwb")
    for field in ("hand_vel", "move_onset_time", "heldout"):
        with pytest.raises(ValueError, match=rf"mock\.nwb lacks the required field\(s\) '{field}'"):
            load_nwb(path, require=(field,))
    with pytest.raises(ValueError, match="'eye_pos'"):
        load_nwb(path, behaviour=("eye_pos",))
    recording = load_nwb(path, require=("unit_name", "start_time"))
    assert recording.n_units == 3
    assert recording.units["unit_name"].tolist() == ["unit_0", "unit_1", "unit_2"]


def test_behaviour_in_containers_and_at_a_fixed_rate(tmp_path):
    nwbfile = mock_NWBFile()
    module = nwbfile.create_processing_module(name="behavior", description="behaviour")
    position = Position(name="Position")
    position.add_spatial_series(mock_SpatialSeries(
        name="hand_pos", data=np.arange(8.0).reshape(4, 2), timestamps=[0.0, 0.1, 0.2, 0.4],
        rate=None,
    ))
    module.add(position)
    velocity = BehavioralTimeSeries(name="Velocity")
    velocity.add_timeseries(TimeSeries(
        name="hand_vel", data=np.arange(6, dtype=np.int32).reshape(3, 2), unit="mm/s",
        conversion=0.5, offset=1.0, starting_time=2.0, rate=100.0,
    ))
    module.add(velocity)
    path = _write(nwbfile, tmp_path / "containers.nwb")

    behaviour = load_nwb(path).behaviour
    assert list(behaviour) == ["hand_pos", "hand_vel"]
    assert np.array_equal(behaviour["hand_pos"].timestamps, [0.0, 0.1, 0.2, 0.4])
    assert np.allclose(behaviour["hand_vel"].timestamps, [2.0, 2.01, 2.02])
    assert np.array_equal(behaviour["hand_vel"].data, np.arange(6).reshape(3, 2) * 0.5 + 1.0)
    only = load_nwb(path, behaviour=("hand_vel",)).behaviour
    assert list(only) == ["hand_vel"]
    assert load_nwb(path, behaviour=()).behaviour == {}


def test_missing_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.nwb"):
        load_nwb(tmp_path / "absent.nwb")
    text = tmp_path / "notes.nwb"
    text.write_text("not an NWB file")
    with pytest.raises(ValueError, match="notes.nwb is not an NWB file"):
        load_nwb(text)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as file:
        file["x"] = np.arange(3)
    with pytest.raises(ValueError, match="plain.h5"):
        load_nwb(plain)


def test_write_refuses_to_overwrite_unless_asked(simulated, simulated_file):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_nwb(simulated, simulated_file)
    write_nwb(simulated, simulated_file, overwrite=True)
    assert load_nwb(simulated_file).n_units == simulated.n_units


def test_write_rejects_what_nwb_cannot_hold(simulated, tmp_path):
    renamed = Recording(
        simulated.spike_times,
        simulated.units.set_axis([f"u{i}" for i in range(simulated.n_units)]),
        simulated.trials,
    )
    with pytest.raises(ValueError, match="index of recording.units"):
        write_nwb(renamed, tmp_path / "a.nwb")
    dated = simulated.trials.assign(when=pd.Timestamp("2020-01-01"))
    with pytest.raises(TypeError, match="'when'"):
        write_nwb(Recording(simulated.spike_times, simulated.units, dated), tmp_path / "b.nwb")
    gaps = simulated.trials.assign(note=["a", None] * (len(simulated.trials) // 2))
    with pytest.raises(ValueError, match="'note'.*missing"):
        write_nwb(Recording(simulated.spike_times, simulated.units, gaps), tmp_path / "c.nwb")
    with pytest.raises(TypeError, match="Recording"):
        write_nwb({"spike_times": []}, tmp_path / "d.nwb")


spike_train = st.lists(
    st.floats(0.0, 1e4, allow_nan=False, allow_infinity=False), max_size=30
).map(lambda times: np.sort(np.asarray(times, dtype=np.float64)))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spike_train, min_size=1, max_size=6))
def test_any_spike_trains_round_trip_bitwise(trains):
    recording = Recording(trains, pd.DataFrame(index=pd.RangeIndex(len(trains))))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trains.nwb"
        write_nwb(recording, path)
        loaded = load_nwb(path)
    assert loaded.trials is None and loaded.behaviour == {}
    assert len(loaded.spike_times) == len(trains)
    for read, written in zip(loaded.spike_times, trains):
        assert np.array_equal(read, written)
