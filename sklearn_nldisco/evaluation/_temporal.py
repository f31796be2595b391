"""Temporal metrics: reconstruction per lag, latent ablation and spectral fidelity."""

import numbers

import numpy as np
import pandas as pd
from scipy import signal, sparse
from sklearn.utils import Bunch

from ..models import explained_variance
from ._control import decode

_ABLATION_METHODS = ("auto", "closed_form", "brute_force")
# rows decoded at a time: bounds the memory of the (rows, n_latents) products
_CHUNK_ROWS = 4096
# latents decoded at a time when the decoder rows are read off the model
_CHUNK_LATENTS = 512


def _check_float_2d(X, name):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array; got shape {X.shape}.")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} must be finite; it holds NaN or infinity.")
    return X


def _check_same_shape(X, X_hat, names):
    if X.shape != X_hat.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape; got {X.shape} and "
            f"{X_hat.shape}."
        )


# ----------------------------------------------------------------- ablation
def _affine_decoder(estimator, n_latents, n_units):
    """``(offset, rows)``: the reconstruction at zero codes and each latent's
    decoder row in the data's units, read off the model by decoding the zero
    code and the unit codes (so any affine decoder works: the MSAE with its
    scaling, PCA with or without whitening, NMF, factor analysis)."""
    offset = decode(estimator, np.zeros((1, n_latents)))[0]
    rows = np.empty((n_latents, n_units))
    for start in range(0, n_latents, _CHUNK_LATENTS):
        stop = min(start + _CHUNK_LATENTS, n_latents)
        unit_codes = np.zeros((stop - start, n_latents))
        unit_codes[np.arange(stop - start), np.arange(start, stop)] = 1.0
        rows[start:stop] = decode(estimator, unit_codes) - offset
    return offset, rows


def _dense(block):
    return block.toarray() if sparse.issparse(block) else np.asarray(block)


def _closed_form_increase(codes, residual, rows):
    """``sum_i ||r_i + z_ij d_j||^2 - ||r_i||^2 = 2 z_j . (r d_j) + ||z_j||^2 ||d_j||^2``
    for every latent ``j`` at once, by chunks of rows."""
    cross = np.zeros(rows.shape[0])
    code_energy = np.zeros(rows.shape[0])
    for start in range(0, residual.shape[0], _CHUNK_ROWS):
        block = _dense(codes[start : start + _CHUNK_ROWS])
        cross += np.einsum("ij,ij->j", block, residual[start : start + _CHUNK_ROWS] @ rows.T)
        code_energy += np.einsum("ij,ij->j", block, block)
    return 2.0 * cross + code_energy * np.einsum("ij,ij->i", rows, rows)


def _brute_force_increase(estimator, codes, X, residual):
    """Decode again with each latent zeroed; only the rows where it is active change."""
    codes = sparse.csc_matrix(codes) if sparse.issparse(codes) else np.asarray(codes)
    increase = np.zeros(codes.shape[1])
    for latent in range(codes.shape[1]):
        column = _dense(codes[:, [latent]]).ravel()
        active = np.flatnonzero(column)
        for start in range(0, active.size, _CHUNK_ROWS):
            rows = active[start : start + _CHUNK_ROWS]
            ablated = _dense(codes[rows]).astype(np.float64, copy=True)
            ablated[:, latent] = 0.0
            new_residual = X[rows] - decode(estimator, ablated)
            increase[latent] += (np.square(new_residual).sum()
                                 - np.square(residual[rows]).sum())
    return increase


