"""fmps.Model against `fmps predict`, fmps.train, fmps.read_metrics, Ctrl-C."""

import _thread
import os
import subprocess
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp

import fmps


def write_libsvm(path, X, y):
    with open(path, "w", encoding="ascii") as f:
        for r in range(X.shape[0]):
            row = X.getrow(r)
            feats = " ".join(f"{j}:{v:.9g}" for j, v in zip(row.indices, row.data))
            f.write(f"{int(y[r])} {feats}\n")


def test_predictions_equal_fmps_predict(tmp_path, planted, fmps_binary):
    X, y = planted(3000, cols=200, nnz=10)
    clf = fmps.FMClassifier(epochs=2).fit(X, y)
    model_path = tmp_path / "model.fmps"
    model_path.write_bytes(clf.model_bytes_)
    write_libsvm(tmp_path / "x.libsvm", X, y)
    out = tmp_path / "pred.txt"
    subprocess.run([fmps_binary, "predict", "--model", str(model_path), "--data",
                    str(tmp_path / "x.libsvm"), "--out", str(out)], check=True)
    cli = np.loadtxt(out)
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], cli, rtol=0, atol=1e-6)
    model = fmps.Model.load(model_path)
    np.testing.assert_allclose(model.predict(X, threads=3), cli, rtol=0, atol=1e-6)


def test_model_parameters_as_arrays(planted):
    X, y = planted(500, cols=40, nnz=5)
    clf = fmps.FMRegressor(k=4).fit(X, y.astype(float))
    model = fmps.Model.from_bytes(clf.model_bytes_)
    assert model.loss == "squared" and model.k == 4
    assert model.keys.dtype == np.uint64 and np.all(np.diff(model.keys.astype(np.int64)) > 0)
    assert model.w.shape == (len(model.keys),) and model.v.shape == (len(model.keys), 4)
    # score of row 0 from the parameters, by the FM formula, on the row scaled to unit norm
    # (data.normalize: instance, the default)
    row = X.getrow(0)
    where = np.searchsorted(model.keys, row.indices.astype(np.uint64))
    x = row.data.astype(np.float64)
    x /= np.linalg.norm(x)
    w, v = model.w[where].astype(np.float64), model.v[where].astype(np.float64)
    s = v.T @ x
    expected = model.bias + w @ x + 0.5 * (s @ s - ((v**2).T @ (x**2)).sum())
    assert model.decision_function(X[:1])[0] == pytest.approx(expected, abs=1e-5)


def test_damaged_model_bytes_are_refused():
    with pytest.raises(ValueError, match="not an fmps model file"):
        fmps.Model.from_bytes(b"this is not a model file")


def test_train_runs_a_yaml_job_and_read_metrics(tmp_path, planted):
    X, y = planted(2000, cols=100, nnz=8)
    write_libsvm(tmp_path / "train.libsvm", X, y)
    config = {"data": {"train": str(tmp_path / "train.libsvm"), "format": "libsvm",
                       "test": str(tmp_path / "train.libsvm")},
              "output": {"dir": str(tmp_path / "run")}}
    summary = fmps.train(config, train__epochs=2, model__k=4)
    assert summary["epochs"] == 2 and summary["rows_trained"] == 4000
    assert 0.5 < summary["test_auc"] <= 1.0
    events = fmps.read_metrics(tmp_path / "run")
    evals = [e for e in (events.to_dict("records") if hasattr(events, "to_dict") else events)
             if e["event"] == "eval"]
    assert [e["epoch"] for e in evals] == [1, 2]
    with pytest.raises(ValueError, match="train.epochs"):
        fmps.train(config, train__epochs=0)


def test_embed_splits_the_score_into_user_and_item_vectors(tmp_path):
    # A recall model on libffm rows: field 0 the user (keys 0..19), fields 1 and 2 the item
    # (keys 100..139) and its genre (keys 200..209); hash_bits 0, so column j is key j.
    rng = np.random.default_rng(3)
    users, items = rng.integers(0, 20, 4000), rng.integers(100, 140, 4000)
    genres = 200 + items % 10
    labels = ((users % 2) == (items % 2)).astype(int)
    with open(tmp_path / "train.ffm", "w", encoding="ascii") as f:
        for u, i, g, y in zip(users, items, genres, labels):
            f.write(f"{y} 0:{u}:1 1:{i}:1 2:{g}:1\n")
    config = {"data": {"train": str(tmp_path / "train.ffm"), "format": "libffm",
                       "normalize": "none"},
              "model": {"k": 4, "sides": {"user": [0], "item": [1, 2]}},
              "train": {"epochs": 3}, "output": {"dir": str(tmp_path / "run")}}
    fmps.train(config)
    model = fmps.Model.load(tmp_path / "run" / "model.fmps")
    rows = np.repeat(np.arange(50), 3)
    cols = np.stack([users[:50], items[:50], genres[:50]], axis=1).ravel()
    X = sp.csr_matrix((np.ones(150, np.float32), (rows, cols)), shape=(50, 210))
    fields = np.where(np.arange(210) < 100, 0, np.where(np.arange(210) < 200, 1, 2))
    U, own = model.embed(X, "user", fields=fields, own=True)
    I = model.embed(X, "item", fields=fields)
    assert U.shape == (50, 5) and I.shape == (50, 5) and np.all(U[:, 4] == 1.0)
    scores = (U.astype(np.float64) * I).sum(axis=1) + own
    np.testing.assert_allclose(scores, model.decision_function(X, fields=fields), atol=1e-5)
    with pytest.raises(ValueError, match="side"):
        model.embed(X, "movie", fields=fields)


def interrupt_after(seconds):
    """Simulates Ctrl-C (SIGINT in the main thread) after `seconds`; returns its time."""
    sent = {}

    def fire():
        sent["t"] = time.monotonic()
        _thread.interrupt_main()

    threading.Timer(seconds, fire).start()
    return sent


def test_ctrl_c_raises_keyboard_interrupt_within_a_second(tmp_path, planted):
    X, y = planted(200_000, cols=5000, nnz=20)
    clf = fmps.FMClassifier(epochs=1000, batch_size=256)
    sent = interrupt_after(1.0)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, y)
    assert time.monotonic() - sent["t"] < 1.0
    assert not hasattr(clf, "model_bytes_")  # nothing half-fitted
    # a YAML job stopped the same way leaves no model.fmps behind
    write_libsvm(tmp_path / "train.libsvm", X[:20_000], y[:20_000])
    run = tmp_path / "run"
    sent = interrupt_after(1.0)
    with pytest.raises(KeyboardInterrupt):
        fmps.train({"data": {"train": str(tmp_path / "train.libsvm"), "format": "libsvm"},
                    "train": {"epochs": 100000}, "output": {"dir": str(run)}})
    assert time.monotonic() - sent["t"] < 1.0
    assert not (run / "model.fmps").exists()
    assert [p for p in os.listdir(run) if ".tmp" in p] == []
    # the process can train again afterwards
    fmps.FMClassifier(epochs=1).fit(X[:1000], y[:1000])
