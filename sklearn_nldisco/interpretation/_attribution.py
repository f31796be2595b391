"""The units behind a latent: three rankings of units and how well they agree.

A latent of a dictionary model can be tied to units in three ways: by how
strongly it writes to them (its decoder row), by how strongly it reads from
them (its encoder column), and by how the units actually behave while the
latent is active (mean z-scored activity, the way NLDisco ranks
"contributing neurons"). When the three agree, the attribution is robust; when
they disagree, the latent deserves a closer look before it is named.
"""

from itertools import combinations
import warnings

import numpy as np
import pandas as pd
from scipy import sparse, stats
from sklearn.utils.validation import check_array

from ._validation import (
    _check_activity_threshold,
    _check_codes,
    _check_latent,
    _check_n_top,
    _dictionary,
    _unit_names,
)

SCORES = ("decoder", "encoder", "activity")
_SCORE_COLUMNS = {
    "decoder": "decoder_weight",
    "encoder": "encoder_weight",
    "activity": "activity_z",
}


def latent_units(
    latent,
    X,
    codes=None,
    *,
    components=None,
    encoder=None,
    unit_names=None,
    n_top=10,
    activity_threshold=0.0,
    absolute=False,
):
    """Rank the units behind one latent three ways and say how well they agree.

    Each unit gets three scores for the latent:

    - ``decoder_weight``: the latent's decoder row, how much the latent adds to
      the unit when it reconstructs the data;
    - ``encoder_weight``: the latent's encoder column, how much the unit drives
      the latent;
    - ``activity_z``: the unit's mean z-score over the bins in which the latent
      is active (code above ``activity_threshold``), where the z-score uses the
      unit's mean and standard deviation over all bins. This is how NLDisco
      ranks the neurons that contribute to a feature, and it needs no model.

    Parameters
    ----------
    latent : int
        Index of the latent, ``0 <= latent < n_latents``.
    X : {array-like, sparse matrix, DataFrame} of shape (n_bins, n_units) or None
        Activity of the units (for example binned spike counts), the data the
        codes were computed from. None leaves the ``activity_z`` column NaN
        (the weight rankings need no data); ``codes`` must then be given.
    codes : {array-like, sparse matrix} of shape (n_bins, n_latents), default=None
        Latent activations for the bins of ``X``. When None, ``components``
        must be a fitted estimator and ``components.transform(X)`` is used.
    components : array-like of shape (n_latents, n_units) or fitted estimator, \
default=None
        The dictionary: decoder weights, one row per latent, as in
        ``components_`` of scikit-learn decompositions, or a fitted model
        with ``components_``. A model also gives the encoder (its
        ``encoder_weight_``, if any; PCA or NMF have none) and the unit names
        (its ``feature_names_in_``). Without it the ``decoder_weight``
        column is NaN.
    encoder : array-like of shape (n_units, n_latents), default=None
        Encoder weights, one column per latent, when ``components`` is an
        array. Without an encoder the ``encoder_weight`` column is NaN.
    unit_names : array-like of shape (n_units,), default=None
        Names for the ``unit`` column. Defaults to the columns of a DataFrame
        ``X``, then the model's ``feature_names_in_``, then positions.
    n_top : int, default=10
        Size of the top sets compared in the agreement summary (clipped to
        ``n_units``).
    activity_threshold : float, default=0.0
        A latent is active in a bin where its code exceeds this value. For
        signed codes (PCA) the default selects the positive half.
    absolute : bool, default=False
        Rank by magnitude instead of signed value. By default the strongest
        positive weight or activity ranks first, which suits nonnegative
        models; use ``absolute=True`` for models whose signs are arbitrary
        (PCA) or to count inhibited units as contributing.

    Returns
    -------
    units : DataFrame of shape (n_units, 8)
        One row per unit, in the order of the columns of ``X``, with columns
        ``latent``, ``unit``, ``decoder_weight``, ``encoder_weight``,
        ``activity_z``, ``decoder_rank``, ``encoder_rank`` and
        ``activity_rank``. Rank 1 is the strongest; a missing score has a
        missing rank. ``units.attrs`` holds ``"n_active_bins"``,
        ``"n_top"`` and ``"agreement"``, a dict with the Spearman correlation
        and top-``n_top`` Jaccard overlap of each pair of scores (keys such as
        ``"spearman_decoder_activity"`` and ``"jaccard_decoder_activity"``).
        :func:`ranking_agreement` gives the same summary as a table.

    Warns
    -----
    UserWarning
        If the latent is never active. Its ``activity_z`` column and the
        agreement values that involve it are then NaN; the weight rankings are
        still returned.

    Raises
    ------
    ValueError
        If ``latent`` is out of range, if the shapes of ``X``, ``codes``,
        ``components``, ``encoder`` and ``unit_names`` disagree, or if
        ``encoder`` is given with a fitted model as ``components``.

    See Also
    --------
    ranking_agreement : Agreement of the three rankings as a table.
    top_units_table : The top units of several latents in one long table.

    Notes
    -----
    Weights are read in the model's own coordinates: when a model scales its
    input (for example ``scaling="standard"``), its weights refer to scaled
    units, which makes units of different firing rates comparable. A unit
    that never varies has a z-score of 0 in every bin. For a transcoder, whose
    decoder writes to targets rather than to the columns of ``X``, pass the
    arrays that match ``X`` explicitly.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.interpretation._attribution import latent_units
    >>> X = np.array([[0., 0., 1.], [4., 2., 1.], [0., 0., 0.], [5., 3., 0.]])
    >>> codes = np.array([[0.], [1.], [0.], [1.2]])
    >>> components = np.array([[0.9, 0.4, 0.1]])
    >>> units = latent_units(0, X, codes, components=components, n_top=2)
    >>> units[["unit", "decoder_rank", "activity_rank"]]
       unit  decoder_rank  activity_rank
    0     0           1.0            1.0
    1     1           2.0            2.0
    2     2           3.0            3.0
    >>> units.attrs["agreement"]["jaccard_decoder_activity"]
    1.0
    """
    decoder, encoder, model = _resolve_weights(components, encoder)
    if codes is None:
        if model is None or X is None:
            raise ValueError(
                "codes is None; pass the codes of X, or X and a fitted estimator "
                "as components to compute them."
            )
        codes = model.transform(X)
    original_X = X
    if X is None:
        codes = _check_codes(codes)
        n_bins, n_units = codes.shape[0], _n_units_of_weights(decoder, encoder)
    else:
        X = _check_activity(X)
        n_bins, n_units = X.shape
        codes = _check_codes(codes, n_bins)
    n_latents = codes.shape[1]
    decoder, encoder = _check_weights(decoder, encoder, n_units, n_latents)
    latent = _check_latent(latent, n_latents)
    n_top = _check_n_top(n_top)
    activity_threshold = _check_activity_threshold(activity_threshold)
    names = _unit_names(unit_names, n_units, original_X, model)
    names = np.arange(n_units) if names is None else names

    nan = np.full(n_units, np.nan)
    scores = {
        "decoder": nan if decoder is None else decoder[latent].astype(np.float64),
        "encoder": nan if encoder is None else encoder[:, latent].astype(np.float64),
    }
    active = _latent_column(codes, latent) > activity_threshold
    n_active = int(active.sum())
    if X is None:
        scores["activity"] = nan
    elif n_active == 0:
        warnings.warn(
            f"Latent {latent} is never active (code > {activity_threshold}) in the "
            f"{n_bins} bins of X; its activity_z column is NaN.",
            UserWarning,
            stacklevel=2,
        )
        scores["activity"] = nan
    else:
        scores["activity"] = _mean_z_while_active(X, active)

    units = pd.DataFrame({"latent": np.full(n_units, latent), "unit": names})
    for score in SCORES:
        units[_SCORE_COLUMNS[score]] = scores[score]
    for score in SCORES:
        units[f"{score}_rank"] = _rank(scores[score], absolute)
    units.attrs["n_active_bins"] = n_active
    units.attrs["n_top"] = n_top
    units.attrs["agreement"] = _agreement_dict(units, n_top)
    return units


