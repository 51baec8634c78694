"""FMClassifier and FMRegressor: scikit-learn estimators on the fmps training job.

fit() runs the in-process single-node job (``fmps train`` without mpirun) over the arrays:
column j of X is feature key j, each worker reads its own range of rows of the CSR arrays
in place. Hyper-parameters carry the names of the YAML keys they set (table below) and are
validated by fmps's own config parser, so a bad value raises ValueError with the message
``fmps check`` would print. A parameter left at None keeps the YAML default (and keys that
only apply to another optimizer must stay None, as in a config file).

The model is kept as the bytes of its model.fmps (``model_bytes_``): pickling stores them,
and ``fmps.Model.from_bytes(est.model_bytes_)`` or writing them to a file gives the model
``fmps predict`` reads.
"""

import json
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from fmps import _arrays, _core

# (parameter, YAML key, default). Defaults differ from the YAML's where small in-memory data
# needs it (see README "Python"): epochs 1 -> 20 and batch_size 1024 -> 32, since a data set
# of a few hundred rows would otherwise get a single update; workers 2 -> 1 so that fit is
# deterministic (one worker's async job is, as bsp is).
_PARAMS = [
    ("kind", "model.kind", "fm"),
    ("k", "model.k", 8),
    ("init_std", "model.init_std", 0.01),
    ("l2_w", "model.l2_w", 0.0),
    ("l2_v", "model.l2_v", 0.0),
    ("min_count", "model.min_count", None),
    ("optimizer", "optimizer.name", "adagrad"),
    ("lr", "optimizer.lr", 0.1),
    ("gradient", "optimizer.gradient", None),
    ("initial_accumulator", "optimizer.initial_accumulator", None),
    ("rowwise", "optimizer.rowwise", None),
    ("beta1", "optimizer.beta1", None),
    ("beta2", "optimizer.beta2", None),
    ("eps", "optimizer.eps", None),
    ("l1", "optimizer.l1", None),
    ("ftrl_beta", "optimizer.ftrl_beta", None),
    ("clip_gradient", "optimizer.clip_gradient", None),
    ("epochs", "train.epochs", 20),
    ("batch_size", "train.batch_size", 32),
    ("consistency", "train.consistency", None),
    ("max_delay", "train.max_delay", None),
    ("seed", "train.seed", 0),
    ("early_stop", "train.early_stop.metric", None),
    ("patience", "train.early_stop.patience", None),
    ("min_delta", "train.early_stop.min_delta", None),
    ("normalize", "data.normalize", None),
    ("workers", "cluster.local_workers", 1),
    ("servers", "cluster.local_servers", 1),
]


def _yaml_scalar(value):
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, str):
        return value
    raise ValueError(f"unsupported parameter value {value!r}")


