"""Properties of the NumPy inference path (no torch involved)."""

import numpy as np
import pytest
from hypothesis import given, settings
from conftest import assert_same_codes
from hypothesis import strategies as st

from sklearn_nldisco.models._inference import decode, encode, fold_encoder


def _folded(rng, n_inputs, n_latents):
    encoder = rng.standard_normal((n_inputs, n_latents)).astype(np.float32)
    bias = rng.standard_normal(n_latents).astype(np.float32)
    input_bias = rng.standard_normal(n_inputs).astype(np.float32)
    mean = rng.standard_normal(n_inputs)
    scale = rng.uniform(0.5, 2.0, n_inputs)
    return fold_encoder(encoder, bias, input_bias, mean, scale), (encoder, bias, input_bias, mean, scale)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_rows=st.integers(1, 300),
    n_inputs=st.integers(1, 12),
    n_latents=st.integers(1, 40),
    k=st.integers(1, 6),
    chunk_rows=st.sampled_from([8, 16, 64, 512]),
    n_threads=st.integers(1, 3),
    sparsity=st.sampled_from(["batchtopk", "topk"]),
)
def test_codes_do_not_depend_on_chunking_threads_order_or_layout(
    seed, n_rows, n_inputs, n_latents, k, chunk_rows, n_threads, sparsity
):
    rng = np.random.RandomState(seed)
    (weight, offset), _ = _folded(rng, n_inputs, n_latents)
    X = rng.standard_normal((n_rows, n_inputs)) * 3
    kwargs = dict(threshold=0.5, k=k, sparsity=sparsity)
    # A row's code is the same alone, in any subset, in any order, whatever
    # the number of threads and the output layout (the same latents, values
    # up to the float32 rounding of the product; see assert_same_codes).
    reference = encode(X, weight, offset, chunk_rows=chunk_rows, n_threads=1, **kwargs)
    threaded = encode(X, weight, offset, chunk_rows=chunk_rows, n_threads=n_threads, **kwargs)
    assert_same_codes(threaded, reference)
    sparse = encode(X, weight, offset, chunk_rows=chunk_rows, n_threads=n_threads,
                    sparse_output=True, **kwargs)
    assert_same_codes(sparse, reference)
    order = rng.permutation(n_rows)
    assert_same_codes(
        encode(X[order], weight, offset, chunk_rows=chunk_rows, **kwargs), reference[order]
    )
    row = int(rng.randint(n_rows))
    assert_same_codes(
        encode(X[row : row + 1], weight, offset, chunk_rows=chunk_rows, **kwargs),
        reference[row : row + 1],
    )
    # Other chunk sizes change the product's rounding only (never by more
    # than float32 round-off).
    other = encode(X, weight, offset, chunk_rows=max(1, chunk_rows // 3), **kwargs)
    np.testing.assert_allclose(other, reference, rtol=1e-5, atol=1e-5)
    assert np.all(reference >= 0)
    if sparsity == "topk":
        assert np.all(np.count_nonzero(reference, axis=1) <= k)
    else:
        # folded map + threshold is the unfolded rule, entry by entry
        pre = X.astype(np.float32) @ weight + offset
        np.testing.assert_array_equal(reference > 0, pre > np.float32(0.5))


def test_folding_matches_the_unfolded_encoder():
    rng = np.random.RandomState(0)
    (weight, offset), (encoder, bias, input_bias, mean, scale) = _folded(rng, 7, 9)
    X = rng.standard_normal((50, 7))
    direct = ((X - mean) / scale - input_bias) @ encoder + bias
    np.testing.assert_allclose(X @ weight + offset, direct, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("loss", ["mse", "poisson", "msle"])
def test_decode_uses_only_the_level_prefix(loss):
    rng = np.random.RandomState(1)
    codes = np.abs(rng.standard_normal((20, 12)))
    decoder = rng.standard_normal((12, 5))
    kwargs = dict(loss=loss, target_mean=np.zeros(5), target_scale=np.ones(5))
    prefix = decode(codes, decoder, np.zeros(5), n_used=4, **kwargs)
    zeroed = codes.copy()
    zeroed[:, 4:] = 0
    np.testing.assert_allclose(prefix, decode(zeroed, decoder, np.zeros(5), n_used=12, **kwargs))
    if loss != "mse":
        assert np.all(prefix > 0)  # softplus link: positive rates