def ranking_agreement(units, n_top=10):
    """Agreement between the decoder, encoder and activity rankings of units.

    Parameters
    ----------
    units : DataFrame
        A table from :func:`latent_units`: one row per unit with the columns
        ``decoder_rank``, ``encoder_rank`` and ``activity_rank`` (rank 1 the
        strongest, NaN where a score is missing).
    n_top : int, default=10
        Size of the top sets whose overlap is measured (clipped to the number
        of units).

    Returns
    -------
    agreement : DataFrame of shape (3, 5)
        One row per pair of rankings with columns ``ranking_a``,
        ``ranking_b``, ``spearman`` (rank correlation over the units that
        have both scores), ``top_n_jaccard`` (size of the intersection over
        size of the union of the two top-``n_top`` sets) and ``n_units``
        (units with both scores). Values are NaN where a ranking is missing
        or fewer than three units have both scores (for ``spearman``).

    Raises
    ------
    ValueError
        If a rank column is missing or ``n_top`` is not a positive integer.

    See Also
    --------
    latent_units : Builds the table and stores this summary in its ``attrs``.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_nldisco.interpretation._attribution import ranking_agreement
    >>> units = pd.DataFrame({
    ...     "decoder_rank": [1, 2, 3, 4],
    ...     "encoder_rank": [1, 2, 4, 3],
    ...     "activity_rank": [4, 3, 2, 1],
    ... })
    >>> ranking_agreement(units, n_top=2).round(2)
      ranking_a ranking_b  spearman  top_n_jaccard  n_units
    0   decoder   encoder       0.8            1.0        4
    1   decoder  activity      -1.0            0.0        4
    2   encoder  activity      -0.8            0.0        4
    """
    if not isinstance(units, pd.DataFrame):
        raise TypeError(f"units must be a DataFrame, got {type(units).__name__}.")
    missing = [f"{s}_rank" for s in SCORES if f"{s}_rank" not in units.columns]
    if missing:
        raise ValueError(
            f"units lacks the rank columns {missing}; expected the output of "
            "latent_units."
        )
    n_top = _check_n_top(n_top)
    rows = []
    for first, second in combinations(SCORES, 2):
        rank_a = units[f"{first}_rank"].to_numpy(dtype=np.float64)
        rank_b = units[f"{second}_rank"].to_numpy(dtype=np.float64)
        both = ~(np.isnan(rank_a) | np.isnan(rank_b))
        rows.append({
            "ranking_a": first,
            "ranking_b": second,
            "spearman": _spearman(rank_a[both], rank_b[both]),
            "top_n_jaccard": _top_jaccard(rank_a, rank_b, n_top),
            "n_units": int(both.sum()),
        })
    return pd.DataFrame(rows)


