"""Saving and loading sparse latent activations keyed by bin label."""

import ast
import inspect
import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sklearn_nldisco.interpretation import _activations as activations_module
from sklearn_nldisco.interpretation._activations import (
    FORMAT_NAME,
    Activations,
    load_activations,
    save_activations,
)


def _codes(dtype=np.float64, n_bins=40, n_latents=12, density=0.2, seed=0):
    rng = np.random.RandomState(seed)
    return sp.random(
        n_bins, n_latents, density=density, format="csr", dtype=dtype, random_state=rng
    )


def _assert_same_csr(loaded, expected):
    expected = sp.csr_matrix(expected, copy=True)
    expected.sum_duplicates()
    expected.eliminate_zeros()
    assert sp.isspmatrix_csr(loaded)
    assert loaded.shape == expected.shape
    assert loaded.dtype == expected.dtype
    np.testing.assert_array_equal(loaded.indptr, expected.indptr)
    np.testing.assert_array_equal(loaded.indices, expected.indices)
    # Bitwise, not approximately.
    assert loaded.data.tobytes() == expected.data.tobytes()


def _members(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bitwise(tmp_path, dtype):
    codes = _codes(dtype)
    codes.data = (codes.data * np.pi).astype(dtype)
    path = tmp_path / "acts.npz"
    save_activations(path, codes, latent_names=[f"L{i}" for i in range(12)])
    acts = load_activations(path)
    assert isinstance(acts, Activations)
    _assert_same_csr(acts.codes, codes)
    pd.testing.assert_index_equal(acts.bin_index, pd.Index(np.arange(40)))
    assert acts.run == 0
    assert acts.latent_names.tolist() == [f"L{i}" for i in range(12)]


def test_path_is_used_as_given(tmp_path):
    path = tmp_path / "session.acts"
    save_activations(str(path), _codes())
    assert path.exists() and not (tmp_path / "session.acts.npz").exists()


def test_dense_input_matches_sparse(tmp_path):
    codes = _codes(np.float32)
    save_activations(tmp_path / "a", codes.toarray())
    _assert_same_csr(load_activations(tmp_path / "a").codes, codes)


def test_explicit_zeros_and_duplicates_are_canonicalised(tmp_path):
    coo = sp.coo_matrix(
        (
            np.array([1.0, 0.0, 2.0, 3.0, -0.0]),
            (np.array([0, 0, 1, 1, 2]), np.array([1, 0, 2, 2, 0])),
        ),
        shape=(3, 3),
    )
    save_activations(tmp_path / "a", coo)
    members = _members(tmp_path / "a")
    # Zeros are not stored; the repeated entry is summed.
    assert members["value"].tolist() == [1.0, 5.0]
    assert members["bin"].tolist() == [0, 1]
    assert members["latent"].tolist() == [1, 2]
    codes = load_activations(tmp_path / "a").codes
    assert codes.nnz == 2 and codes.has_canonical_format
    np.testing.assert_array_equal(codes.toarray(), coo.toarray())


def test_file_members_follow_documented_format(tmp_path):
    save_activations(tmp_path / "a", _codes(np.float32), bin_index=np.arange(40) * 3)
    members = _members(tmp_path / "a")
    assert members["format"].item() == FORMAT_NAME
    assert members["format_version"].item() == 1
    assert all(array.dtype.kind != "O" for array in members.values())
    for key in ("bin", "latent", "run", "n_bins", "n_latents"):
        assert members[key].dtype == np.int64, key
    assert members["value"].dtype == np.float32


def test_several_runs_in_one_file(tmp_path):
    runs = {
        "mouse1": _codes(n_bins=30, seed=1),
        "mouse2": _codes(n_bins=50, seed=2),
    }
    bins = {"mouse2": pd.Index(np.arange(50) * 2 + 1000, name="bin")}
    save_activations(tmp_path / "a", runs, bin_index=bins)
    for run, codes in runs.items():
        acts = load_activations(tmp_path / "a", run=run)
        assert acts.run == run
        _assert_same_csr(acts.codes, codes)
    mouse2 = load_activations(tmp_path / "a", run="mouse2")
    pd.testing.assert_index_equal(mouse2.bin_index, bins["mouse2"])
    assert load_activations(tmp_path / "a", run="mouse1").bin_index.tolist() == list(range(30))
    with pytest.raises(ValueError, match="holds 2 runs"):
        load_activations(tmp_path / "a")


def test_integer_run_labels(tmp_path):
    save_activations(tmp_path / "a", {3: _codes(seed=3), 7: _codes(seed=7)})
    acts = load_activations(tmp_path / "a", run=np.int64(7))
    assert acts.run == 7 and isinstance(acts.run, int)
    _assert_same_csr(acts.codes, _codes(seed=7))
    with pytest.raises(ValueError, match="run '7' is not in"):
        load_activations(tmp_path / "a", run="7")


@pytest.mark.parametrize(
    "bin_index",
    [
        pd.Index([0, 1, 5, 6, 20], name="bin"),
        pd.Index(np.array([2, 4, 8, 16, 32], dtype=np.int32)),
        pd.Index(["t0", "t1", "trial-3", "x", "é"], name="label"),
        pd.Index([0.5, 1.5, 2.5, 10.0, 11.0]),
    ],
    ids=["int-gaps", "int32", "str", "float"],
)
def test_bin_index_is_preserved(tmp_path, bin_index):
    codes = _codes(n_bins=5, seed=4)
    save_activations(tmp_path / "a", codes, bin_index=bin_index)
    acts = load_activations(tmp_path / "a")
    pd.testing.assert_index_equal(acts.bin_index, bin_index)
    _assert_same_csr(acts.codes, codes)


def test_join_with_shuffled_metadata_aligns_by_bin(tmp_path):
    n_bins = 60
    bins = pd.Index(np.arange(n_bins) * 7 + 3, name="bin")
    codes = _codes(n_bins=n_bins, seed=5)
    metadata = pd.DataFrame(
        {"bin_copy": bins.to_numpy(), "speed": np.arange(n_bins) / 10.0}, index=bins
    )
    save_activations(tmp_path / "a", codes, metadata=metadata)
    acts = load_activations(tmp_path / "a")

    shuffled = metadata.sample(frac=1.0, random_state=0)
    assert not shuffled.index.equals(metadata.index)
    aligned = acts.align(shuffled)
    pd.testing.assert_frame_equal(aligned, metadata)

    joined = acts.join(shuffled)
    assert len(joined) == codes.nnz
    np.testing.assert_array_equal(joined["bin"], joined["bin_copy"])
    row = np.repeat(np.arange(n_bins), np.diff(codes.indptr))
    np.testing.assert_array_equal(joined["speed"], row / 10.0)
    np.testing.assert_array_equal(joined["value"], codes.data)

    # Metadata with extra bins is fine; missing bins are an error.
    with pytest.raises(ValueError, match="lacks 1 of the 60 bins"):
        acts.align(shuffled.drop(index=bins[4]))
    with pytest.raises(ValueError, match="unique bin labels"):
        acts.align(pd.concat([metadata, metadata.iloc[:1]]))
    with pytest.raises(ValueError, match="clash"):
        acts.join(metadata.rename(columns={"speed": "value"}))


def test_to_frame_long_form(tmp_path):
    codes = sp.csr_matrix(np.array([[0, 1.0], [2.0, 3.0]]))
    save_activations(tmp_path / "a", codes, bin_index=["x", "y"], run="r", latent_names=["a", "b"])
    frame = load_activations(tmp_path / "a").to_frame()
    assert list(frame.columns) == ["run", "bin", "latent", "value", "latent_name"]
    assert frame["bin"].tolist() == ["x", "y", "y"]
    assert frame["latent"].tolist() == [1, 0, 1]
    assert frame["value"].tolist() == [1.0, 2.0, 3.0]
    assert frame["latent_name"].tolist() == ["b", "a", "b"]
    assert (frame["run"] == "r").all()


def test_empty_codes(tmp_path):
    codes = sp.csr_matrix((4, 3), dtype=np.float32)
    save_activations(tmp_path / "a", codes)
    acts = load_activations(tmp_path / "a")
    _assert_same_csr(acts.codes, codes)
    assert acts.latent_names is None


class _Payload:
    """Records that unpickling happened."""

    loaded = False

    def __reduce__(self):
        return (_mark_loaded, ())


def _mark_loaded():
    _Payload.loaded = True
    return "payload"


def test_object_array_is_rejected_without_unpickling(tmp_path, monkeypatch):
    save_activations(tmp_path / "good", _codes())
    members = _members(tmp_path / "good")
    members["bin_index"] = np.array([_Payload()] * 40, dtype=object)
    np.savez_compressed(tmp_path / "evil.npz", **members)

    def forbidden(*args, **kwargs):
        raise AssertionError("loading must not unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    _Payload.loaded = False
    with pytest.raises(ValueError, match="without unpickling"):
        load_activations(tmp_path / "evil.npz")
    assert not _Payload.loaded


def test_pickle_file_is_rejected_without_unpickling(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Payload()))
    _Payload.loaded = False
    with pytest.raises(ValueError, match="not an activations file"):
        load_activations(path)
    assert not _Payload.loaded


def test_not_an_activations_file(tmp_path):
    np.savez_compressed(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(ValueError, match="lacks the members"):
        load_activations(tmp_path / "other.npz")
    np.save(tmp_path / "single.npy", np.arange(3))
    with pytest.raises(ValueError, match="single array"):
        load_activations(tmp_path / "single.npy")


def test_wrong_format_version(tmp_path):
    save_activations(tmp_path / "a", _codes())
    members = _members(tmp_path / "a")
    members["format_version"] = np.array(2, dtype=np.int64)
    np.savez_compressed(tmp_path / "b.npz", **members)
    with pytest.raises(ValueError, match="format version 2"):
        load_activations(tmp_path / "b.npz")


def test_corrupt_positions_are_rejected(tmp_path):
    save_activations(tmp_path / "a", _codes())
    members = _members(tmp_path / "a")
    members["latent"][0] = 99
    np.savez_compressed(tmp_path / "b.npz", **members)
    with pytest.raises(ValueError, match="latent positions outside"):
        load_activations(tmp_path / "b.npz")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(bin_index=np.arange(39)), "one label per bin \\(40\\); got 39"),
        (dict(bin_index=np.r_[np.arange(39), 0]), "unique labels; \\[0\\]"),
        (dict(latent_names=["a"]), "one name per latent"),
        (dict(metadata=pd.DataFrame(index=np.arange(40)), bin_index=np.arange(40) + 1), "differs"),
    ],
    ids=["length", "duplicates", "latent-names", "metadata-mismatch"],
)
def test_save_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        save_activations(tmp_path / "a", _codes(), **kwargs)


