"""Time ``nldisco run`` on the built-in data cold (first run) and warm.

A first run pays for what no earlier run left behind: numba compiles the
kernels the run uses and caches them (``cache=True``), and matplotlib builds
its font cache. The script installs the package into a fresh virtual
environment, then runs the command twice, back to back, each with ``--out``
in a new temporary folder:

- *cold*: the first run after the install, with an empty numba cache (the
  package's ``__pycache__`` folders in the new environment, where numba
  writes when they are writable) and an empty matplotlib cache
  (``MPLCONFIGDIR`` in a new folder);
- *warm*: the same command again, with both caches as the cold run left
  them.

The environment is created with ``python -m venv`` in a temporary folder;
``pip install torch==<version>`` then ``pip install <source>`` (not
editable) fill it. ``--system-site-packages`` instead reuses the current
interpreter's packages and installs only this package fresh (with
``--no-deps``): quicker to set up, and the timed runs are the same, since
the numba and matplotlib caches are still new. ``--venv DIR`` reuses an
environment that an earlier call kept (``--keep``): its numba cache files
are deleted before the cold run.

The machine's load (``os.getloadavg``) is printed beside each run: on a
shared machine absolute times vary, the ratio of runs done back to back
less so.

    python benchmarks/bench_cold_start.py
    python benchmarks/bench_cold_start.py --system-site-packages --keep
    python benchmarks/bench_cold_start.py --venv /tmp/nldisco-cold-XXXX/venv --repeats 3
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 1.5
SOURCE = Path(__file__).resolve().parents[1]


def _bin(venv, name):
    return Path(venv) / ("Scripts" if os.name == "nt" else "bin") / name


def create_venv(root, python, source, torch_version, system_site_packages):
    venv = Path(root) / "venv"
    command = [python, "-m", "venv", str(venv)]
    if system_site_packages:
        command.append("--system-site-packages")
    subprocess.run(command, check=True)
    pip = [str(_bin(venv, "python")), "-m", "pip", "install", "--quiet"]
    if system_site_packages:
        subprocess.run(pip + ["--no-deps", str(source)], check=True)
    else:
        subprocess.run(pip + [f"torch=={torch_version}"], check=True)
        subprocess.run(pip + [str(source)], check=True)
    return venv


def package_dir(venv, cwd):
    # run outside the checkout, whose sklearn_nldisco would shadow the installed one
    found = subprocess.run(
        [str(_bin(venv, "python")), "-c",
         "import sklearn_nldisco, os; print(os.path.dirname(sklearn_nldisco.__file__))"],
        check=True, capture_output=True, text=True, cwd=cwd)
    return Path(found.stdout.strip())


def numba_cache_files(directory):
    return [path for pattern in ("*.nbi", "*.nbc") for path in directory.rglob(pattern)]


def _children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(venv, out, environment, extra_args):
    """Wall time, CPU time (user + system, less sensitive to other work on the
    machine) and the 1-minute load average before the run."""
    load = os.getloadavg()[0]
    cpu_start = _children_cpu_s()
    start = time.perf_counter()
    completed = subprocess.run(
        [str(_bin(venv, "nldisco")), "run", "--quiet", "--out", str(out), *extra_args],
        env=environment, capture_output=True, text=True, cwd=out.parent)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        sys.exit(f"nldisco run failed ({completed.returncode}):\n{completed.stderr}")
    return elapsed, _children_cpu_s() - cpu_start, load


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(SOURCE),
                        help="what to pip install (default: this checkout)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that creates the environment")
    parser.add_argument("--torch", default="2.13.0", help="torch version to install")
    parser.add_argument("--system-site-packages", action="store_true",
                        help="reuse the interpreter's packages; install only this one")
    parser.add_argument("--venv", help="reuse this environment (its numba cache is cleared)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--repeats", type=int, default=1, help="warm runs")
    parser.add_argument("run_args", nargs=argparse.REMAINDER,
                        help="after --: more options for nldisco run")
    args = parser.parse_args()
    extra_args = [arg for arg in args.run_args if arg != "--"]

    root = Path(tempfile.mkdtemp(prefix="nldisco-cold-"))
    try:
        setup_start = time.perf_counter()
        if args.venv:
            venv = Path(args.venv)
            setup = "reused"
        else:
            venv = create_venv(root, args.python, args.source, args.torch,
                               args.system_site_packages)
            setup = "venv --system-site-packages" if args.system_site_packages \
                else "venv, all packages"
        setup_s = time.perf_counter() - setup_start
        package = package_dir(venv, root)
        n_before = len(numba_cache_files(package))
        for path in numba_cache_files(package):
            path.unlink()

        environment = dict(os.environ)
        # the package's own __pycache__ holds numba's cache, as for a user
        environment.pop("NUMBA_CACHE_DIR", None)
        environment["MPLCONFIGDIR"] = str(root / "matplotlib")
        rows = [("cold",) + timed_run(venv, root / "out-cold", environment, extra_args)]
        n_cached = len(numba_cache_files(package))
        for repeat in range(args.repeats):
            rows.append(("warm",) + timed_run(venv, root / f"out-warm{repeat}", environment,
                                              extra_args))
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    warm = min(seconds for name, seconds, _, _ in rows if name == "warm")
    warm_cpu = min(cpu for name, _, cpu, _ in rows if name == "warm")
    cold, cold_cpu = rows[0][1:3]
    print(f"environment: {setup} ({setup_s:.0f} s), package in {package}")
    print(f"numba cache files: {n_before} before the cold run (deleted), "
          f"{n_cached} written by it")
    print(f"command: nldisco run --quiet --out DIR {' '.join(extra_args)}".rstrip())
    print()
    print(f"{'run':<6} {'wall (s)':>9} {'cpu (s)':>8} {'load (1 min)':>13}")
    for name, seconds, cpu, load in rows:
        print(f"{name:<6} {seconds:>9.1f} {cpu:>8.1f} {load:>13.2f}")
    print()
    print(f"cold / warm: {cold / warm:.2f} wall, {cold_cpu / warm_cpu:.2f} cpu "
          f"(target at most {TARGET_RATIO})")


if __name__ == "__main__":
    main()