def top_units_table(latents, X, codes=None, *, by="activity", **kwargs):
    """The top units of several latents, one row per latent and unit.

    Parameters
    ----------
    latents : array-like of int
        Indices of the latents.
    X : {array-like, sparse matrix, DataFrame} of shape (n_bins, n_units)
        Activity of the units.
    codes : {array-like, sparse matrix} of shape (n_bins, n_latents), default=None
        Latent activations; computed with ``components.transform(X)`` when
        None (``components`` a fitted estimator).
    by : {"activity", "decoder", "encoder"}, default="activity"
        Ranking that chooses the ``n_top`` units kept for each latent. For a
        latent whose ``by`` score is missing (never active, or no encoder)
        no rows are kept.
    **kwargs
        Passed to :func:`latent_units`: ``components``, ``encoder``,
        ``unit_names``, ``n_top``, ``activity_threshold``, ``absolute``.

    Returns
    -------
    table : DataFrame
        The columns of :func:`latent_units` plus ``n_active_bins`` and the
        agreement values of each latent (``spearman_*`` and ``jaccard_*``),
        sorted by latent and then by the ``by`` rank.

    Raises
    ------
    ValueError
        If ``by`` is not a ranking name, ``latents`` is empty, or
        :func:`latent_units` rejects its arguments.

    See Also
    --------
    latent_units : All units of one latent.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.interpretation._attribution import top_units_table
    >>> X = np.array([[0., 3., 1.], [4., 0., 1.], [0., 2., 0.], [5., 0., 0.]])
    >>> codes = np.array([[0., 1.], [1., 0.], [0., 1.], [1., 0.]])
    >>> table = top_units_table([0, 1], X, codes, n_top=1)
    >>> table[["latent", "unit", "activity_z"]].round(2)
       latent  unit  activity_z
    0       0     0        0.99
    1       1     1        0.96
    """
    if by not in SCORES:
        raise ValueError(f"by must be one of {SCORES}, got {by!r}.")
    latents = np.atleast_1d(np.asarray(latents))
    if latents.size == 0:
        raise ValueError("latents is empty; expected at least one latent index.")
    model = kwargs.get("components")
    if codes is None and hasattr(model, "components_") and hasattr(model, "transform"):
        codes = model.transform(X)
    n_top = _check_n_top(kwargs.get("n_top", 10))
    tables = []
    for latent in latents:
        units = latent_units(latent, X, codes, **kwargs)
        top = units.dropna(subset=[f"{by}_rank"])
        top = top.sort_values(f"{by}_rank", kind="stable").head(n_top).copy()
        top["n_active_bins"] = units.attrs["n_active_bins"]
        for key, value in units.attrs["agreement"].items():
            top[key] = value
        top.attrs = {}
        tables.append(top)
    return pd.concat(tables, ignore_index=True)


