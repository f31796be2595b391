"""The settings of ``nldisco run``: defaults, checks, and the TOML file that repeats a run."""

import argparse
import math
import tomllib
from pathlib import Path

from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

# name -> (default, kind). ``None`` as default means "chosen by the model"
# (levels), "the built-in simulated session" (nwb_file) or "chosen from the
# recording" (events, variables, block_duration); such keys are left out of
# the written file.
SETTINGS = {
    "nwb_file": (None, "path"),
    "n_units": (100, "int"),
    "n_trials": (300, "int"),
    "bin_size": (0.05, "float"),
    "smooth_sigma": (0.05, "float"),
    "events": (None, "str_list"),
    "variables": (None, "str_list"),
    "block_duration": (None, "float"),
    "place_grid": (5, "int"),
    "window": (1, "int"),
    "n_latents": (64, "int"),
    "k": (4, "k"),
    "levels": (None, "int_list"),
    "loss": ("mse", "str"),
    "device": ("cpu", "str"),
    "max_iter": (200, "int"),
    "seeds": (3, "int"),
    "seed": (0, "int"),
    "n_jobs": (1, "int"),
    "n_permutations": (200, "int"),
    "quiet": (False, "bool"),
}

DEFAULTS = {name: default for name, (default, _) in SETTINGS.items()}

# ``k`` is one integer (one selection shared by the levels) or one integer
# per level of ``levels`` (a tuple; each level its own budget, as
# ``MatryoshkaSAE(k={level_size: k_level})``).

# Settings that are parameters of an estimator, which checks them itself:
# setting -> parameter.
MODEL_PARAMETERS = {"n_latents": "n_latents", "k": "k", "levels": "level_sizes",
                    "loss": "loss", "device": "device", "max_iter": "max_iter"}
BINNER_PARAMETERS = {"bin_size": "bin_size", "smooth_sigma": "smooth_sigma"}

# The largest seed NumPy's legacy generators (``check_random_state``) accept.
MAX_SEED = 2**32 - 1


class UsageError(Exception):
    """A mistake of the user: reported on one line, exit status 2."""


def read_config(path):
    """Read a run configuration from a TOML file.

    Parameters
    ----------
    path : str or path-like
        A TOML file whose top-level keys are names of :data:`SETTINGS`.

    Returns
    -------
    settings : dict
        The keys found, with checked types (not yet checked for range).

    Raises
    ------
    UsageError
        If the file is missing or unreadable, is not valid TOML, or holds an
        unknown key or a value of the wrong type.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise UsageError(f"no configuration file at {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path} is not valid TOML: {error}") from None
    except UnicodeDecodeError as error:  # TOML is UTF-8
        raise UsageError(f"{path} is not valid TOML: it is not UTF-8 text (byte "
                         f"{error.object[error.start]:#04x} at position {error.start})") from None
    except OSError as error:
        raise UsageError(f"could not read {path}: {error}") from None
    unknown = sorted(set(document) - set(SETTINGS))
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise UsageError(
            f"unknown key(s) {listed} in {path}; expected some of {', '.join(SETTINGS)}"
        )
    settings = {}
    for name, value in document.items():
        settings[name] = _coerce(name, value, f"{name} in {path}")
    if settings.get("nwb_file") is not None:
        # a relative path in the file is relative to the file's folder
        nwb_file = Path(settings["nwb_file"])
        if not nwb_file.is_absolute():
            settings["nwb_file"] = str(path.parent / nwb_file)
    return settings


def _coerce(name, value, where):
    kind = SETTINGS[name][1]
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind in ("str", "path") and isinstance(value, str):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "k" and _is_int(value):
        return value
    if kind == "k" and isinstance(value, list) and value and all(map(_is_int, value)):
        return value[0] if len(value) == 1 else tuple(value)
    if kind == "int_list" and isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        return tuple(value)
    if kind == "str_list" and isinstance(value, list) and all(
        isinstance(item, str) and item for item in value
    ):
        return tuple(value)
    expected = {"int": "an integer", "float": "a number", "str": "a string",
                "path": "a string", "bool": "true or false",
                "int_list": "a list of integers",
                "k": "an integer or a list of integers (one per level)",
                "str_list": "a list of names (strings)"}[kind]
    raise UsageError(f"{where} must be {expected}; got {value!r}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def parse_levels(text):
    """``"8,16,64"`` -> ``(8, 16, 64)``; for ``--levels``."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers such as 16,32,64; got {text!r}"
        ) from None


