"""Turning user arrays into what fmps._core reads in place (a CSR matrix's three arrays)."""

import numpy as np
import scipy.sparse as sp


def csr_parts(X):
    """(indptr, indices, data, rows, cols) of X, which is a SciPy sparse matrix or array, or
    anything np.asarray takes (2-D, numeric). A CSR matrix with matching index dtypes and
    float32/float64 values is passed through without a copy; CSC and dense input are
    converted to CSR once (dense zeros are dropped: they contribute nothing to an FM)."""
    if sp.issparse(X):
        X = X.tocsr()
    else:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got an array of shape {X.shape}")
        X = sp.csr_matrix(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    indptr, indices = X.indptr, X.indices
    if indptr.dtype != indices.dtype:
        wide = np.int64
        indptr, indices = indptr.astype(wide), indices.astype(wide)
    return (np.ascontiguousarray(indptr), np.ascontiguousarray(indices),
            np.ascontiguousarray(X.data), X.shape[0], X.shape[1])


def field_ids(fields, n_features, parts=None):
    """The per-column field ids as a uint32 array of n_features entries, or None. With the
    CSR `parts` of X, also checks that every column index lies in [0, n_features) (the
    engine looks each up in the field ids)."""
    if fields is None:
        return None
    if parts is not None and parts[1].size:
        if parts[1].min() < 0 or parts[1].max() >= n_features:
            raise ValueError(f"X has a column index outside [0, {n_features})")
    ids = np.asarray(fields)
    if ids.shape != (n_features,):
        raise ValueError(f"fields must hold one field id per column ({n_features}), "
                         f"got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= 2**32 - 1):
        raise ValueError("fields must be integers in [0, 2^32 - 2]")
    return np.ascontiguousarray(ids, dtype=np.uint32)


def labels(y):
    """y as a contiguous float32 array."""
    return np.ascontiguousarray(np.asarray(y, dtype=np.float64).ravel(), dtype=np.float32)
