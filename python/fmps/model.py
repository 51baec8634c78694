"""fmps.Model: a trained model.fmps scoring NumPy/SciPy arrays with the kernel of
``fmps predict``."""

import numpy as np

from fmps import _arrays, _core


class Model:
    """A loaded model (``Model.load(path)`` or ``Model.from_bytes(data)``).

    Column j of X is feature key j (the model's ``data.hash_bits`` must be 0, as for a
    libsvm file whose ids are column numbers). ``fields`` gives each column's field id
    (field-aware models); without it every field is 0."""

    def __init__(self, core):
        self._core = core

    @classmethod
    def load(cls, path):
        return cls(_core.Model.load(str(path)))

    @classmethod
    def from_bytes(cls, data):
        return cls(_core.Model.from_bytes(bytes(data)))

    def decision_function(self, X, fields=None, threads=1):
        """Raw scores (the FM's y before the link), float64, one per row of X."""
        parts = _arrays.csr_parts(X)
        ids = _arrays.field_ids(fields, parts[4], parts)
        return self._core.scores(parts, ids, int(threads)).astype(np.float64)

    def predict(self, X, fields=None, threads=1):
        """What ``fmps predict`` prints: the probability (logistic loss) or the score."""
        s = self.decision_function(X, fields, threads)
        return 1.0 / (1.0 + np.exp(-s)) if self.loss == "logistic" else s

    def embed(self, X, side, fields=None, own=False):
        """Serving vectors of a recall model (``model.sides``), as ``fmps embed`` writes
        them: one row of k + 1 floats per row of X, ``[S_user, 1]`` for ``side="user"`` and
        ``[S_item, item-only terms]`` for ``side="item"`` (float32). Features of the other
        side are ignored, so full interaction rows embed on either side. With ``own=True``
        also returns each row's own part (users: w0 plus the user-only terms), so that
        ``(U * I).sum(1) + own_user`` is the FM score of the (user, item) rows."""
        parts = _arrays.csr_parts(X)
        ids = _arrays.field_ids(fields, parts[4], parts)
        vectors, own_part = self._core.embed(parts, str(side), ids)
        return (vectors, own_part) if own else vectors

    @property
    def loss(self):
        return self._core.loss

    @property
    def k(self):
        return self._core.k

    @property
    def bias(self):
        return float(self._core.bias)

    @property
    def keys(self):
        """The feature keys, ascending (uint64)."""
        return self._core.keys

    @property
    def w(self):
        """Linear weights, one per key (float32)."""
        return self._core.table[:, 0]

    @property
    def v(self):
        """Embeddings, one row per key (float32, shape (len(keys), k) for an FM)."""
        return self._core.table[:, 1:]

    @property
    def config_yaml(self):
        """The training config stored in the model file."""
        return self._core.config_yaml
