"""The ``nldisco`` command: analyse a recording end to end, or fetch a dataset.

``nldisco run [NWB_FILE] --out DIR`` bins a recording inside its trials,
fits a MatryoshkaSAE with several seeds and PCA and NMF baselines on the
training trials, scores every model on the held-out trials and writes the
models, activations, selectivity table, figures, configuration and headline
metrics to ``DIR``. ``nldisco fetch mc_maze`` downloads MC_Maze from DANDI.
The reference is ``docs/cli.md``.
"""

import argparse
import sys

from ._cli._config import (
    DEFAULTS,
    UsageError,
    parse_levels,
    parse_names,
    read_config,
    resolve,
)

PROG = "nldisco"
# The exit status of a command stopped by Ctrl-C, as shells report it (128 + SIGINT).
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``nldisco: error: ...``, status 2."""

    def error(self, message):
        _fail(message)


def _fail(message):
    message = " ".join(str(message).split())
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def build_parser():
    """The argument parser of ``nldisco``.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    from . import __version__

    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser(
        "run", help="fit and score models on a recording; write the results to a folder",
        description="Fit a MatryoshkaSAE (several seeds), PCA and NMF on the training "
        "trials of a recording, score them on the held-out trials and write everything "
        "to --out. Without NWB_FILE the built-in simulated reaching session is used. "
        "Options not given take their value from --config, else their default.")
    run.add_argument("nwb_file", nargs="?", metavar="NWB_FILE", default=argparse.SUPPRESS,
                     help="NWB file with units, trials optional (default: the simulated "
                     "session)")
    run.add_argument("--out", required=True, metavar="DIR",
                     help="output folder: new or empty, or an earlier run with --overwrite")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an earlier run in --out as a whole")
    run.add_argument("--config", metavar="FILE.toml",
                     help="TOML file of settings; command-line options override it")

    def option(name, type, help, metavar=None, shown=None, **kwargs):
        default = DEFAULTS[name.removeprefix("--").replace("-", "_")]
        if shown is None:
            shown = "chosen by the model" if default is None else default
        run.add_argument(name, type=type, default=argparse.SUPPRESS, metavar=metavar,
                         help=f"{help} (default: {shown})", **kwargs)

    option("--n-units", int, "units of the simulated session", "N")
    option("--n-trials", int, "trials of the simulated session", "N")
    option("--bin-size", float, "bin width in seconds", "S")
    option("--smooth-sigma", float, "Gaussian smoothing of the counts in seconds, 0 for none",
           "S")
    option("--events", parse_names, "trial columns of event times, each starting a task "
           "phase; 'none' for no phases", "A,B", shown="the MC_Maze events present, else none")
    option("--variables", parse_names, "metadata variables to score; 'all' for everything "
           "found", "A,B", shown="everything found; the MC_Maze selection on MC_Maze data")
    option("--block-duration", float, "without trials: seconds per time block (every fifth "
           "block held out)", "S", shown="a tenth of the recording")
    option("--place-grid", int, "cells per axis of the place grid of a position", "N")
    option("--window", int, "bins per time window the models see (1: single bins)", "N")
    option("--n-latents", int, "MSAE dictionary size", "N")
    option("--k", int, "active latents per bin (and PCA/NMF components); one K per level "
           "of --levels gives each level its own", "K", nargs="+")
    option("--levels", parse_levels, "nested level sizes ending at n_latents, separated by "
           "spaces or commas", "SIZE", nargs="+")
    option("--loss", str, "MSAE reconstruction loss: mse, poisson or msle", "LOSS")
    option("--device", str, "torch device: cpu, cuda, cuda:N or auto", "DEVICE")
    option("--max-iter", int, "most training epochs per MSAE fit", "N")
    option("--seeds", int, "number of MSAE seeds, fitted with seeds SEED, SEED+1, ...", "N")
    option("--seed", int, "first random seed (simulation, split, models, null draws)", "SEED")
    option("--n-jobs", int, "MSAE seeds fitted in parallel (-1: all cores)", "N")
    option("--n-permutations", int, "null draws per latent for selectivity", "N")
    run.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                     help="print no progress lines")

    fetch = commands.add_parser(
        "fetch", help="download a dataset into the cache and print its path",
        description="Download a dataset from the DANDI archive (or find it in the cache) "
        "and print its local path.")
    fetch.add_argument("dataset", choices=["mc_maze"], help="the dataset")
    fetch.add_argument("--size", default="small", choices=["small", "medium", "large", "full"],
                       help="which release (default: small)")
    fetch.add_argument("--split", default="train", choices=["train", "test"],
                       help="the train or the test file (default: train)")
    fetch.add_argument("--data-home", metavar="DIR", default=None,
                       help="cache folder (default: $NLDISCO_DATA, else ~/nldisco_data)")
    fetch.add_argument("--api-url", default=None, help=argparse.SUPPRESS)
    fetch.add_argument("--quiet", action="store_true", help="print only the path")
    return parser


def _run(args):
    from ._cli._run import run

    given = {name: value for name, value in vars(args).items()
             if name not in ("command", "out", "config", "overwrite")}
    file_settings = read_config(args.config) if args.config else {}
    settings = resolve(file_settings, given)
    artefacts = run(settings, args.out, overwrite=args.overwrite)
    if not settings["quiet"]:
        print(f"report: {artefacts['report']} (open it in a browser)")
    return artefacts


def _fetch(args):
    from .datasets import DownloadError, fetch_mc_maze

    kwargs = {} if args.api_url is None else {"api_url": args.api_url}
    try:
        path = fetch_mc_maze(args.size, data_home=args.data_home, split=args.split,
                             verbose=not args.quiet, **kwargs)
    except (ValueError, OSError, DownloadError) as error:
        raise UsageError(str(error)) from None
    print(path)
    return path


def main(argv=None):
    """Entry point of the ``nldisco`` command.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments, without the program name; None reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success. A user mistake prints one line ``nldisco: error: ...``
        on stderr and exits with status 2 (``SystemExit``); Ctrl-C prints
        ``nldisco: interrupted`` and exits with status 130, ``--out`` left
        as it was.
    """
    try:
        args = build_parser().parse_args(argv)
        if args.command == "run":
            _run(args)
        else:
            _fetch(args)
    except UsageError as error:
        _fail(error)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
