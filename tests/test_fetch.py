"""Tests for sklearn_nldisco/datasets/_fetch.py.

A local HTTP server on 127.0.0.1 plays the DANDI archive: the dandiset,
asset listing and asset metadata endpoints of the REST API, the download
endpoint that redirects to storage, and a storage endpoint that honours (or
ignores) range requests and can cut the connection part-way. The download
code runs unchanged against it; nothing reaches the internet.
"""

import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np
import pytest

from sklearn_nldisco.datasets import _fetch
from sklearn_nldisco.datasets._fetch import (
    DownloadError,
    _dandi_etag,
    fetch_mc_maze,
    get_data_home,
)

DANDISET = "000140"
ASSET_PATH = "sub-Jenkins/sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb"
ASSET_ID = "5b6f7a50-0000-4000-8000-000000000140"
PUBLISHED = "0.220113.0408"
BLOB_PATH = "/storage/blobs/5b6/f7a/blob"


class FakeArchive:
    """What the fake server serves, how it misbehaves, and what it was asked."""

    def __init__(self, content):
        self.content = content
        self.digest = {
            "dandi:sha2-256": hashlib.sha256(content).hexdigest(),
            "dandi:dandi-etag": "0" * 32 + "-1",
        }
        self.advertised_size = len(content)
        self.cut_after = []  # per blob request: bytes sent before closing
        self.stall_s = []  # per blob request: seconds to stall after the cut
        self.ignore_range = False
        self.fail_status = {}  # request path -> HTTP status to answer
        self.listed_paths = [ASSET_PATH + ".bak", ASSET_PATH]
        self.endless_body = False  # stream bytes without end (up to a cap)
        self.endless_sent = 0
        # Endpoint ("dandiset", "listing", "asset") -> function rewriting the
        # JSON document before it is sent.
        self.rewrite = {}
        self.requests = []  # (path, Range header or None)
        self.lock = threading.Lock()

    def blob_requests(self):
        return [entry for entry in self.requests if entry[0] == BLOB_PATH]


