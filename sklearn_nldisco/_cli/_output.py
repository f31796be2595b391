"""The output folder of ``nldisco run``: new or replaced as a whole, one run at a time.

A run writes into a hidden staging folder beside ``--out`` (same parent, so
the final move is a rename on one file system) and renames it into place
only when every file is written. A lock file beside ``--out``, created with
``O_CREAT | O_EXCL``, keeps a second run from writing to the same folder.
Whatever stops a run (an error, Ctrl-C) removes the staging folder and the
lock: ``--out`` is then as it was before the run.
"""

import contextlib
import os
import re
import shutil
from pathlib import Path

from ._config import UsageError

# Below this much free space beside --out a run is refused before computing:
# about what the smallest run writes (a larger run that fills the disk while
# writing fails then, with one line, leaving --out as it was).
MIN_FREE_BYTES = 2**20

# What a run writes: a folder holding metrics.json and only such names is a
# previous run, which --overwrite may replace. Anything else is never deleted.
RUN_FILES = re.compile(
    r"(metrics\.json|config\.toml|report\.html|selectivity\.csv|latent_ablation\.csv"
    r"|activations\.npz|[A-Za-z0-9_]+\.joblib|[A-Za-z0-9_]+\.png)")


def is_previous_run(folder):
    """Whether ``folder`` holds a run of ``nldisco run`` and nothing else.

    Parameters
    ----------
    folder : pathlib.Path
        An existing folder.

    Returns
    -------
    answer : bool
        True when it has ``metrics.json`` and every entry is a file with a
        name a run writes (``RUN_FILES``).
    """
    entries = list(folder.iterdir())
    return (any(entry.name == "metrics.json" for entry in entries)
            and all(entry.is_file() and not entry.is_symlink()
                    and RUN_FILES.fullmatch(entry.name) for entry in entries))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or we cannot tell: assume alive)
    return True


class OutputFolder:
    """Checks, lock and staging of one run's output folder.

    Use as a context manager: entering checks ``out`` (before any
    computation), takes the lock and creates the staging folder, whose path
    is ``staging``; :meth:`commit` moves the staging folder into place.
    Leaving without a commit (an exception, an interrupt) removes the
    staging folder; leaving always releases the lock.

    Parameters
    ----------
    out : path-like
        The output folder. It may be missing or empty; a previous run is
        replaced only with ``overwrite=True``; anything else is refused.
    overwrite : bool, default=False
        Replace a previous run in ``out`` as a whole.
    hold : callable, default=None
        A context manager factory under which the staging folder is removed
        on leaving (``Interrupts.deferred``: a second Ctrl-C then cannot
        leave half of it behind); None for none.

    Raises
    ------
    UsageError
        On entering: ``out`` is a file, a non-empty folder that is not a
        previous run, a previous run without ``overwrite``, not writable,
        on a file system with less than ``MIN_FREE_BYTES`` free, or locked
        by another run.
    """

    def __init__(self, out, overwrite=False, hold=None):
        out = Path(os.path.abspath(out))
        # a link to a folder: the run replaces the folder it points to, not the link
        self.out = out.resolve() if out.is_symlink() else out
        self.overwrite = overwrite
        self._hold = contextlib.nullcontext if hold is None else hold
        parent, name = self.out.parent, self.out.name
        self.lock = parent / f".{name}.lock"
        self.staging = parent / f".{name}.tmp-{os.getpid()}"
        self._locked = False

    def __enter__(self):
        self._make_parent()
        self._take_lock()
        try:
            # checked under the lock: no other run can fill --out in between
            self._check_target()
        except BaseException:
            self._release_lock()
            raise
        try:
            shutil.rmtree(self.staging, ignore_errors=True)  # a leftover of this pid
            self.staging.mkdir()
        except OSError as error:
            self._release_lock()
            raise UsageError(
                f"cannot write beside the output folder {self.out}: {error}") from None
        return self

    def __exit__(self, kind, value, traceback):
        try:
            with self._hold():
                if self.staging.exists():
                    shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self._release_lock()
        return False

    def _check_target(self):
        out = self.out
        if not out.exists():
            return
        if not out.is_dir():
            raise UsageError(f"--out {out} exists and is not a folder")
        try:
            empty, previous = not any(out.iterdir()), is_previous_run(out)
        except OSError as error:
            raise UsageError(f"cannot read the output folder {out}: {error}") from None
        if empty:
            return  # an empty folder: taken as new
        if not previous:
            raise UsageError(
                f"--out {out} is a folder with other content than a run of nldisco run; "
                "choose a new or empty folder (it is never deleted, even with --overwrite)")
        if not self.overwrite:
            raise UsageError(
                f"--out {out} holds an earlier run; pass --overwrite to replace it as a "
                "whole, or choose another folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise UsageError(f"--out {out} holds an earlier run that cannot be replaced: "
                             "the folder is not writable")

    def _make_parent(self):
        parent = self.out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot create the output folder {self.out}: {error}") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"cannot create the output folder {self.out}: {parent} is not "
                             "writable")
        try:
            free = shutil.disk_usage(parent).free
        except OSError:
            return  # cannot tell: a full disk is then reported when writing
        if free < MIN_FREE_BYTES:
            raise UsageError(
                f"no room for the output folder {self.out}: {free:,} bytes free on its file "
                f"system, and the smallest run writes about {MIN_FREE_BYTES // 2**20} MiB")

    def _take_lock(self):
        for _ in range(2):
            try:
                descriptor = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._lock_holder()
                if holder is None or _pid_alive(holder):
                    who = "another run" if holder is None else f"another run (process {holder})"
                    raise UsageError(
                        f"{who} is writing to {self.out}; wait for it to finish, or remove "
                        f"{self.lock} if no run is active") from None
                # the lock of a run that died without releasing it
                with contextlib.suppress(FileNotFoundError):
                    self.lock.unlink()
                continue
            except OSError as error:
                raise UsageError(
                    f"cannot create the output folder {self.out}: {error}") from None
            with os.fdopen(descriptor, "w") as lock:
                lock.write(f"{os.getpid()}\n")
            self._locked = True
            return
        raise UsageError(f"another run is writing to {self.out}; remove {self.lock} if no "
                         "run is active")

    def _lock_holder(self):
        try:
            return int(self.lock.read_text().strip())
        except (OSError, ValueError):
            return None  # being written, or unreadable: treated as held

    def _release_lock(self):
        if self._locked:
            with contextlib.suppress(FileNotFoundError):
                self.lock.unlink()
            self._locked = False

    def commit(self):
        """Move the staging folder into place, replacing a previous run as a whole.

        Returns
        -------
        out : pathlib.Path
        """
        out = self.out
        if os.path.ismount(out):
            # a mount point (a container's volume) cannot be renamed: its
            # content is replaced in place, the earlier run's files first
            for entry in out.iterdir():
                entry.unlink()
            for entry in sorted(self.staging.iterdir()):
                shutil.move(entry, out / entry.name)
            self.staging.rmdir()
        elif out.exists() and any(out.iterdir()):
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(out, old)
            try:
                os.rename(self.staging, out)
            except BaseException:
                os.rename(old, out)  # put the earlier run back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            if out.exists():
                out.rmdir()
            os.rename(self.staging, out)
        return out