# ------------------------------------------------------------------ helpers
def _check_activity(X):
    X = check_array(
        X, accept_sparse=("csr", "csc"), dtype=np.float64, input_name="X"
    )
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must have at least one bin and one unit, got {X.shape}.")
    return X


def _resolve_weights(components, encoder):
    """Decoder and encoder arrays, and the model when ``components`` is one."""
    if components is None or not hasattr(components, "components_"):
        decoder = None if components is None else _dictionary(components)
        return decoder, encoder, None
    if encoder is not None:
        raise ValueError(
            "encoder is given with a fitted estimator as components; the "
            "estimator's encoder_weight_ is used, so pass encoder only with a "
            "components array."
        )
    return (_dictionary(components), getattr(components, "encoder_weight_", None),
            components)


def _n_units_of_weights(decoder, encoder):
    if decoder is not None:
        return decoder.shape[1]
    if encoder is not None:
        return np.shape(encoder)[0]
    raise ValueError(
        "X is None and there are no weights to rank; pass X, components or encoder."
    )


def _check_weights(decoder, encoder, n_units, n_latents):
    if decoder is not None:
        decoder = check_array(decoder, dtype=np.float64, input_name="decoder")
        if decoder.shape != (n_latents, n_units):
            raise ValueError(
                f"components has shape {decoder.shape}; expected one row per latent "
                f"and one column per unit, (n_latents, n_units) = ({n_latents}, "
                f"{n_units}) from codes and X."
            )
    if encoder is not None:
        encoder = check_array(encoder, dtype=np.float64, input_name="encoder")
        if encoder.shape != (n_units, n_latents):
            raise ValueError(
                f"encoder has shape {encoder.shape}; expected (n_units, n_latents) "
                f"= ({n_units}, {n_latents}) from X and codes."
            )
    return decoder, encoder


def _latent_column(codes, latent):
    if sparse.issparse(codes):
        return codes[:, [latent]].toarray().ravel()
    return codes[:, latent]


def _mean_z_while_active(X, active):
    mean = np.asarray(X.mean(axis=0)).ravel()
    if sparse.issparse(X):
        square_mean = np.asarray(X.multiply(X).mean(axis=0)).ravel()
        std = np.sqrt(np.maximum(square_mean - mean**2, 0.0))
    else:
        std = X.std(axis=0)
    # A constant unit never deviates from its mean: z = 0, as StandardScaler does.
    std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
    active_mean = np.asarray(X[np.flatnonzero(active)].mean(axis=0)).ravel()
    return (active_mean - mean) / std


def _rank(score, absolute):
    values = np.abs(score) if absolute else score
    ranks = pd.Series(values).rank(ascending=False, method="min", na_option="keep")
    return ranks.to_numpy(dtype=np.float64)


def _spearman(rank_a, rank_b):
    if rank_a.size < 3 or np.ptp(rank_a) == 0 or np.ptp(rank_b) == 0:
        return np.nan
    return float(stats.spearmanr(rank_a, rank_b).statistic)


def _top_set(ranks, n_top):
    valid = np.flatnonzero(~np.isnan(ranks))
    order = valid[np.argsort(ranks[valid], kind="stable")]
    return set(order[:n_top].tolist())


def _top_jaccard(rank_a, rank_b, n_top):
    if np.all(np.isnan(rank_a)) or np.all(np.isnan(rank_b)):
        return np.nan
    top_a, top_b = _top_set(rank_a, n_top), _top_set(rank_b, n_top)
    return len(top_a & top_b) / len(top_a | top_b)


def _agreement_dict(units, n_top):
    agreement = {}
    for row in ranking_agreement(units, n_top).itertuples(index=False):
        pair = f"{row.ranking_a}_{row.ranking_b}"
        agreement[f"spearman_{pair}"] = float(row.spearman)
        agreement[f"jaccard_{pair}"] = float(row.top_n_jaccard)
    return agreement