class Handler(BaseHTTPRequestHandler):
    timeout = 5  # a stuck client cannot hold a server thread

    def log_message(self, format, *args):
        pass

    def _send_json(self, document, endpoint=None):
        rewrite = self.server.archive.rewrite.get(endpoint)
        if rewrite is not None:
            document = rewrite(document)
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        archive = self.server.archive
        url = urlsplit(self.path)
        with archive.lock:
            archive.requests.append((url.path, self.headers.get("Range")))
        if url.path in archive.fail_status:
            self.send_error(archive.fail_status[url.path])
            return
        base = f"/api/dandisets/{DANDISET}/"
        version_root = f"{base}versions/{PUBLISHED}/"
        draft_root = f"{base}versions/draft/"
        if url.path == base:
            self._send_json(
                {
                    "identifier": DANDISET,
                    "most_recent_published_version": {"version": PUBLISHED},
                    "draft_version": {"version": "draft"},
                },
                "dandiset",
            )
        elif url.path in (version_root + "assets/", draft_root + "assets/"):
            self._list_assets(url)
        elif url.path in (
            f"{version_root}assets/{ASSET_ID}/",
            f"{draft_root}assets/{ASSET_ID}/",
        ):
            self._send_json(
                {
                    "identifier": ASSET_ID,
                    "path": ASSET_PATH,
                    "contentSize": archive.advertised_size,
                    "digest": archive.digest,
                },
                "asset",
            )
        elif url.path == f"/api/assets/{ASSET_ID}/download/":
            self.send_response(302)
            self.send_header("Location", BLOB_PATH + "?X-Signature=abc")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == BLOB_PATH:
            self._send_blob()
        else:
            self.send_error(404)

    def _list_assets(self, url):
        # Like the archive: the path filter matches prefixes, one result per
        # page here so that the client has to follow "next".
        archive = self.server.archive
        query = parse_qs(url.query)
        prefix = query["path"][0]
        page = int(query.get("page", ["1"])[0])
        matches = [path for path in archive.listed_paths if path.startswith(prefix)]
        results = [
            {"asset_id": ASSET_ID if path == ASSET_PATH else f"other-{i}", "path": path}
            for i, path in enumerate(matches)
        ][page - 1 : page]
        next_url = None
        if page < len(matches):
            host, port = self.server.server_address
            next_query = urlencode({"path": prefix, "page": page + 1})
            next_url = f"http://{host}:{port}{url.path}?{next_query}"
        self._send_json(
            {"count": len(matches), "next": next_url, "results": results}, "listing"
        )

    def _send_blob(self):
        archive = self.server.archive
        content = archive.content
        with archive.lock:
            cut = archive.cut_after.pop(0) if archive.cut_after else None
            stall_s = archive.stall_s.pop(0) if archive.stall_s else 0.0
        range_header = self.headers.get("Range")
        if archive.endless_body:
            self._send_endless(range_header)
            return
        start = 0
        if range_header and not archive.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(content):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header(
                "Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}"
            )
        else:
            self.send_response(200)
        body = content[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut is not None:
            # Promise the whole body, send part of it, and hang up.
            self.wfile.write(body[:cut])
            self.wfile.flush()
            time.sleep(stall_s)
            self.close_connection = True
            return
        self.wfile.write(body)

    def _send_endless(self, range_header):
        # No Content-Length: the body ends when the connection closes, which
        # here is after 20 MB, or when the client hangs up.
        archive = self.server.archive
        if range_header:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-*/*")
        else:
            start = 0
            self.send_response(200)
        self.end_headers()
        # The asset's own bytes, then zeros without end.
        chunks = [archive.content[start:]] + [bytes(64 * 1024)] * 320
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                with archive.lock:
                    archive.endless_sent += len(chunk)
        except OSError:
            pass
        self.close_connection = True


@pytest.fixture
def content():
    return np.random.default_rng(0).bytes(300_000)


@pytest.fixture
def archive(content):
    return FakeArchive(content)


@pytest.fixture
def api_url(archive):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.archive = archive
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    host, port = server.server_address
    yield f"http://{host}:{port}/api"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(_fetch, "_RETRY_BACKOFF_S", 0.0)


def _fetch_small(api_url, data_home, **kwargs):
    kwargs.setdefault("timeout_s", 5.0)
    return fetch_mc_maze("small", data_home=data_home, api_url=api_url, **kwargs)


def _expected_path(data_home):
    return Path(data_home) / "dandi" / DANDISET / ASSET_PATH


def _part_path(data_home):
    path = _expected_path(data_home)
    return path.with_name(path.name + ".part")


def test_download_then_cache(api_url, archive, content, tmp_path):
    path = _fetch_small(api_url, tmp_path)

    assert path == _expected_path(tmp_path)
    assert path.read_bytes() == content
    assert not _part_path(tmp_path).exists()
    requested = [entry[0] for entry in archive.requests]
    assert f"/api/dandisets/{DANDISET}/" in requested  # the version was resolved
    assert f"/api/dandisets/{DANDISET}/versions/{PUBLISHED}/assets/" in requested
    assert archive.blob_requests() == [(BLOB_PATH, None)]

    n_requests = len(archive.requests)
    assert _fetch_small(api_url, tmp_path) == path
    assert len(archive.requests) == n_requests  # no network for a cached file


def test_explicit_version_skips_the_version_lookup(api_url, archive, content, tmp_path):
    path = _fetch_small(api_url, tmp_path, version="draft")

    assert path.read_bytes() == content
    requested = [entry[0] for entry in archive.requests]
    assert f"/api/dandisets/{DANDISET}/" not in requested
    assert f"/api/dandisets/{DANDISET}/versions/draft/assets/" in requested


def test_resume_after_cut_connection(api_url, archive, content, tmp_path):
    archive.cut_after = [100_000]

    path = _fetch_small(api_url, tmp_path)

    assert path.read_bytes() == content
    assert archive.blob_requests() == [
        (BLOB_PATH, None),
        (BLOB_PATH, "bytes=100000-"),
    ]
    assert not _part_path(tmp_path).exists()


def test_stalled_connection_times_out_and_resumes(api_url, archive, content, tmp_path):
    archive.cut_after = [70_000]
    archive.stall_s = [1.0]

    path = _fetch_small(api_url, tmp_path, timeout_s=0.2)

    assert path.read_bytes() == content
    assert archive.blob_requests() == [
        (BLOB_PATH, None),
        (BLOB_PATH, "bytes=70000-"),
    ]


def test_resume_a_part_file_left_by_an_earlier_call(
    api_url, archive, content, tmp_path
):
    part = _part_path(tmp_path)
    part.parent.mkdir(parents=True)
    part.write_bytes(content[:123_456])

    path = _fetch_small(api_url, tmp_path)

    assert path.read_bytes() == content
    assert archive.blob_requests() == [(BLOB_PATH, "bytes=123456-")]


def test_server_ignoring_range_restarts_from_zero(api_url, archive, content, tmp_path):
    archive.ignore_range = True
    part = _part_path(tmp_path)
    part.parent.mkdir(parents=True)
    part.write_bytes(content[:50_000])

    path = _fetch_small(api_url, tmp_path)

    assert path.read_bytes() == content  # not the first 50 kB twice
    assert archive.blob_requests() == [(BLOB_PATH, "bytes=50000-")]


def test_part_file_longer_than_the_asset_is_discarded(
    api_url, archive, content, tmp_path
):
    part = _part_path(tmp_path)
    part.parent.mkdir(parents=True)
    part.write_bytes(content + b"stale tail")

    assert _fetch_small(api_url, tmp_path).read_bytes() == content
    assert archive.blob_requests() == [(BLOB_PATH, None)]
    assert not part.exists()


def test_damaged_part_file_of_full_length(api_url, archive, content, tmp_path):
    part = _part_path(tmp_path)
    part.parent.mkdir(parents=True)
    part.write_bytes(bytes(len(content)))

    with pytest.raises(DownloadError, match="SHA-256: expected") as excinfo:
        _fetch_small(api_url, tmp_path)
    assert "partial file was deleted" in str(excinfo.value)
    assert archive.blob_requests() == []  # nothing left to download
    assert not part.exists()
    assert _fetch_small(api_url, tmp_path).read_bytes() == content


def test_retries_are_bounded_and_keep_the_part_file(
    api_url, archive, content, tmp_path
):
    archive.cut_after = [10_000] * 10

    with pytest.raises(DownloadError, match="failed 3 times") as excinfo:
        _fetch_small(api_url, tmp_path, n_retries=2)

    assert "/download/" in str(excinfo.value)
    assert len(archive.blob_requests()) == 3
    part = _part_path(tmp_path)
    assert part.read_bytes() == content[:30_000]
    assert not _expected_path(tmp_path).exists()

    # A later call, on a healthy connection, resumes where this one stopped.
    archive.cut_after = []
    assert _fetch_small(api_url, tmp_path).read_bytes() == content
    assert archive.blob_requests()[-1] == (BLOB_PATH, "bytes=30000-")


def test_checksum_mismatch(api_url, archive, tmp_path):
    wrong = hashlib.sha256(b"something else").hexdigest()
    archive.digest["dandi:sha2-256"] = wrong

    with pytest.raises(DownloadError) as excinfo:
        _fetch_small(api_url, tmp_path)

    message = str(excinfo.value)
    assert "sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb" in message
    assert wrong in message
    assert hashlib.sha256(archive.content).hexdigest() in message
    assert not _expected_path(tmp_path).exists()
    assert not _part_path(tmp_path).exists()


def test_size_mismatch(api_url, archive, tmp_path):
    archive.advertised_size = len(archive.content) - 1

    with pytest.raises(DownloadError, match="expected 299999 bytes, got 300000"):
        _fetch_small(api_url, tmp_path)
    assert not _expected_path(tmp_path).exists()
    assert not _part_path(tmp_path).exists()


def test_dandi_etag_is_used_without_sha256(api_url, archive, content, tmp_path):
    inner = hashlib.md5(content).digest()
    archive.digest = {"dandi:dandi-etag": hashlib.md5(inner).hexdigest() + "-1"}

    assert _fetch_small(api_url, tmp_path).read_bytes() == content

    archive.digest = {"dandi:dandi-etag": "f" * 32 + "-1"}
    with pytest.raises(DownloadError, match="DANDI ETag: expected f{32}-1"):
        _fetch_small(api_url, tmp_path / "other")
    assert not _part_path(tmp_path / "other").exists()


def test_no_published_checksum_warns(api_url, archive, content, tmp_path):
    archive.digest = {}

    with pytest.warns(UserWarning, match="only its size is checked"):
        path = _fetch_small(api_url, tmp_path)
    assert path.read_bytes() == content


LISTING_PATH = f"/api/dandisets/{DANDISET}/versions/{PUBLISHED}/assets/"
DOWNLOAD_PATH = f"/api/assets/{ASSET_ID}/download/"


@pytest.mark.parametrize(
    "failing_path, status, named_url",
    [
        (DOWNLOAD_PATH, 404, DOWNLOAD_PATH),
        # The error names the archive's URL, not the signed storage URL.
        (BLOB_PATH, 403, DOWNLOAD_PATH),
        (LISTING_PATH, 500, LISTING_PATH + "?path=sub-Jenkins%2F"),
        (f"/api/dandisets/{DANDISET}/", 404, f"/api/dandisets/{DANDISET}/"),
    ],
)
def test_http_errors_name_url_and_status(
    api_url, archive, tmp_path, failing_path, status, named_url
):
    archive.fail_status[failing_path] = status

    with pytest.raises(DownloadError, match=f"HTTP {status} ") as excinfo:
        _fetch_small(api_url, tmp_path)

    origin = api_url.removesuffix("/api")
    assert f" for {origin}{named_url}" in str(excinfo.value)
    # Not retried: one request to the failing endpoint.
    assert [entry[0] for entry in archive.requests].count(failing_path) == 1
    assert not _expected_path(tmp_path).exists()
    assert not _part_path(tmp_path).exists()


@pytest.mark.parametrize("failing_path", [BLOB_PATH, LISTING_PATH])
def test_transient_status_is_retried(api_url, archive, tmp_path, failing_path):
    archive.fail_status[failing_path] = 503

    with pytest.raises(DownloadError, match="HTTP 503"):
        _fetch_small(api_url, tmp_path, n_retries=1)
    assert [entry[0] for entry in archive.requests].count(failing_path) == 2


def test_asset_missing_from_the_dandiset(api_url, archive, tmp_path):
    archive.listed_paths = [ASSET_PATH + ".bak"]

    with pytest.raises(DownloadError, match="No asset .*ses-small_desc-train.* 000140"):
        _fetch_small(api_url, tmp_path)


def test_verify_cached_replaces_a_damaged_file(api_url, archive, content, tmp_path):
    path = _expected_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0" * len(content))

    assert _fetch_small(api_url, tmp_path) == path  # trusted, untouched
    assert archive.requests == []
    with pytest.warns(UserWarning, match="does not match the archive"):
        _fetch_small(api_url, tmp_path, verify_cached=True)
    assert path.read_bytes() == content

    n_blob_requests = len(archive.blob_requests())
    _fetch_small(api_url, tmp_path, verify_cached=True)  # now it matches
    assert len(archive.blob_requests()) == n_blob_requests


def test_download_if_missing_false(api_url, archive, tmp_path):
    with pytest.raises(FileNotFoundError, match="download_if_missing=False"):
        _fetch_small(api_url, tmp_path, download_if_missing=False)
    assert archive.requests == []


def test_verbose_reports_on_stderr(api_url, tmp_path, capsys):
    _fetch_small(api_url, tmp_path, verbose=True)

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Downloading sub-Jenkins/" in captured.err
    assert "Saved" in captured.err


def test_downloaded_nwb_file_opens(api_url, archive, tmp_path):
    pynwb = pytest.importorskip("pynwb")
    from pynwb.testing.mock.file import mock_NWBFile

    source = tmp_path / "source.nwb"
    nwbfile = mock_NWBFile(session_description="maze reaching")
    nwbfile.add_unit(spike_times=[0.1, 0.25, 0.4])
    with pynwb.NWBHDF5IO(source, "w") as io:
        io.write(nwbfile)
    archive.content = source.read_bytes()
    archive.advertised_size = len(archive.content)
    archive.digest = {"dandi:sha2-256": hashlib.sha256(archive.content).hexdigest()}
    archive.cut_after = [len(archive.content) // 3]

    path = _fetch_small(api_url, tmp_path / "home")

    with pynwb.NWBHDF5IO(path, "r") as io:
        read = io.read()
        assert read.session_description == "maze reaching"
        np.testing.assert_allclose(read.units["spike_times"][0], [0.1, 0.25, 0.4])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"size": "tiny"},
            r"size must be one of \['full', 'large', 'medium', 'small'\]; got 'tiny'",
        ),
        ({"split": "val"}, r"split must be one of \['test', 'train'\]; got 'val'"),
        ({"n_retries": -1}, "n_retries must be a non-negative integer; got -1"),
        ({"timeout_s": 0}, "timeout_s must be a positive number; got 0"),
        ({"api_url": "ftp://example.org"}, "api_url must be an http"),
        ({"version": ""}, "version must be None"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fetch_mc_maze(data_home=tmp_path, **kwargs)


@pytest.mark.parametrize(
    "size, split, dandiset, name",
    [
        ("full", "train", "000128", "ses-full_desc-train_behavior+ecephys"),
        ("large", "test", "000138", "ses-large_desc-test_ecephys"),
        ("medium", "train", "000139", "ses-medium_desc-train_behavior+ecephys"),
        ("small", "test", "000140", "ses-small_desc-test_ecephys"),
    ],
)
def test_cache_layout(tmp_path, size, split, dandiset, name):
    expected = tmp_path / "dandi" / dandiset / "sub-Jenkins" / f"sub-Jenkins_{name}.nwb"
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"cached")

    # Cached: returned without any request, even to an unreachable server.
    path = fetch_mc_maze(
        size, split=split, data_home=tmp_path, api_url="http://127.0.0.1:9/api"
    )
    assert path == expected


def test_get_data_home(tmp_path, monkeypatch):
    explicit = get_data_home(tmp_path / "explicit")
    assert explicit == tmp_path / "explicit" and explicit.is_dir()

    monkeypatch.setenv("NLDISCO_DATA", str(tmp_path / "from_env"))
    assert get_data_home() == tmp_path / "from_env"
    assert (tmp_path / "from_env").is_dir()

    monkeypatch.setenv("NLDISCO_DATA", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_data_home() == tmp_path / "home" / "nldisco_data"
    assert get_data_home("~/elsewhere") == tmp_path / "home" / "elsewhere"


@pytest.mark.parametrize("size_bytes", [0, 1, 5_000])
def test_dandi_etag_single_part(tmp_path, size_bytes):
    data = os.urandom(size_bytes)
    path = tmp_path / "blob"
    path.write_bytes(data)

    n_parts = 1 if size_bytes else 0
    inner = hashlib.md5(data).digest() if size_bytes else b""
    assert _dandi_etag(path) == f"{hashlib.md5(inner).hexdigest()}-{n_parts}"


def test_dandi_etag_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(_fetch, "_ETAG_PART_SIZE", 1000)
    monkeypatch.setattr(_fetch, "_CHUNK_SIZE", 300)  # parts span several reads
    data = os.urandom(2500)
    path = tmp_path / "blob"
    path.write_bytes(data)

    parts = [data[:1000], data[1000:2000], data[2000:]]
    inner = b"".join(hashlib.md5(part).digest() for part in parts)
    assert _dandi_etag(path) == f"{hashlib.md5(inner).hexdigest()}-3"

    # Past 10,000 parts, the part size grows so that fewer are needed.
    monkeypatch.setattr(_fetch, "_ETAG_PART_SIZE", 1)
    monkeypatch.setattr(_fetch, "_ETAG_MAX_PARTS", 1000)
    assert _dandi_etag(path).endswith("-834")  # parts of ceil(2500 / 1000) = 3 bytes


# -- hostile servers: overlong bodies and invalid metadata --------------------


class _WriteCounter:
    """Counts the bytes the download code writes into ``.part`` files."""

    def __init__(self):
        self.written = 0

    def open(self, path, mode="r", *args, **kwargs):
        file = open(path, mode, *args, **kwargs)
        if str(path).endswith(".part") and "b" in mode and mode[0] in "wa":
            counter = self
            write = file.write

            def counted_write(data):
                counter.written += len(data)
                return write(data)

            file.write = counted_write
        return file


@pytest.mark.parametrize("resume", [False, True], ids=["from-zero", "resumed"])
def test_endless_body_is_cut_at_the_advertised_size(
    api_url, archive, tmp_path, monkeypatch, resume
):
    archive.content = np.random.default_rng(7).bytes(1000)
    archive.advertised_size = 1000
    archive.digest = {"dandi:sha2-256": hashlib.sha256(archive.content).hexdigest()}
    archive.endless_body = True
    part = _part_path(tmp_path)
    if resume:
        part.parent.mkdir(parents=True)
        part.write_bytes(archive.content[:400])
    counter = _WriteCounter()
    monkeypatch.setattr(_fetch, "open", counter.open, raising=False)

    with pytest.raises(DownloadError, match="sent more than the advertised size"):
        _fetch_small(api_url, tmp_path, n_retries=3)

    # At most one byte past the advertised size reaches the disk.
    assert counter.written <= 1001 - (400 if resume else 0)
    assert len(archive.blob_requests()) == 1  # not retried
    assert not part.exists()
    assert not _expected_path(tmp_path).exists()


_MISSING = object()


def _with(key, value):
    def rewrite(document):
        document = dict(document)
        if value is _MISSING:
            del document[key]
        else:
            document[key] = value
        return document

    return rewrite


@pytest.mark.parametrize(
    "content_size",
    [-1, -1000, 10**30, 6 * 1024**4, 299_999.5, 300_000.0, "300000", True, None, _MISSING],
    ids=lambda value: "missing" if value is _MISSING else repr(value),
)
def test_invalid_content_size_is_refused_before_downloading(
    api_url, archive, tmp_path, content_size
):
    archive.rewrite["asset"] = _with("contentSize", content_size)

    with pytest.raises(DownloadError, match="Invalid metadata from .*contentSize") as excinfo:
        _fetch_small(api_url, tmp_path)

    assert f"/assets/{ASSET_ID}/" in str(excinfo.value)
    assert archive.blob_requests() == []
    assert not _part_path(tmp_path).exists()
    assert not _expected_path(tmp_path).exists()


@pytest.mark.parametrize(
    "endpoint, rewrite, match",
    [
        ("dandiset", lambda doc: [doc], "the response must be a JSON object"),
        (
            "dandiset",
            _with("most_recent_published_version", "0.220113.0408"),
            "most_recent_published_version must be an object",
        ),
        (
            "dandiset",
            _with("most_recent_published_version", {"version": "../../admin"}),
            "version must be a version string",
        ),
        ("listing", _with("results", _MISSING), "must have a list of objects 'results'"),
        ("listing", _with("results", {"path": ASSET_PATH}), "list of objects"),
        (
            "listing",
            _with("results", [{"path": ASSET_PATH}]),
            "asset_id of .* must be an identifier",
        ),
        (
            "listing",
            _with("results", [{"path": ASSET_PATH, "asset_id": "../../evil"}]),
            "asset_id of .* must be an identifier",
        ),
        ("listing", _with("next", 17), "'next' must be an http"),
        ("asset", _with("digest", ["dandi:sha2-256"]), "digest must be an object"),
        ("asset", _with("digest", {"dandi:sha2-256": "zz"}), "'dandi:sha2-256' is malformed"),
        ("asset", _with("digest", {"dandi:dandi-etag": 12}), "'dandi:dandi-etag' is malformed"),
    ],
)
def test_invalid_metadata_is_refused_before_downloading(
    api_url, archive, tmp_path, endpoint, rewrite, match
):
    archive.rewrite[endpoint] = rewrite

    with pytest.raises(DownloadError, match=f"Invalid metadata from http://.*{match}"):
        _fetch_small(api_url, tmp_path)

    assert archive.blob_requests() == []
    assert not _part_path(tmp_path).exists()


def test_disk_without_room_is_refused_before_downloading(
    api_url, archive, tmp_path, monkeypatch
):
    usage = _fetch.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        _fetch.shutil, "disk_usage", lambda path: usage._replace(free=1000)
    )

    with pytest.raises(DownloadError, match="needs 300000 more bytes but .* has 1000 free"):
        _fetch_small(api_url, tmp_path)
    assert archive.blob_requests() == []
    assert not _part_path(tmp_path).exists()


def test_empty_asset(api_url, archive, tmp_path):
    archive.content = b""
    archive.advertised_size = 0
    archive.digest = {"dandi:sha2-256": hashlib.sha256(b"").hexdigest()}

    path = _fetch_small(api_url, tmp_path)

    assert path.read_bytes() == b""
    assert not _part_path(tmp_path).exists()


def test_version_must_be_plain(tmp_path):
    with pytest.raises(ValueError, match="version must be None"):
        fetch_mc_maze(data_home=tmp_path, version="../../admin")
