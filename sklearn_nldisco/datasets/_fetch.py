"""Download the MC_Maze recordings from the DANDI archive into a local cache.

The files are resolved through the DANDI REST API, downloaded over HTTPS to
``<name>.part`` (resumed with HTTP range requests after a cut connection),
checked against the size and checksum the archive publishes, and only then
renamed to their final name. A file that carries its final name is therefore
complete, and is returned from the cache without any network access.

Only the standard library is used, so fetching needs no extra dependency.
"""

import hashlib
import http.client
import json
import math
import os
import re
import shutil
import sys
import time
import warnings
from importlib import metadata as importlib_metadata
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit
from urllib.request import Request, urlopen

#: Root of the DANDI archive REST API.
DANDI_API_URL = "https://api.dandiarchive.org/api"

# The four MC_Maze releases of the Neural Latents Benchmark, by dandiset.
_MC_MAZE_DANDISETS = {
    "full": "000128",
    "large": "000138",
    "medium": "000139",
    "small": "000140",
}
# The test files hold spikes of held-in units only: no behaviour.
_MC_MAZE_SPLIT_SUFFIXES = {
    "train": "desc-train_behavior+ecephys",
    "test": "desc-test_ecephys",
}

_DATA_HOME_ENV = "NLDISCO_DATA"
_DEFAULT_DATA_HOME = "~/nldisco_data"

_CHUNK_SIZE = 1024 * 1024
# Seconds to wait before retry number ``i`` is ``_RETRY_BACKOFF_S * 2**i``,
# capped at ``_RETRY_BACKOFF_MAX_S``.
_RETRY_BACKOFF_S = 1.0
_RETRY_BACKOFF_MAX_S = 30.0
# Statuses that a gateway returns while the service behind it recovers.
_TRANSIENT_STATUSES = frozenset({502, 503, 504})
# An asset listing filtered by a full file path has one or two pages; the
# bound only stops a misbehaving server from paging forever.
_MAX_LISTING_PAGES = 100

# The archive computes each blob's SHA-256 some time after upload; the DANDI
# ETag (an S3 multipart ETag with a fixed part layout) is there from the start.
_SHA256_KEY = "dandi:sha2-256"
_ETAG_KEY = "dandi:dandi-etag"
_ETAG_PART_SIZE = 64 * 1024 * 1024
_ETAG_MAX_PARTS = 10_000
# The archive's storage holds objects of at most 5 TiB; a larger contentSize
# is not a file it can serve.
_MAX_ASSET_BYTES = 5 * 1024**4
# Identifiers and versions are pasted into URLs, so they must be plain.
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256_FORMAT = re.compile(r"[0-9a-fA-F]{64}")
_ETAG_FORMAT = re.compile(r"[0-9a-fA-F]{32}-[0-9]+")


class DownloadError(OSError):
    """A file could not be downloaded, or arrived damaged.

    Raised for HTTP errors, a connection that keeps failing after the allowed
    retries, an asset missing from the archive, metadata that is missing or
    invalid, a server that sends more than the advertised size, a disk
    without room for the file, and a size or checksum that differs from what
    the archive publishes. The message names the URL or file, and what was
    expected and received.

    See Also
    --------
    fetch_mc_maze : Download an MC_Maze recording.

    Examples
    --------
    >>> from sklearn_nldisco.datasets import DownloadError
    >>> issubclass(DownloadError, OSError)
    True
    """


class _TransientError(Exception):
    """An attempt failed in a way that another attempt may fix."""


def get_data_home(data_home=None):
    """Return the folder where downloaded recordings are cached.

    The folder is, in order of precedence: ``data_home`` when given, the
    environment variable ``NLDISCO_DATA`` when set and not empty, and
    ``~/nldisco_data`` otherwise. A leading ``~`` is expanded, and the
    folder is created when missing.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The cache folder. ``None`` uses ``NLDISCO_DATA`` or
        ``~/nldisco_data``.

    Returns
    -------
    data_home : pathlib.Path
        The cache folder, which exists.

    See Also
    --------
    fetch_mc_maze : Download an MC_Maze recording into this folder.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_nldisco.datasets import get_data_home
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     home = get_data_home(Path(tmp) / "nldisco_data")
    ...     print(home.name, home.is_dir())
    nldisco_data True
    """
    if data_home is None:
        data_home = os.environ.get(_DATA_HOME_ENV) or _DEFAULT_DATA_HOME
    data_home = Path(os.fspath(data_home)).expanduser()
    data_home.mkdir(parents=True, exist_ok=True)
    return data_home