def latent_ablation(estimator, X, *, method="auto"):
    """Increase in reconstruction error when each latent's code is set to zero.

    ``X`` is coded once (``codes = estimator.transform(X)``); for each latent
    ``j``, column ``j`` of the codes is set to zero and the codes are decoded
    (``inverse_transform``) without coding again, so the other latents keep
    the values they had. The increase in the sum of squared errors is how
    much of the reconstruction of ``X`` rests on that latent alone. Pass
    held-out rows (not the rows the model was fitted on).

    For a model whose decoder is affine (the Matryoshka models with
    ``loss="mse"``, PCA, NMF, factor analysis), zeroing latent ``j`` removes
    ``z_j d_j`` from the reconstruction, where ``z_j`` is the latent's codes
    and ``d_j`` its decoder row in the data's units; with ``r`` the residual
    ``X - X_hat``, the increase is
    ``sum_i ||r_i + z_ij d_j||^2 - ||r_i||^2 = 2 z_j . (r d_j) + ||z_j||^2 ||d_j||^2``,
    computed for every latent at once, without decoding once per latent.
    The decoder rows are read off the model (the reconstruction of each
    unit code minus that of the zero code).

    Parameters
    ----------
    estimator : fitted transformer
        A model with ``transform`` and ``inverse_transform`` (or, as factor
        analysis, ``components_`` and ``mean_``); see
        :func:`~sklearn_nldisco.evaluation.reconstruct`.
    X : array-like of shape (n_samples, n_units)
        Held-out rows.
    method : {"auto", "closed_form", "brute_force"}, default="auto"
        ``"closed_form"``: the formula above (refused, with a ValueError,
        when the decoder is not affine: the Matryoshka models with
        ``loss="poisson"`` decode through an exponential).
        ``"brute_force"``: decode again with each latent zeroed (only the
        rows where it is active, which are the only ones that change).
        ``"auto"``: the closed form where the decoder is affine, else brute
        force.

    Returns
    -------
    ablation : pandas.DataFrame
        One row per latent (index ``latent``, in the order of the codes'
        columns), with columns:

        - ``error_increase``: increase in the sum of squared errors over
          all entries of ``X``, in the data's squared units. It can be
          negative: removing a latent that overshoots lowers the error;
        - ``error_increase_fraction``: ``error_increase`` divided by the
          total variance of ``X`` (``sum((X - mean(X))^2)`` with column
          means), that is, the drop in explained variance
          (:func:`~sklearn_nldisco.models.explained_variance`) when the
          latent is removed;
        - ``active_fraction``: fraction of rows where the latent's code is
          not zero (0 for a latent that is never active, whose ablation
          changes nothing).

        ``ablation.attrs`` holds ``"method"`` (the one used),
        ``"sum_squared_error"`` and ``"total_variance"`` of the intact
        reconstruction.

    See Also
    --------
    reconstruct : The intact reconstruction.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_nldisco.evaluation import latent_ablation
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)) @ np.array([[3.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    >>> pca = PCA(n_components=2).fit(X)
    >>> ablation = latent_ablation(pca, X)
    >>> ablation["error_increase_fraction"].round(2).tolist()
    [0.9, 0.1]
    """
    if method not in _ABLATION_METHODS:
        raise ValueError(f"method must be one of {_ABLATION_METHODS}; got {method!r}.")
    X_given = X
    X = _check_float_2d(X, "X")
    # code X as given: a model fitted on a DataFrame expects its column names
    codes = estimator.transform(X_given)
    if not sparse.issparse(codes):
        codes = np.asarray(codes, dtype=np.float64)
        if codes.ndim != 2:
            raise ValueError(f"the codes of {type(estimator).__name__} are not 2-D; "
                             f"got shape {codes.shape}.")
    else:
        codes = sparse.csr_matrix(codes, dtype=np.float64)
    n_latents = codes.shape[1]
    reconstruction = decode(estimator, codes)
    _check_same_shape(X, reconstruction, ("X", "its reconstruction"))
    residual = X - reconstruction

    used = method
    if method != "brute_force":
        offset, rows = _affine_decoder(estimator, n_latents, X.shape[1])
        affine = True
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            block = codes[start : start + _CHUNK_ROWS]
            expected = np.asarray(block @ rows) + offset
            actual = reconstruction[start : start + _CHUNK_ROWS]
            scale = max(np.abs(actual).max(), np.abs(expected).max(), 1.0)
            if not np.allclose(expected, actual, rtol=0.0, atol=1e-6 * scale):
                affine = False
                break
        if affine:
            used = "closed_form"
            increase = _closed_form_increase(codes, residual, rows)
        elif method == "closed_form":
            raise ValueError(
                f"method='closed_form' needs an affine decoder; the reconstruction of "
                f"{type(estimator).__name__} is not the codes times its decoder rows plus an "
                "offset (a Poisson decoder?). Use method='brute_force' or 'auto'."
            )
        else:
            used = "brute_force"
    if used == "brute_force":
        increase = _brute_force_increase(estimator, codes, X, residual)

    total = float(np.square(X - X.mean(axis=0)).sum())
    if sparse.issparse(codes):
        n_active = np.diff(sparse.csc_matrix(codes).indptr)
    else:
        n_active = np.count_nonzero(codes, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = increase / total if total > 0 else np.full(n_latents, np.nan)
    ablation = pd.DataFrame(
        {"error_increase": increase, "error_increase_fraction": fraction,
         "active_fraction": n_active / X.shape[0]},
        index=pd.RangeIndex(n_latents, name="latent"),
    )
    ablation.attrs.update(method=used, sum_squared_error=float(np.square(residual).sum()),
                          total_variance=total)
    return ablation


# -------------------------------------------------------- spectral fidelity
def _runs(interval_ids, n_samples):
    """``(start, stop)`` of each run of equal consecutive ``interval_ids``."""
    if interval_ids is None:
        return [(0, n_samples)]
    interval_ids = np.asarray(interval_ids)
    if interval_ids.shape != (n_samples,):
        raise ValueError(
            f"interval_ids must have one entry per row of X, shape ({n_samples},); got shape "
            f"{interval_ids.shape}."
        )
    breaks = np.flatnonzero(interval_ids[1:] != interval_ids[:-1]) + 1
    return list(zip(np.r_[0, breaks].tolist(), np.r_[breaks, n_samples].tolist()))


def _default_bands(fs):
    """Octaves below Nyquist: [0, 1/8), [1/8, 1/4), [1/4, 1/2), [1/2, 1] of it."""
    nyquist = fs / 2.0
    edges = nyquist * np.array([0.0, 0.125, 0.25, 0.5, 1.0])
    return np.column_stack([edges[:-1], edges[1:]])


def _check_bands(bands, fs):
    if bands is None:
        return _default_bands(fs)
    bands = np.asarray(bands, dtype=np.float64)
    if (bands.ndim != 2 or bands.shape[1] != 2 or bands.shape[0] == 0
            or not np.all(np.isfinite(bands)) or np.any(bands[:, 0] < 0)
            or np.any(bands[:, 1] <= bands[:, 0])):
        raise ValueError(
            "bands must be a non-empty sequence of (low, high) pairs with 0 <= low < high, in "
            f"the units of fs; got {bands.tolist() if bands.ndim else bands!r}."
        )
    return bands


def spectral_fidelity(X, X_hat, *, fs=1.0, nperseg=None, noverlap=None, bands=None,
                      interval_ids=None):
    """Per-unit Welch spectra of the data and of its reconstruction, and their differences.

    A reconstruction can explain much of the variance and still lose the
    fast fluctuations (or add them): this compares the power spectral
    density of every unit (column) of ``X`` with that of ``X_hat``.
    Spectra come from :func:`scipy.signal.welch` (Hann window, mean removed
    per segment, density scaling). With ``interval_ids``, every stretch of
    consecutive rows with the same id (a trial, a gap-free block) gets its
    own spectrum, and the spectra are averaged, weighted by their number of
    segments; no segment spans two intervals.

    Parameters
    ----------
    X, X_hat : array-like of shape (n_samples, n_units)
        The data and its reconstruction, rows in time order.
    fs : float, default=1.0
        Sampling rate: bins per unit of time (``1 / bin_size_s`` gives
        frequencies in Hz). Frequencies and bands are in its units.
    nperseg : int, default=None
        Welch segment length in rows. None: 256, or the length of the
        shortest interval if shorter. Intervals shorter than ``nperseg``
        are skipped (``n_intervals`` counts the ones used).
    noverlap : int, default=None
        Rows shared by consecutive segments; None: ``nperseg // 2``.
    bands : sequence of (low, high) pairs, default=None
        Frequency bands, in the units of ``fs``; a band holds the
        frequencies ``low <= f < high`` (``f <= high`` for a band that ends
        at or above Nyquist). None: the octaves below Nyquist ``fs / 2``:
        ``[0, 1/8)``, ``[1/8, 1/4)``, ``[1/4, 1/2)`` and ``[1/2, 1]`` of it.
    interval_ids : array-like of shape (n_samples,), default=None
        Each row's interval (``SpikeBinner.interval_ids_``); a new interval
        starts wherever the id changes from one row to the next. None: the
        rows are one stretch of recording.

    Returns
    -------
    result : Bunch
        - ``frequencies``: ndarray of shape (n_frequencies,);
        - ``power``, ``power_hat``: ndarray of shape (n_frequencies,
          n_units), the spectra of ``X`` and ``X_hat`` (density: squared
          units of ``X`` per unit of ``fs``);
        - ``relative_error``: ndarray of shape (n_units,),
          ``sum_f |power_hat - power| / sum_f power`` per unit (0: the same
          spectrum; 1: as much power wrong as there is; NaN for a unit
          with no power);
        - ``bands``: ndarray of shape (n_bands, 2);
        - ``band_power``, ``band_power_hat``: ndarray of shape (n_bands,
          n_units), the power in each band (the density summed over the
          band's frequencies times the frequency step);
        - ``band_relative_error``: ndarray of shape (n_bands, n_units),
          ``(band_power_hat - band_power) / band_power`` (signed: -1 for
          power the reconstruction lacks entirely; NaN where the data has
          none);
        - ``n_intervals``, ``n_segments``: intervals and Welch segments used.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.evaluation import spectral_fidelity
    >>> t = np.arange(2048)
    >>> slow, fast = np.sin(2 * np.pi * 0.02 * t), np.sin(2 * np.pi * 0.3 * t)
    >>> X = np.column_stack([slow + fast])
    >>> result = spectral_fidelity(X, np.column_stack([slow]), bands=[(0, 0.1), (0.2, 0.5)])
    >>> result.band_relative_error[:, 0].round(2)
    array([ 0., -1.])
    """
    X = _check_float_2d(X, "X")
    X_hat = _check_float_2d(X_hat, "X_hat")
    _check_same_shape(X, X_hat, ("X", "X_hat"))
    if not isinstance(fs, numbers.Real) or not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"fs must be a positive number; got {fs!r}.")
    runs = _runs(interval_ids, X.shape[0])
    lengths = np.array([stop - start for start, stop in runs])
    if nperseg is None:
        nperseg = int(min(256, lengths.min()))
    if (not isinstance(nperseg, numbers.Integral) or isinstance(nperseg, bool)
            or nperseg < 2):
        raise ValueError(f"nperseg must be an integer >= 2; got {nperseg!r} (the shortest "
                         f"interval has {lengths.min()} rows).")
    if noverlap is None:
        noverlap = nperseg // 2
    if (not isinstance(noverlap, numbers.Integral) or isinstance(noverlap, bool)
            or not 0 <= noverlap < nperseg):
        raise ValueError(f"noverlap must be an integer in [0, {nperseg}); got {noverlap!r}.")
    bands = _check_bands(bands, fs)

    used = [(start, stop) for start, stop in runs if stop - start >= nperseg]
    if not used:
        raise ValueError(
            f"no interval has nperseg={nperseg} rows (the longest has {lengths.max()}); "
            "pass a smaller nperseg."
        )
    step = nperseg - noverlap
    power = power_hat = 0.0
    n_segments = 0
    for start, stop in used:
        # welch averages the segments of one interval; weigh each by its count
        weight = 1 + (stop - start - nperseg) // step
        options = dict(fs=fs, nperseg=nperseg, noverlap=noverlap, axis=0)
        frequencies, interval_power = signal.welch(X[start:stop], **options)
        _, interval_power_hat = signal.welch(X_hat[start:stop], **options)
        power = power + weight * interval_power
        power_hat = power_hat + weight * interval_power_hat
        n_segments += weight
    power, power_hat = power / n_segments, power_hat / n_segments

    with np.errstate(invalid="ignore", divide="ignore"):
        total = power.sum(axis=0)
        relative_error = np.where(total > 0,
                                  np.abs(power_hat - power).sum(axis=0) / total, np.nan)
        step_frequency = frequencies[1] - frequencies[0]
        nyquist = fs / 2.0
        in_band = np.array([
            (frequencies >= low) & ((frequencies < high) | ((high >= nyquist)
                                                            & (frequencies <= high)))
            for low, high in bands
        ], dtype=np.float64)
        band_power = in_band @ power * step_frequency
        band_power_hat = in_band @ power_hat * step_frequency
        band_relative_error = np.where(band_power > 0,
                                       (band_power_hat - band_power) / band_power, np.nan)
    return Bunch(frequencies=frequencies, power=power, power_hat=power_hat,
                 relative_error=relative_error, bands=bands, band_power=band_power,
                 band_power_hat=band_power_hat, band_relative_error=band_relative_error,
                 n_intervals=len(used), n_segments=int(n_segments))