class _FMBase(BaseEstimator):
    _loss = "logistic"

    def __init__(self, *, kind="fm", k=8, init_std=0.01, l2_w=0.0, l2_v=0.0, min_count=None,
                 optimizer="adagrad", lr=0.1, gradient=None, initial_accumulator=None,
                 rowwise=None, beta1=None, beta2=None, eps=None, l1=None, ftrl_beta=None,
                 clip_gradient=None, epochs=20, batch_size=32, consistency=None,
                 max_delay=None, seed=0, early_stop=None, patience=None, min_delta=None,
                 normalize=None, workers=1, servers=1, fields=None):
        self.kind = kind
        self.k = k
        self.init_std = init_std
        self.l2_w = l2_w
        self.l2_v = l2_v
        self.min_count = min_count
        self.optimizer = optimizer
        self.lr = lr
        self.gradient = gradient
        self.initial_accumulator = initial_accumulator
        self.rowwise = rowwise
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.l1 = l1
        self.ftrl_beta = ftrl_beta
        self.clip_gradient = clip_gradient
        self.epochs = epochs
        self.batch_size = batch_size
        self.consistency = consistency
        self.max_delay = max_delay
        self.seed = seed
        self.early_stop = early_stop
        self.patience = patience
        self.min_delta = min_delta
        self.normalize = normalize
        self.workers = workers
        self.servers = servers
        self.fields = fields

    # --- the config -----------------------------------------------------------------
    def _config(self):
        """(YAML text, overrides): the job's config as fmps parses it."""
        fmt = "libsvm" if self.fields is None else "libffm"
        yaml = f"data:\n  train: [arrays]\n  format: {fmt}\nmodel:\n  loss: {self._loss}\n"
        if self.kind == "ffm" and self.fields is not None and len(self.fields):
            # model.fields: the number of fields F, from the per-column field ids
            yaml += f"  kind: ffm\n  fields: {int(np.max(self.fields)) + 1}\n"
        sets = []
        for name, key, _ in _PARAMS:
            value = getattr(self, name)
            # kind "fm" is the default of every fmps; the key exists once FFM does.
            if value is None or (name == "kind" and (value == "fm" or "kind:" in yaml)):
                continue
            sets.append(f"{key}={_yaml_scalar(value)}")
        return yaml, sets

    def effective_config(self):
        """The complete config fit() would run (YAML, every default filled in); raises
        ValueError for an invalid parameter, with fmps's message."""
        yaml, sets = self._config()
        return _core.check_config(yaml, "estimator", sets)

    # --- fitting --------------------------------------------------------------------
    def _check_X(self, X, reset):
        return self._validate_data(X, accept_sparse=["csr", "csc"],
                                   dtype=[np.float64, np.float32], reset=reset)

    def fit(self, X, y, eval_set=None):
        """Trains on X (dense, or SciPy CSR/CSC) and y. With ``eval_set=(X_val, y_val)``
        the validation rows are evaluated after every epoch (the job's test-set evaluation)
        and the metrics recorded in ``evals_result_``. With ``early_stop`` (a metric: auto,
        auc, logloss, rmse) they also judge early stopping (``train.early_stop``): training
        stops after ``patience`` epochs without a gain of ``min_delta`` and the model kept
        is the best epoch's (``best_epoch_``). early_stop without an eval_set raises
        ValueError."""
        X, y = self._validate_data(X, y, accept_sparse=["csr", "csc"],
                                   dtype=[np.float64, np.float32],
                                   y_numeric=self._loss == "squared")
        train_y = self._encode_y(y, fitting=True)
        train_x = _arrays.csr_parts(X)
        ids = _arrays.field_ids(self.fields, self.n_features_in_, train_x)
        test_x = test_y = None
        if eval_set is not None:
            X_val, y_val = eval_set
            test_x = _arrays.csr_parts(self._check_X(X_val, reset=False))
            _arrays.field_ids(self.fields, self.n_features_in_, test_x)  # checks the indices
            test_y = self._encode_y(np.asarray(y_val), fitting=False)
        yaml, sets = self._config()
        # The run's outputs come back in memory: fit writes no file at all.
        self.model_bytes_, summary, events = _core.train_arrays(yaml, sets, train_x, train_y,
                                                                test_x, test_y, ids)
        self.summary_ = json.loads(summary)
        self.evals_result_ = _evals_result([json.loads(e) for e in events])
        self.best_epoch_ = self.summary_.get("best_epoch")
        self._model = _core.Model.from_bytes(self.model_bytes_)
        return self

    # --- prediction -----------------------------------------------------------------
    def _scores(self, X):
        """Raw FM scores, one per row (float64)."""
        check_is_fitted(self, "model_bytes_")
        parts = _arrays.csr_parts(self._check_X(X, reset=False))
        ids = _arrays.field_ids(self.fields, self.n_features_in_, parts)
        return self._model.scores(parts, ids, 1).astype(np.float64)

    # --- pickling: the model travels as its bytes -------------------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())  # (Python 3.11's may be __dict__ itself)
        state.pop("_model", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "model_bytes_" in state:
            self._model = _core.Model.from_bytes(self.model_bytes_)


def _evals_result(events):
    """Per-epoch metrics of the metrics.jsonl eval events: {name: [value per epoch]}."""
    result = {}
    for e in events:
        if e.get("event") != "eval":
            continue
        for key, value in e.items():
            if key.startswith(("test_", "train_")) and key != "test_rows":
                result.setdefault(key.replace("test_", "valid_"), []).append(value)
    return result


class FMClassifier(ClassifierMixin, _FMBase):
    """Binary classification with logistic loss (``model.loss: logistic``). Any two class
    labels: ``classes_[0]`` is trained as 0, ``classes_[1]`` as 1."""

    _loss = "logistic"

    def _encode_y(self, y, fitting):
        if fitting:
            check_classification_targets(y)
            self.classes_ = np.unique(y)
            if len(self.classes_) != 2:
                raise ValueError(f"FMClassifier needs exactly two classes in y, got "
                                 f"{len(self.classes_)} class(es)")
        known = np.isin(y, self.classes_)
        if not known.all():
            raise ValueError(f"eval_set labels {np.unique(y[~known])} are not in classes_")
        return _arrays.labels(y == self.classes_[1])

    def decision_function(self, X):
        """Raw FM scores, one per row: the log-odds of class ``classes_[1]``."""
        return self._scores(X)

    def predict_proba(self, X):
        p = 1.0 / (1.0 + np.exp(-self._scores(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X):
        scores = self._scores(X)
        return self.classes_[(scores > 0).astype(int)]

    def _more_tags(self):
        return {"binary_only": True, "_xfail_checks": _XFAIL_CHECKS}


class FMRegressor(RegressorMixin, _FMBase):
    """Regression with squared loss (``model.loss: squared``)."""

    _loss = "squared"

    def _encode_y(self, y, fitting):
        del fitting
        return _arrays.labels(y)

    def predict(self, X):
        """The FM's score, one per row."""
        return self._scores(X)

    def _more_tags(self):
        return {"_xfail_checks": _XFAIL_CHECKS}


# scikit-learn checks that cannot pass, with the reason (check_estimator skips them): none
# since rows are scaled to unit norm by default (data.normalize: instance); before, the
# checks that fit X ~ N(100, 1) unscaled diverged at the default lr.
_XFAIL_CHECKS = {}