def fetch_mc_maze(
    size="small",
    *,
    data_home=None,
    split="train",
    version=None,
    download_if_missing=True,
    verify_cached=False,
    n_retries=5,
    timeout_s=60.0,
    api_url=DANDI_API_URL,
    verbose=False,
):
    """Download one MC_Maze recording from the DANDI archive and return its path.

    MC_Maze (Churchland et al. 2012) is the macaque maze-reaching dataset of
    the Neural Latents Benchmark, published on DANDI in four sizes: ``"full"``
    (dandiset 000128), ``"large"`` (000138), ``"medium"`` (000139) and
    ``"small"`` (000140). Each has a train file with spikes, trials and
    behaviour, ``sub-Jenkins/sub-Jenkins_ses-<size>_desc-train_behavior+ecephys.nwb``,
    and a test file without behaviour,
    ``sub-Jenkins/sub-Jenkins_ses-<size>_desc-test_ecephys.nwb``.

    The file is cached as ``<data_home>/dandi/<dandiset>/<asset path>``, the
    layout of ``dandi download``. A cached file is returned without network
    access. Otherwise the asset is looked up by path in the dandiset version,
    downloaded to ``<name>.part`` (resuming an earlier ``.part`` with an HTTP
    range request, and retrying a cut connection up to ``n_retries`` times),
    its size and checksum are checked against the archive's metadata, and
    only then is it renamed to its final name.

    Parameters
    ----------
    size : {"small", "medium", "large", "full"}, default="small"
        Which release. The small train file is about 29 MB; the full one
        several hundred MB.
    data_home : str or path-like, default=None
        Cache folder; see :func:`get_data_home`. ``None`` uses the
        environment variable ``NLDISCO_DATA``, else ``~/nldisco_data``.
    split : {"train", "test"}, default="train"
        The train file (spikes, trials, behaviour) or the test file (spikes
        of the held-in units, no behaviour).
    version : str, default=None
        Dandiset version to resolve the file in: ``None`` takes the most
        recent published version (the draft when none is published),
        ``"draft"`` the draft, or a published version such as
        ``"0.220113.0400"`` (a release of 000128). Only used when the file
        is downloaded or verified; the cache does not record versions.
    download_if_missing : bool, default=True
        If False and the file is not cached, raise ``FileNotFoundError``
        instead of downloading it.
    verify_cached : bool, default=False
        If True, a cached file is checked against the archive's current
        size and checksum (this needs the network and reads the whole file);
        when it differs, it is downloaded again, with a warning. If False, a
        cached file is trusted: only verified downloads ever get the final
        name.
    n_retries : int, default=5
        How many times a failed request (cut connection, timeout, status
        502, 503 or 504) is retried, after waits of 1, 2, 4 ... seconds (at
        most 30); a download resumes where the failed attempt stopped.
        Other HTTP errors are not retried.
    timeout_s : float, default=60.0
        Seconds to wait for the server to connect or send data before an
        attempt fails.
    api_url : str, default="https://api.dandiarchive.org/api"
        Root of the DANDI REST API (e.g. a mirror or the sandbox instance).
    verbose : bool, default=False
        If True, report the download and its progress on stderr.

    Returns
    -------
    path : pathlib.Path
        Local path of the complete, verified NWB file.

    Raises
    ------
    ValueError
        If ``size``, ``split``, ``version``, ``n_retries``, ``timeout_s`` or
        ``api_url`` is not valid.
    FileNotFoundError
        If the file is not cached and ``download_if_missing`` is False.
    DownloadError
        If the archive answers with an HTTP error, the asset is not in the
        dandiset, its metadata is missing or invalid (a ``contentSize`` that
        is not an integer from 0 to 5 TiB, a malformed checksum, a response
        that is not the expected JSON object), the cache's disk has no room
        for the file, the connection keeps failing after ``n_retries``
        retries, the server sends more bytes than ``contentSize``, or the
        downloaded file's size or checksum differs from the archive's. A
        damaged or overlong download is deleted (reading stops one byte past
        the advertised size, so an endless body writes no more than that);
        an interrupted one is kept as ``<name>.part`` and resumed by the next
        call. Nothing is written before the metadata has been checked.

    See Also
    --------
    get_data_home : The cache folder.

    Notes
    -----
    The checksum is the SHA-256 digest (``"dandi:sha2-256"``) that the
    archive publishes for each file. Where an asset lacks it, the DANDI ETag
    (``"dandi:dandi-etag"``: the MD5 of the MD5s of the file's 64 MiB parts,
    followed by ``-<number of parts>``) is computed and compared instead.
    Where neither is published, only the size is checked, with a warning.

    Two processes must not download the same file into the same cache at the
    same time: both would append to one ``.part`` file. The checksum catches
    the damage, but the download is wasted.

    Examples
    --------
    >>> from sklearn_nldisco.datasets import fetch_mc_maze
    >>> path = fetch_mc_maze("small", split="train")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb'

    Without the network, only a cached file can be returned:

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     fetch_mc_maze("medium", data_home=tmp, download_if_missing=False)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: MC_Maze file ...ses-medium_desc-train... is not cached in ...
    """
    dandiset_id, asset_path = _mc_maze_asset(size, split)
    if not isinstance(n_retries, int) or isinstance(n_retries, bool) or n_retries < 0:
        raise ValueError(
            f"n_retries must be a non-negative integer; got {n_retries!r}."
        )
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number; got {timeout_s!r}.")
    if version is not None and not (
        isinstance(version, str) and _PLAIN_ID.fullmatch(version)
    ):
        raise ValueError(
            "version must be None, 'draft' or a published version string "
            f"(letters, digits, '.', '_', '-'); got {version!r}."
        )
    api_url = _check_api_url(api_url)

    local_path = get_data_home(data_home) / "dandi" / dandiset_id / asset_path
    if local_path.is_file() and not verify_cached:
        return local_path
    if not local_path.is_file() and not download_if_missing:
        raise FileNotFoundError(
            f"MC_Maze file {local_path.name} is not cached in "
            f"{local_path.parent} and download_if_missing=False."
        )

    asset = _resolve_asset(
        api_url, dandiset_id, asset_path, version, timeout_s, n_retries
    )
    if not {_SHA256_KEY, _ETAG_KEY} & asset["digest"].keys():
        warnings.warn(
            f"The archive publishes no SHA-256 or DANDI ETag for {asset_path}; "
            "only its size is checked.",
            UserWarning,
            stacklevel=2,
        )
    if local_path.is_file():
        problem = _verification_problem(local_path, asset)
        if problem is None:
            return local_path
        # The old file stays in place until its replacement is verified.
        warnings.warn(
            f"The cached file {local_path} does not match the archive "
            f"({problem}); downloading it again.",
            UserWarning,
            stacklevel=2,
        )

    _download_verified(
        asset,
        local_path,
        n_retries=n_retries,
        timeout_s=timeout_s,
        verbose=verbose,
    )
    return local_path


