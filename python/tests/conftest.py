"""Shared fixtures: the fmps binary (FMPS_BINARY, set by ctest) and small data."""

import os
import shutil

import numpy as np
import pytest
import scipy.sparse as sp


@pytest.fixture(scope="session")
def fmps_binary():
    path = os.environ.get("FMPS_BINARY") or shutil.which("fmps")
    if not path:
        pytest.skip("no fmps binary (set FMPS_BINARY)")
    return path


def planted_csr(rows, cols=1000, nnz=39, seed=0):
    """A CSR matrix of `rows` rows with `nnz` one-valued columns each, and labels of a
    planted linear model (so that training has something to learn)."""
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.integers(0, cols, size=(rows, nnz)), axis=1).astype(np.int32)
    indptr = np.arange(0, rows * nnz + 1, nnz, dtype=np.int32)
    X = sp.csr_matrix((np.ones(rows * nnz, dtype=np.float32), indices.ravel(), indptr),
                      shape=(rows, cols))
    X.sum_duplicates()
    w = rng.normal(0, 0.3, size=cols)
    y = (X @ w + rng.normal(0, 0.5, size=rows) > 0).astype(np.int64)
    return X, y


@pytest.fixture
def planted():
    return planted_csr
