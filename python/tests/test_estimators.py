"""FMClassifier / FMRegressor: scikit-learn's own checks, the breast-cancer example,
labels, validation, eval_set, pickling."""

import os
import pickle
import tempfile
import threading

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fmps


# Every check runs; those that cannot pass are listed with their reason in
# fmps/estimator.py (_XFAIL_CHECKS, the `_xfail_checks` tag) and reported as xfail.
@parametrize_with_checks([fmps.FMClassifier(), fmps.FMRegressor()])
def test_sklearn_check(estimator, check):
    check(estimator)


def breast_cancer_split():
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def test_breast_cancer_default_hyper_parameters_reach_auc_099():
    X_train, X_test, y_train, y_test = breast_cancer_split()
    clf = fmps.FMClassifier().fit(X_train, y_train)
    assert roc_auc_score(y_test, clf.predict_proba(X_test)[:, 1]) >= 0.99


def test_eval_set_records_metrics_per_epoch():
    X_train, X_test, y_train, y_test = breast_cancer_split()
    clf = fmps.FMClassifier(epochs=3).fit(X_train, y_train, eval_set=(X_test, y_test))
    assert len(clf.evals_result_["valid_auc"]) == 3
    assert len(clf.evals_result_["valid_logloss"]) == 3
    # the last epoch's validation AUC is the AUC of the fitted model
    auc = roc_auc_score(y_test, clf.decision_function(X_test))
    assert clf.evals_result_["valid_auc"][-1] == pytest.approx(auc, abs=1e-6)


def test_eval_set_drives_early_stopping_and_keeps_the_best_epoch():
    X_train, X_test, y_train, y_test = breast_cancer_split()
    clf = fmps.FMClassifier(epochs=40, lr=0.2, early_stop="logloss", patience=2)
    clf.fit(X_train, y_train, eval_set=(X_test, y_test))
    losses = clf.evals_result_["valid_logloss"]
    assert clf.best_epoch_ == 1 + int(np.argmin(losses))
    assert len(losses) <= clf.best_epoch_ + 2  # stopped `patience` epochs after the best
    # the fitted model is the best epoch's, not the last one's
    scores = clf.decision_function(X_test)
    ll = np.mean(np.logaddexp(0.0, -(2.0 * y_test - 1.0) * scores))
    assert ll == pytest.approx(losses[clf.best_epoch_ - 1], abs=1e-5)
    with pytest.raises(ValueError, match="early stopping needs validation rows"):
        fmps.FMClassifier(early_stop="auc").fit(X_train, y_train)


def test_any_two_labels_map_to_0_1_and_back():
    X_train, X_test, y_train, _ = breast_cancer_split()
    names = np.array(["benign", "malignant"])[y_train]
    clf = fmps.FMClassifier().fit(X_train, names)
    assert list(clf.classes_) == ["benign", "malignant"]
    assert set(clf.predict(X_test)) <= {"benign", "malignant"}
    with pytest.raises(ValueError, match="two classes"):
        fmps.FMClassifier().fit(X_train[:3], np.array([0, 1, 2]))


def test_hyper_parameters_are_validated_with_fmps_messages():
    X_train, _, y_train, _ = breast_cancer_split()
    with pytest.raises(ValueError, match="model.k"):
        fmps.FMClassifier(k=0).fit(X_train, y_train)
    with pytest.raises(ValueError, match="optimizer.name"):
        fmps.FMClassifier(optimizer="lbfgs").fit(X_train, y_train)
    # a key the chosen optimizer does not use is rejected, as in a YAML file
    with pytest.raises(ValueError, match="optimizer.beta1"):
        fmps.FMClassifier(beta1=0.8).fit(X_train, y_train)
    assert "k: 16" in fmps.FMRegressor(k=16).effective_config()