# ------------------------------------------------------ reconstruction per lag
def reconstruction_per_lag(X_windows_true, X_windows_hat, n_bins_window, n_units):
    """Explained variance of a window model's reconstruction, lag by lag.

    A window model reconstructs every bin of a window of ``n_bins_window``
    consecutive bins; its error usually grows towards the window's edges.
    This splits the explained variance by position in the window.

    Columns are **lag-major, oldest bin first**: a window row holds
    ``n_bins_window`` blocks of ``n_units`` columns, ``[X[t - n + 1], ...,
    X[t - 1], X[t]]`` for the window ending at bin ``t`` (``n`` is
    ``n_bins_window``); column ``(n - 1 - lag) * n_units + unit`` holds
    ``unit`` ``lag`` bins before ``t``. The last block is the window's own
    bin, lag 0. This is the layout of the package's time windows, and of
    ``X[t - n + 1 : t + 1].ravel()`` for rows ``X`` of shape (n_bins,
    n_units).

    Windows at the start of an interval hold filled lags (no earlier bins
    exist there); drop those rows to score only real bins.

    Parameters
    ----------
    X_windows_true : array-like of shape (n_windows, n_bins_window * n_units)
        The windows, lag-major as above.
    X_windows_hat : array-like of shape (n_windows, n_bins_window * n_units)
        Their reconstruction, in the same layout.
    n_bins_window : int
        Bins per window.
    n_units : int
        Units per bin.

    Returns
    -------
    explained_variance : ndarray of shape (n_bins_window,)
        :func:`~sklearn_nldisco.models.explained_variance` of each lag's
        block, pooled over its units, **in lag order**: entry ``lag`` is
        the block ``lag`` bins before the window's own bin (entry 0: the
        window's own bin, the last block of columns; the last entry: the
        oldest bin, the first block).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.evaluation import reconstruction_per_lag
    >>> rng = np.random.default_rng(0)
    >>> windows = rng.normal(size=(500, 6))  # 3 bins of 2 units, oldest first
    >>> reconstruction = windows.copy()
    >>> reconstruction[:, :2] = windows[:, :2].mean(axis=0)  # the oldest bin is lost
    >>> reconstruction_per_lag(windows, reconstruction, 3, 2)
    array([1., 1., 0.])
    """
    for name, value in (("n_bins_window", n_bins_window), ("n_units", n_units)):
        if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
                or value < 1):
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    X_windows_true = _check_float_2d(X_windows_true, "X_windows_true")
    X_windows_hat = _check_float_2d(X_windows_hat, "X_windows_hat")
    _check_same_shape(X_windows_true, X_windows_hat, ("X_windows_true", "X_windows_hat"))
    if X_windows_true.shape[1] != n_bins_window * n_units:
        raise ValueError(
            f"X_windows_true has {X_windows_true.shape[1]} columns; expected n_bins_window * "
            f"n_units = {n_bins_window} * {n_units} = {n_bins_window * n_units}."
        )
    def block(X, lag):
        first = (n_bins_window - 1 - lag) * n_units
        return X[:, first : first + n_units]

    return np.array([
        explained_variance(block(X_windows_true, lag), block(X_windows_hat, lag))
        for lag in range(n_bins_window)
    ])
