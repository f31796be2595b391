"""Hostile and damaged activation files: clear errors, no large allocations.

Files written by ``save_activations`` are truncated, corrupted at seeded byte
offsets, and rewritten with hostile members or headers. ``load_activations``
must answer every one with a ``ValueError`` that names the file (or, for a
byte whose change does not matter, the original activations), and must refuse
a small file that declares huge arrays without allocating their size.
"""

import io
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_nldisco.interpretation._activations import (
    load_activations,
    save_activations,
)

RUNS = ("a", "b")


def _codes(n_bins, seed):
    rng = np.random.RandomState(seed)
    return sp.random(
        n_bins, 8, density=0.3, format="csr", dtype=np.float32, random_state=rng
    )


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.acts"
    save_activations(
        path,
        {"a": _codes(50, 0), "b": _codes(30, 1)},
        bin_index={"b": np.arange(100, 130)},
        latent_names=[f"z{i}" for i in range(8)],
    )
    return path


def _members(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npy_header(shape, descr="<i8"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def _write_archive(path, members, raw=None, compression=zipfile.ZIP_DEFLATED):
    """An .npz archive of ``members``, with ``raw`` member bytes in their place."""
    raw = raw or {}
    with zipfile.ZipFile(path, "w", compression) as archive:
        for key, value in members.items():
            if key not in raw:
                archive.writestr(f"{key}.npy", _npy_bytes(value))
        for key, data in raw.items():
            archive.writestr(f"{key}.npy", data)
    return path


def _same(loaded, expected):
    return (
        loaded.run == expected.run
        and loaded.codes.shape == expected.codes.shape
        and loaded.codes.dtype == expected.codes.dtype
        and (loaded.codes != expected.codes).nnz == 0
        and loaded.bin_index.equals(expected.bin_index)
        and loaded.bin_index.name == expected.bin_index.name
        and np.array_equal(loaded.latent_names, expected.latent_names)
    )


def _assert_names_file(excinfo, path):
    message = str(excinfo.value)
    assert repr(path) in message
    assert "\n" not in message


def _peak_bytes(function):
    """Peak traced allocation while calling ``function`` (which must raise)."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as excinfo:
            function()
        return tracemalloc.get_traced_memory()[1], excinfo
    finally:
        tracemalloc.stop()


# -- truncated and corrupted files -----------------------------------------


def test_truncated_files_raise_value_error(good_file, tmp_path):
    data = good_file.read_bytes()
    rng = np.random.default_rng(15)
    offsets = [0, 1, 4, len(data) - 22, len(data) - 1, *rng.integers(5, len(data), 25)]
    for offset in offsets:
        path = tmp_path / f"truncated_{offset}.acts"
        path.write_bytes(data[:offset])
        with pytest.raises(ValueError) as excinfo:
            load_activations(path, run="a")
        _assert_names_file(excinfo, path)


def test_corrupted_bytes_raise_value_error_or_change_nothing(good_file, tmp_path):
    expected = {run: load_activations(good_file, run=run) for run in RUNS}
    data = good_file.read_bytes()
    rng = np.random.default_rng(8)
    n_refused = 0
    for offset in rng.choice(len(data), size=60, replace=False):
        corrupted = bytearray(data)
        corrupted[offset] ^= int(rng.integers(1, 256))
        path = tmp_path / f"corrupted_{offset}.acts"
        path.write_bytes(bytes(corrupted))
        for run in RUNS:
            try:
                loaded = load_activations(path, run=run)
            except ValueError as exc:
                assert repr(path) in str(exc)
                n_refused += 1
            else:
                # Bytes outside the data (timestamps, attributes) may change
                # freely; the activations may not.
                assert _same(loaded, expected[run]), offset
    assert n_refused > 60  # most changes hit compressed data or its CRC


def test_damaged_file_object_raises_value_error(good_file):
    data = bytearray(good_file.read_bytes())
    data[len(data) // 3] ^= 0xFF
    with pytest.raises(ValueError, match="damaged or truncated"):
        load_activations(io.BytesIO(bytes(data)), run="a")


def test_bad_crc_is_reported_with_the_member(good_file, tmp_path):
    path = tmp_path / "crc.acts"
    with zipfile.ZipFile(good_file) as source, zipfile.ZipFile(
        path, "w", zipfile.ZIP_STORED
    ) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    data = bytearray(path.read_bytes())
    # A byte of stored array data, covered only by its member's CRC.
    position = data.index(b"value.npy") - 40
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(
        ValueError, match=r"damaged or truncated: .*member '\w+' \(BadZipFile: Bad CRC"
    ) as excinfo:
        load_activations(path, run="a")
    _assert_names_file(excinfo, path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_activations(tmp_path / "absent.acts")


# -- hostile members --------------------------------------------------------


def test_run_positions_of_a_missing_run_are_rejected(good_file, tmp_path):
    members = _members(good_file)
    members["run"] = np.full_like(members["run"], 5)
    path = _write_archive(tmp_path / "missing_run.npz", members)
    with pytest.raises(ValueError, match=r"run positions outside \[0, 2\)") as excinfo:
        load_activations(path, run="a")
    _assert_names_file(excinfo, path)


def _hostile(members, key, value):
    members[key] = value
    return members


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: _hostile(m, "n_latents", np.array(10**12)), "n_latents is 1000000000000"),
        (lambda m: _hostile(m, "n_latents", np.array(-1)), "n_latents is -1"),
        (lambda m: _hostile(m, "n_bins", np.array([-5, 85])), r"n_bins must lie in \[0, 80\]"),
        (lambda m: _hostile(m, "n_bins", np.array([50, 31])), r"sum\(n_bins\) is 81"),
        # Sums that wrap around int64 back to the real number of labels.
        (
            lambda m: _hostile(
                _hostile(
                    _hostile(
                        _hostile(m, "runs", np.array(["a", "b", "c"])),
                        "bin_index_name",
                        np.array(["", "", ""]),
                    ),
                    "bin_index_has_name",
                    np.zeros(3, dtype=bool),
                ),
                "n_bins",
                np.array([2**63 - 1, 2**63 - 1, 82]),
            ),
            r"n_bins must lie in \[0, 80\]",
        ),
        (lambda m: _hostile(m, "runs", np.array(["a", "a"])), "repeated run labels"),
        (lambda m: _hostile(m, "n_bins", np.array([50])), "expected one entry per run"),
        (lambda m: _hostile(m, "latent_names", np.array(["x"])), "latent_names has shape"),
        (
            lambda m: _hostile(m, "has_latent_names", np.array(False)),
            "latent_names has shape",
        ),
        (lambda m: _hostile(m, "run", m["run"][:-1]), "differ in length"),
        (lambda m: _hostile(m, "bin_index", m["bin_index"][:-1]), "bin_index has 79"),
        (
            lambda m: _hostile(m, "bin_index", m["bin_index"].astype(float) * np.nan),
            "bin labels must be finite",
        ),
        (
            lambda m: _hostile(m, "value", np.where(m["value"] > 0.5, np.inf, m["value"])),
            "values must be finite",
        ),
        (lambda m: _hostile(m, "n_latents", np.array(4)), "latent_names has shape"),
    ],
)
def test_hostile_members_are_rejected(good_file, tmp_path, change, match):
    path = _write_archive(tmp_path / "hostile.npz", change(_members(good_file)))
    with pytest.raises(ValueError, match=match) as excinfo:
        load_activations(path, run="a")
    _assert_names_file(excinfo, path)


def test_bin_position_past_its_own_run_is_rejected(good_file, tmp_path):
    # Run "b" has 30 bins; position 40 is inside run "a" (50 bins) but not b.
    members = _members(good_file)
    in_b = np.flatnonzero(members["run"] == 1)
    members["bin"][in_b[0]] = 40
    path = _write_archive(tmp_path / "hostile.npz", members)
    with pytest.raises(ValueError, match="bin positions outside"):
        load_activations(path, run="a")


def test_too_many_values_for_the_declared_matrix(good_file, tmp_path):
    members = _members(good_file)
    members["n_latents"] = np.array(0)
    members["latent_names"] = np.empty(0, dtype="<U1")
    members["has_latent_names"] = np.array(False)
    path = _write_archive(tmp_path / "hostile.npz", members)
    with pytest.raises(ValueError, match="more than the 80 bins times 0 latents"):
        load_activations(path, run="a")


def test_save_refuses_more_latents_than_can_be_loaded(tmp_path):
    with pytest.raises(ValueError, match="at most 2147483647 latents"):
        save_activations(tmp_path / "wide", sp.csr_matrix((2, 2**31)))


# -- allocations bounded by what the file holds -----------------------------


def test_header_declaring_a_huge_array_is_refused_without_allocating(
    good_file, tmp_path
):
    members = _members(good_file)
    raw = {"bin_index": _npy_header((10**8,)) + bytes(64)}
    path = _write_archive(tmp_path / "lying.npz", members, raw, zipfile.ZIP_STORED)
    assert path.stat().st_size < 10_000

    peak, excinfo = _peak_bytes(lambda: load_activations(path, run="a"))
    assert peak < 16e6
    assert "declares shape (100000000,)" in str(excinfo.value)


def test_zip_directory_claiming_more_than_deflate_can_hold(good_file, tmp_path):
    # The .npy header and the zip directory agree on 800 MB, but the member's
    # compressed bytes cannot expand to that.
    members = _members(good_file)
    header = _npy_header((10**8,))
    path = _write_archive(
        tmp_path / "lying.npz", members, {"bin_index": header + bytes(64)}
    )
    data = bytearray(path.read_bytes())
    name = b"bin_index.npy"
    claimed = len(header) + 8 * 10**8
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while True:
            start = data.index(signature, start)
            name_offset = 30 if signature == b"PK\x03\x04" else 46
            if data[start + name_offset : start + name_offset + len(name)] == name:
                break
            start += 1
        struct.pack_into("<I", data, start + size_offset, claimed)
    path.write_bytes(bytes(data))

    peak, excinfo = _peak_bytes(lambda: load_activations(path, run="a"))
    assert peak < 16e6
    assert f"claims {claimed} bytes" in str(excinfo.value)


def test_small_deflate_bomb_is_refused_before_decompression(good_file, tmp_path):
    # 40 MB of zero labels compress to about 40 kB; n_bins declares 80.
    members = _members(good_file)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, value in members.items():
            if key != "bin_index":
                archive.writestr(f"{key}.npy", _npy_bytes(value))
        with archive.open("bin_index.npy", "w", force_zip64=True) as member:
            member.write(_npy_header((5 * 10**6,)))
            for _ in range(10):
                member.write(bytes(4 * 10**6))
    assert path.stat().st_size < 100_000

    peak, excinfo = _peak_bytes(lambda: load_activations(path, run="a"))
    assert peak < 16e6
    assert "bin_index has 5000000 labels but sum(n_bins) is 80" in str(excinfo.value)


def test_valid_file_still_loads(good_file):
    acts = load_activations(good_file, run="b")
    assert acts.codes.shape == (30, 8)
    assert acts.bin_index[0] == 100
    assert list(acts.latent_names[:2]) == ["z0", "z1"]