def _mc_maze_asset(size, split):
    """Dandiset identifier and asset path of one MC_Maze file.

    Examples
    --------
    >>> from sklearn_nldisco.datasets._fetch import _mc_maze_asset
    >>> _mc_maze_asset("small", "train")
    ('000140', 'sub-Jenkins/sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb')
    >>> _mc_maze_asset("full", "test")
    ('000128', 'sub-Jenkins/sub-Jenkins_ses-full_desc-test_ecephys.nwb')
    """
    if size not in _MC_MAZE_DANDISETS:
        raise ValueError(
            f"size must be one of {sorted(_MC_MAZE_DANDISETS)}; got {size!r}."
        )
    if split not in _MC_MAZE_SPLIT_SUFFIXES:
        raise ValueError(
            f"split must be one of {sorted(_MC_MAZE_SPLIT_SUFFIXES)}; got {split!r}."
        )
    suffix = _MC_MAZE_SPLIT_SUFFIXES[split]
    return (
        _MC_MAZE_DANDISETS[size],
        f"sub-Jenkins/sub-Jenkins_ses-{size}_{suffix}.nwb",
    )


def _check_api_url(api_url):
    if not isinstance(api_url, str) or urlsplit(api_url).scheme not in (
        "https",
        "http",
    ):
        raise ValueError(f"api_url must be an http(s) URL; got {api_url!r}.")
    return api_url.rstrip("/")


def _user_agent():
    try:
        version = importlib_metadata.version("sklearn-nldisco")
    except importlib_metadata.PackageNotFoundError:
        version = "unknown"
    return f"sklearn-nldisco/{version}"


def _describe_http_error(url, exc):
    reason = f" {exc.reason}" if exc.reason else ""
    return f"HTTP {exc.code}{reason} for {url}"