def parse_names(text):
    """``"cue_time,reward_time"`` -> ``("cue_time", "reward_time")``; for ``--events`` and
    ``--variables``."""
    names = tuple(part.strip() for part in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated names such as cue_time,reward_time; got {text!r}")
    return names


def resolve(file_settings, command_line):
    """Merge defaults, the configuration file and the command line, then check.

    Parameters
    ----------
    file_settings : dict
        From :func:`read_config` (empty without ``--config``).
    command_line : dict
        Options given on the command line (those left out are absent).

    Returns
    -------
    settings : dict
        Every key of :data:`SETTINGS`; command-line values override the
        file's, which override the defaults.

    Raises
    ------
    UsageError
        If a value is out of range or the model settings contradict each
        other.
    """
    settings = {**DEFAULTS, **_lists(file_settings), **_lists(command_line)}
    _check(settings)
    return settings


def _lists(given):
    """``k`` and ``levels`` given as lists, as tuples: the parser gives ``--k 2 4 8`` and
    ``--levels 16 32 64`` (or ``16,32,64``, a tuple per part) as lists, a TOML
    document read without :func:`read_config` too. One ``k`` is the shared ``k``."""
    given = dict(given)
    k = given.get("k")
    if isinstance(k, list):
        given["k"] = k[0] if len(k) == 1 else tuple(k)
    levels = given.get("levels")
    if isinstance(levels, list):
        given["levels"] = tuple(
            size for part in levels for size in (part if isinstance(part, tuple) else (part,)))
    return given


def model_parameters(settings):
    """The ``MatryoshkaSAE`` parameters given by ``settings``.

    A per-level ``k`` (a tuple) becomes the dict ``{level_size: k_level}``
    over ``levels``.
    """
    parameters = {parameter: settings[name] for name, parameter in MODEL_PARAMETERS.items()}
    if per_level_k(settings):
        parameters["k"] = dict(zip(settings["levels"], settings["k"]))
    return parameters


def per_level_k(settings):
    """Whether ``settings`` give each level its own ``k`` (a tuple of them)."""
    return isinstance(settings["k"], tuple)


def baseline_k(settings):
    """The PCA and NMF components of the run: ``k``, or the last level's ``k``
    (the largest, the budget of the whole model) with a per-level ``k``."""
    return settings["k"][-1] if per_level_k(settings) else settings["k"]


def shared_k_settings(settings):
    """``settings`` with one shared ``k`` equal to the last level's (the
    comparison fitted beside a per-level ``k``)."""
    return {**settings, "k": baseline_k(settings)}


def binner_parameters(settings):
    """The ``SpikeBinner`` parameters given by ``settings`` (``smooth_sigma`` 0 is None)."""
    return {"bin_size": settings["bin_size"], "smooth_sigma": settings["smooth_sigma"] or None}


def _check(settings):
    for name in ("n_units", "n_trials", "seeds", "n_permutations", "place_grid", "window"):
        if settings[name] < 1:
            raise UsageError(f"{_option(name)} must be >= 1; got {settings[name]}")
    if settings["n_trials"] < 5:
        raise UsageError(f"--n-trials must be >= 5; got {settings['n_trials']}")
    if settings["n_jobs"] == 0 or settings["n_jobs"] < -1:
        raise UsageError(f"--n-jobs must be a positive int or -1; got {settings['n_jobs']}")
    if settings["seed"] < 0:
        raise UsageError(f"--seed must be >= 0; got {settings['seed']}")
    from ._evaluate import HELD_OUT_SHIFT_OFFSET

    # the run draws with seeds SEED ... SEED + seeds - 1 and SEED + HELD_OUT_SHIFT_OFFSET,
    # each a NumPy seed below 2**32
    largest = MAX_SEED - max(settings["seeds"] - 1, HELD_OUT_SHIFT_OFFSET)
    if settings["seed"] > largest:
        raise UsageError(f"--seed must be <= {largest} (the run also uses seeds up to SEED + "
                         f"{max(settings['seeds'] - 1, HELD_OUT_SHIFT_OFFSET)}, and a seed "
                         f"is below 2**32); got {settings['seed']}")
    _check_level_k(settings)
    if settings["nwb_file"] is None:
        from ._stages import check_units

        check_units(settings["n_units"], baseline_k(settings),
                    "the simulated session (--n-units)")
    if settings["place_grid"] < 2:
        raise UsageError(f"--place-grid must be >= 2; got {settings['place_grid']}")
    block_duration = settings["block_duration"]
    if block_duration is not None and not (block_duration > 0 and math.isfinite(block_duration)):
        raise UsageError(f"--block-duration must be a number of seconds > 0; "
                         f"got {block_duration}")
    for name, word in (("events", "none"), ("variables", "all")):
        names = settings[name]
        if names is not None and word in names and len(names) > 1:
            raise UsageError(f"{_option(name)}: {word!r} stands alone; got {','.join(names)}")

    from ..models import MatryoshkaSAE, check_device, check_levels
    from ..preprocessing import SpikeBinner

    _check_parameters(SpikeBinner(**binner_parameters(settings)), BINNER_PARAMETERS)
    model = MatryoshkaSAE(**model_parameters(settings))
    _check_parameters(model, MODEL_PARAMETERS)
    try:
        check_levels(model.n_latents, model.k, model.level_sizes)
    except ValueError as error:
        raise UsageError(f"--n-latents, --k and --levels: {error}") from None
    if settings["device"] != "cpu":
        try:
            check_device(settings["device"])
        except (ValueError, RuntimeError) as error:  # torch.device raises RuntimeError
            raise UsageError(f"--device {settings['device']!r}: {error}") from None


def _check_level_k(settings):
    """One ``k`` per level of ``--levels``, each within its level, non-decreasing.

    The command's own words for what ``check_level_k`` of the models checks
    too, and for what only the command can get wrong (the count, and
    several values without ``--levels``: the default levels depend on ``k``).
    """
    k = settings["k"]
    if not per_level_k(settings):
        return
    shown = " ".join(map(str, k))
    levels = settings["levels"]
    if levels is None:
        raise UsageError(f"--k {shown}: one k per level needs --levels (as many level sizes "
                         f"as k values, e.g. --levels "
                         f"{' '.join(str(2 ** (i + 4)) for i in range(len(k)))})")
    if len(k) != len(levels):
        raise UsageError(f"--k {shown} gives {len(k)} values for the {len(levels)} levels "
                         f"{' '.join(map(str, levels))}; give one k per level, or one k "
                         "for all")
    for size, budget in zip(levels, k):
        if not 1 <= budget <= size:
            raise UsageError(f"--k {shown}: level {size} cannot hold k={budget}; each k "
                             "must be between 1 and its level's size")
    if any(later < earlier for earlier, later in zip(k, k[1:])):
        raise UsageError(f"--k {shown} decreases from one level to the next; the k of a "
                         "larger level must be at least that of a smaller one")


def _check_parameters(estimator, parameters):
    """Check each parameter against the estimator's own constraints.

    One parameter at a time, so that the message of scikit-learn's parameter
    validation, passed through, is prefixed by the option it came from.
    """
    values = estimator.get_params(deep=False)
    constraints = type(estimator)._parameter_constraints
    for name, parameter in parameters.items():
        try:
            validate_parameter_constraints(
                {parameter: constraints[parameter]}, {parameter: values[parameter]},
                caller_name=type(estimator).__name__)
        except InvalidParameterError as error:
            raise UsageError(f"{_option(name)}: {error}") from None


def _option(name):
    return "--" + name.replace("_", "-")


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# What a setting left unset (None) means, for the comments of the written file.
_UNSET = {
    "nwb_file": "the built-in simulated session",
    "levels": "(n_latents // 4, n_latents // 2, n_latents), those >= k",
    "events": "the MC_Maze events the trials have, else none",
    "variables": "the MC_Maze selection on an MC_Maze-shaped file, else everything found",
    "block_duration": "without trials, a tenth of the recording",
}


def write_config(settings, path):
    """Write the resolved settings as TOML that :func:`read_config` reads back.

    Parameters
    ----------
    settings : dict
        Output of :func:`resolve`.
    path : path-like
        The file to write.
    """
    lines = ["# nldisco run: the resolved configuration of this run.",
             "# Repeat it with: nldisco run --config config.toml --out OTHER_DIR", ""]
    for name in SETTINGS:
        value = settings[name]
        if value is None:
            lines.append(f"# {name}: not set, {_UNSET[name]}")
            continue
        if name == "nwb_file":
            value = str(Path(value).resolve())
        lines.append(f"{name} = {_toml_value(value)}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