def test_non_finite_values_are_rejected(tmp_path):
    codes = _codes()
    codes.data[3] = np.nan
    with pytest.raises(ValueError, match="must be finite; found 1"):
        save_activations(tmp_path / "a", codes)
    dense = np.zeros((2, 2))
    dense[1, 1] = np.inf
    with pytest.raises(ValueError, match="must be finite"):
        save_activations(tmp_path / "a", dense)


def test_runs_must_agree(tmp_path):
    with pytest.raises(ValueError, match="same number of latents"):
        save_activations(tmp_path / "a", {0: _codes(), 1: _codes(n_latents=5)})
    with pytest.raises(ValueError, match="same dtype"):
        save_activations(tmp_path / "a", {0: _codes(), 1: _codes(np.float32)})
    with pytest.raises(ValueError, match="run must be None"):
        save_activations(tmp_path / "a", {0: _codes()}, run=1)
    with pytest.raises(ValueError, match="unknown runs"):
        save_activations(tmp_path / "a", {0: _codes()}, bin_index={1: np.arange(40)})
    with pytest.raises(ValueError, match="all strings or all numbers"):
        save_activations(
            tmp_path / "a", {0: _codes(), 1: _codes()}, bin_index={1: [str(i) for i in range(40)]}
        )
    with pytest.raises(TypeError, match="all integers or all strings"):
        save_activations(tmp_path / "a", {0: _codes(), "b": _codes()})


def test_unsupported_types(tmp_path):
    with pytest.raises(TypeError, match="bool, integer or float"):
        save_activations(tmp_path / "a", np.array([[1 + 2j]]))
    with pytest.raises(TypeError, match="numbers or strings"):
        save_activations(tmp_path / "a", np.ones((2, 1)), bin_index=[1, "a"])


def test_module_does_not_import_torch_or_models():
    import subprocess
    import sys

    code = (
        "import sys; import sklearn_nldisco.interpretation._activations; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    tree = ast.parse(inspect.getsource(activations_module))
    nodes = list(ast.walk(tree))
    imported = [a.name for n in nodes if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in nodes if isinstance(n, ast.ImportFrom)]
    assert not [name for name in imported if "torch" in name or "models" in name]