def test_kind_ffm_trains_a_field_aware_model(planted):
    # kind="ffm" with per-column fields: model.fields is their count, and the fitted model
    # is field-aware (the FFM kernel scores it); without fields (libsvm rows) it is refused.
    X, y = planted(2000, cols=60, nnz=6)
    fields = np.arange(60) % 3
    clf = fmps.FMClassifier(kind="ffm", k=4, epochs=2, fields=fields).fit(X, y)
    assert "kind: ffm" in clf.effective_config() and "fields: 3" in clf.effective_config()
    model = fmps.Model.from_bytes(clf.model_bytes_)
    assert model.v.shape == (len(model.keys), 3 * 4)  # F vectors of k per key
    np.testing.assert_allclose(clf.decision_function(X),
                               model.decision_function(X, fields=fields), atol=1e-6)
    with pytest.raises(ValueError, match="ffm"):
        fmps.FMClassifier(kind="ffm").fit(X, y)


def test_rowwise_adagrad_keeps_one_accumulator_per_vector(planted):
    # rowwise=True sets optimizer.rowwise: a different model from element-wise AdaGrad
    # (one accumulator per latent vector), as good on this data; sgd refuses it.
    X, y = planted(2000, cols=60, nnz=6)
    base = fmps.FMClassifier(k=4, epochs=3).fit(X, y)
    rowwise = fmps.FMClassifier(k=4, epochs=3, rowwise=True).fit(X, y)
    assert "rowwise: true" in rowwise.effective_config()
    assert "rowwise: false" in base.effective_config()
    assert rowwise.model_bytes_ != base.model_bytes_
    assert abs(rowwise.score(X, y) - base.score(X, y)) < 0.05
    with pytest.raises(ValueError, match="optimizer.rowwise"):
        fmps.FMClassifier(optimizer="sgd", rowwise=True).fit(X, y)


def test_pickle_and_clone_round_trip():
    X_train, X_test, y_train, _ = breast_cancer_split()
    clf = fmps.FMClassifier(k=4).fit(X_train, y_train)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.decision_function(X_test), clf.decision_function(X_test))
    assert back.model_bytes_ == clf.model_bytes_
    assert clone(clf).get_params() == clf.get_params()


def test_sparse_and_dense_inputs_give_the_same_model(planted):
    X, y = planted(2000, cols=50, nnz=5)
    dense = fmps.FMClassifier(epochs=2).fit(X.toarray(), y)
    csr = fmps.FMClassifier(epochs=2).fit(X, y)
    csc = fmps.FMClassifier(epochs=2).fit(X.tocsc(), y)
    scores = csr.decision_function(X)
    np.testing.assert_array_equal(dense.decision_function(X), scores)
    np.testing.assert_array_equal(csc.decision_function(X), scores)


def test_fields_per_column(planted):
    X, y = planted(1000, cols=30, nnz=5)
    fields = np.arange(30) // 10  # three fields of ten columns
    clf = fmps.FMClassifier(fields=fields, epochs=2).fit(X, y, eval_set=(X, y))
    assert "format: libffm" in clf.effective_config()
    assert clf.predict_proba(X).shape == (1000, 2)
    with pytest.raises(ValueError, match="one field id per column"):
        fmps.FMClassifier(fields=fields[:5]).fit(X, y)


def test_fit_writes_no_file(planted, tmp_path, monkeypatch):
    """fit keeps the run's outputs (model, summary, metrics) in memory: neither the
    temporary directory nor the working directory gets a file, not even for a while (a
    thread watches both during fit: the job releases the GIL)."""
    tmp, cwd = tmp_path / "tmp", tmp_path / "cwd"
    tmp.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.chdir(cwd)
    assert tempfile.gettempdir() == str(tmp)
    X, y = planted(500, cols=40, nnz=5)
    clf = fmps.FMClassifier(epochs=3, early_stop="logloss", patience=5)
    seen, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            seen.update(os.listdir(tmp), os.listdir(cwd))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        clf.fit(X, y, eval_set=(X, y))
    finally:
        done.set()
        watcher.join()
    assert seen == set()
    assert list(tmp.iterdir()) == [] and list(cwd.iterdir()) == []
    for name in ("model.fmps", "summary.json", "metrics.jsonl"):
        assert not list(tmp_path.rglob(name))
    assert "tempfile" not in vars(fmps.estimator)
    # what the files held comes back all the same
    assert clf.summary_["rows_trained"] == 3 * 500
    assert len(clf.evals_result_["valid_logloss"]) == 3
    assert clf.best_epoch_ is not None
    back = fmps.Model.from_bytes(clf.model_bytes_)
    np.testing.assert_array_equal(back.decision_function(X), clf.decision_function(X))