def _sleep_before_retry(attempt):
    time.sleep(min(_RETRY_BACKOFF_S * 2**attempt, _RETRY_BACKOFF_MAX_S))


# Failures of the connection itself; HTTPError (a URLError) is handled first.
_CONNECTION_ERRORS = (
    URLError,
    ConnectionError,
    TimeoutError,
    http.client.HTTPException,
)


def _get_json(url, timeout_s, n_retries):
    """GET a JSON document, retrying transient failures a bounded number of times."""
    request = Request(
        url, headers={"Accept": "application/json", "User-Agent": _user_agent()}
    )
    for attempt in range(n_retries + 1):
        try:
            with urlopen(request, timeout=timeout_s) as response:
                body = response.read()
            break
        except HTTPError as exc:
            exc.close()
            if exc.code not in _TRANSIENT_STATUSES or attempt == n_retries:
                raise DownloadError(_describe_http_error(url, exc)) from exc
        except _CONNECTION_ERRORS as exc:
            if attempt == n_retries:
                raise DownloadError(
                    f"Could not reach {url} after {attempt + 1} attempts: {exc}"
                ) from exc
        _sleep_before_retry(attempt)
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise DownloadError(f"{url} did not return JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _metadata_error(url, "the response must be a JSON object", document)
    return document


def _metadata_error(url, what, value):
    return DownloadError(f"Invalid metadata from {url}: {what}; got {value!r:.200}.")


def _resolve_version(api_url, dandiset_id, version, timeout_s, n_retries):
    """The version to read: the given one, else the latest published, else draft."""
    if version is not None:
        return version
    url = f"{api_url}/dandisets/{dandiset_id}/"
    info = _get_json(url, timeout_s, n_retries)
    for key in ("most_recent_published_version", "draft_version"):
        entry = info.get(key)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise _metadata_error(url, f"{key} must be an object or null", entry)
        found = entry.get("version")
        if found is None:
            continue
        if not (isinstance(found, str) and _PLAIN_ID.fullmatch(found)):
            raise _metadata_error(url, f"{key}.version must be a version string", found)
        return found
    return "draft"


def _resolve_asset(api_url, dandiset_id, asset_path, version, timeout_s, n_retries):
    """Find an asset by path and return what the download needs to know."""
    version = _resolve_version(api_url, dandiset_id, version, timeout_s, n_retries)
    version_url = f"{api_url}/dandisets/{dandiset_id}/versions/{version}"
    # The path filter matches prefixes, so the exact path is picked out here.
    page_url = f"{version_url}/assets/?{urlencode({'path': asset_path})}"
    asset_id = None
    for _ in range(_MAX_LISTING_PAGES):
        page = _get_json(page_url, timeout_s, n_retries)
        results = page.get("results")
        if not isinstance(results, list) or not all(
            isinstance(entry, dict) for entry in results
        ):
            raise _metadata_error(
                page_url, "the asset listing must have a list of objects 'results'",
                results,
            )
        for entry in results:
            if entry.get("path") == asset_path:
                asset_id = entry.get("asset_id")
                if not (isinstance(asset_id, str) and _PLAIN_ID.fullmatch(asset_id)):
                    raise _metadata_error(
                        page_url, f"the asset_id of {asset_path} must be an identifier",
                        asset_id,
                    )
                break
        next_url = page.get("next")
        if next_url is not None and not (
            isinstance(next_url, str) and urlsplit(next_url).scheme in ("https", "http")
        ):
            raise _metadata_error(page_url, "'next' must be an http(s) URL or null", next_url)
        page_url = next_url
        if asset_id is not None or not page_url:
            break
    if asset_id is None:
        raise DownloadError(
            f"No asset {asset_path!r} in dandiset {dandiset_id} version "
            f"{version} at {api_url}."
        )
    info_url = f"{version_url}/assets/{asset_id}/"
    info = _get_json(info_url, timeout_s, n_retries)
    return {
        "dandiset_id": dandiset_id,
        "version": version,
        "asset_id": asset_id,
        "path": asset_path,
        "size": _checked_size(info_url, info),
        "digest": _checked_digest(info_url, info),
        "download_url": f"{api_url}/assets/{asset_id}/download/",
    }


def _checked_size(url, info):
    """The asset's ``contentSize``: an integer from 0 to ``_MAX_ASSET_BYTES``."""
    if "contentSize" not in info:
        raise _metadata_error(url, "the asset has no contentSize", sorted(info))
    size_bytes = info["contentSize"]
    # JSON integers only: a float, string or boolean is not a byte count.
    if not isinstance(size_bytes, int) or isinstance(size_bytes, bool):
        raise _metadata_error(url, "contentSize must be an integer", size_bytes)
    if not 0 <= size_bytes <= _MAX_ASSET_BYTES:
        raise _metadata_error(
            url, f"contentSize must be from 0 to {_MAX_ASSET_BYTES} bytes", size_bytes
        )
    return size_bytes


def _checked_digest(url, info):
    """The asset's digests; those this module compares must be well formed."""
    digest = info.get("digest")
    if digest is None:
        return {}
    if not isinstance(digest, dict):
        raise _metadata_error(url, "digest must be an object", digest)
    for key, pattern in ((_SHA256_KEY, _SHA256_FORMAT), (_ETAG_KEY, _ETAG_FORMAT)):
        if key in digest and not (
            isinstance(digest[key], str) and pattern.fullmatch(digest[key])
        ):
            raise _metadata_error(url, f"digest {key!r} is malformed", digest[key])
    return dict(digest)


def _dandi_etag(path):
    """The DANDI ETag of a file: MD5 of the MD5s of its parts, then ``-<parts>``.

    Parts are 64 MiB, or larger where that would make 10,000 parts or more,
    as the archive cuts uploads; the last part holds the remainder.

    Examples
    --------
    >>> import hashlib, tempfile
    >>> from pathlib import Path
    >>> from sklearn_nldisco.datasets._fetch import _dandi_etag
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp, "blob")
    ...     _ = path.write_bytes(b"spikes")
    ...     etag = _dandi_etag(path)
    >>> inner = hashlib.md5(b"spikes").digest()
    >>> etag == hashlib.md5(inner).hexdigest() + "-1"
    True
    """
    size_bytes = os.path.getsize(path)
    part_size = _ETAG_PART_SIZE
    if math.ceil(size_bytes / part_size) >= _ETAG_MAX_PARTS:
        part_size = math.ceil(size_bytes / _ETAG_MAX_PARTS)
    part_digests = []
    with open(path, "rb") as file:
        remaining = size_bytes
        while remaining > 0:
            part_hash = hashlib.md5(usedforsecurity=False)
            part_left = min(part_size, remaining)
            while part_left > 0:
                chunk = file.read(min(_CHUNK_SIZE, part_left))
                if not chunk:
                    raise DownloadError(f"{path} shrank while it was being read.")
                part_hash.update(chunk)
                part_left -= len(chunk)
            remaining -= min(part_size, remaining)
            part_digests.append(part_hash.digest())
    whole = hashlib.md5(b"".join(part_digests), usedforsecurity=False)
    return f"{whole.hexdigest()}-{len(part_digests)}"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _verification_problem(path, asset):
    """Describe how a file differs from the asset's metadata, or return None."""
    size_bytes = os.path.getsize(path)
    if size_bytes != asset["size"]:
        return f"size: expected {asset['size']} bytes, got {size_bytes}"
    digest = asset["digest"]
    if _SHA256_KEY in digest:
        algorithm, expected, actual = "SHA-256", digest[_SHA256_KEY], _sha256(path)
    elif _ETAG_KEY in digest:
        algorithm, expected, actual = "DANDI ETag", digest[_ETAG_KEY], _dandi_etag(path)
    else:
        # fetch_mc_maze warns about this once.
        return None
    if actual.lower() != str(expected).lower():
        return f"{algorithm}: expected {expected}, got {actual}"
    return None


def _download_verified(asset, local_path, *, n_retries, timeout_s, verbose):
    """Download, verify, then atomically move the file to ``local_path``."""
    local_path.parent.mkdir(parents=True, exist_ok=True)
    part_path = local_path.with_name(local_path.name + ".part")
    have_bytes = part_path.stat().st_size if part_path.is_file() else 0
    needed_bytes = asset["size"] - min(have_bytes, asset["size"])
    free_bytes = shutil.disk_usage(local_path.parent).free
    if needed_bytes > free_bytes:
        raise DownloadError(
            f"{asset['path']} needs {needed_bytes} more bytes but "
            f"{local_path.parent} has {free_bytes} free."
        )
    if verbose:
        print(
            f"Downloading {asset['path']} ({asset['size'] / 1e6:.1f} MB) from "
            f"dandiset {asset['dandiset_id']} version {asset['version']} "
            f"to {local_path}",
            file=sys.stderr,
        )
    _download_resumable(
        asset["download_url"],
        part_path,
        asset["size"],
        n_retries=n_retries,
        timeout_s=timeout_s,
        verbose=verbose,
    )
    # An empty asset needs no request; its (empty) file is verified all the same.
    part_path.touch()
    problem = _verification_problem(part_path, asset)
    if problem is not None:
        part_path.unlink(missing_ok=True)
        raise DownloadError(
            f"The download of {local_path.name} from {asset['download_url']} is "
            f"damaged ({problem}); the partial file was deleted."
        )
    os.replace(part_path, local_path)
    if verbose:
        print(f"Saved {local_path}", file=sys.stderr)


def _download_resumable(url, part_path, size_bytes, *, n_retries, timeout_s, verbose):
    """Fill ``part_path`` up to ``size_bytes`` bytes, resuming after each failure.

    Stops when the file has reached (or passed) the expected size, and raises
    ``DownloadError`` after ``n_retries`` failed retries, keeping the partial
    file for a later call to resume.
    """
    for attempt in range(n_retries + 1):
        offset = part_path.stat().st_size if part_path.exists() else 0
        if offset > size_bytes:
            # Not a prefix of this asset (left by another version of it).
            part_path.unlink()
            offset = 0
        if offset == size_bytes:
            return
        try:
            _download_once(url, part_path, offset, size_bytes, timeout_s, verbose)
        except _TransientError as exc:
            failure = str(exc)
        else:
            received = part_path.stat().st_size
            if received >= size_bytes:
                return
            failure = (
                f"the connection closed after {received} of {size_bytes} bytes"
            )
        if attempt == n_retries:
            raise DownloadError(
                f"Downloading {url} failed {attempt + 1} times; last: {failure}. "
                f"The partial file {part_path} is kept and will be resumed."
            )
        if verbose:
            print(f"Retrying ({failure})", file=sys.stderr)
        _sleep_before_retry(attempt)


def _download_once(url, part_path, offset, size_bytes, timeout_s, verbose):
    """One HTTP request: append from ``offset`` (206) or rewrite from zero (200)."""
    headers = {"User-Agent": _user_agent()}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    # urllib follows the archive's redirect to the storage bucket and keeps
    # the Range header on the redirected request.
    request = Request(url, headers=headers)
    try:
        response = urlopen(request, timeout=timeout_s)
    except HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            # The partial file is not a prefix of the asset (it was replaced
            # or grew past it): start again from zero.
            part_path.unlink(missing_ok=True)
            raise _TransientError(f"range {offset}- not satisfiable") from exc
        if exc.code in _TRANSIENT_STATUSES:
            raise _TransientError(_describe_http_error(url, exc)) from exc
        raise DownloadError(_describe_http_error(url, exc)) from exc
    except _CONNECTION_ERRORS as exc:
        raise _TransientError(f"{type(exc).__name__}: {exc}") from exc

    with response:
        if offset and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                part_path.unlink(missing_ok=True)
                raise _TransientError(
                    f"asked for bytes {offset}- but got Content-Range "
                    f"{content_range!r}; restarting from zero"
                )
            mode = "ab"
        elif response.status == 200:
            # The server sent the whole file, ignoring any range.
            mode, offset = "wb", 0
        else:
            raise DownloadError(
                f"Unexpected HTTP {response.status} for {url} (asked for "
                f"bytes {offset}-)."
            )
        received = offset
        next_report = 0.0
        with open(part_path, mode) as file:
            # One byte past the advertised size is enough to know the body is
            # too long; an endless body is cut there.
            while received <= size_bytes:
                try:
                    # read1 returns what has arrived, so the bytes received
                    # before a stall are kept when the read times out.
                    chunk = response.read1(min(_CHUNK_SIZE, size_bytes + 1 - received))
                except _CONNECTION_ERRORS as exc:
                    raise _TransientError(f"{type(exc).__name__}: {exc}") from exc
                if not chunk:
                    break
                file.write(chunk)
                received += len(chunk)
                if verbose and received >= next_report * size_bytes:
                    print(
                        f"  {received / 1e6:.1f} / {size_bytes / 1e6:.1f} MB",
                        file=sys.stderr,
                    )
                    next_report = min(received / size_bytes, 1.0) + 0.1
        if received > size_bytes:
            part_path.unlink(missing_ok=True)
            raise DownloadError(
                f"{url} sent more than the advertised size (size: expected "
                f"{size_bytes} bytes, got {received} or more); the partial file "
                "was deleted."
            )
