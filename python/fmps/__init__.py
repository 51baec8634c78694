"""fmps from Python: the same engine as the ``fmps`` command, on NumPy and SciPy arrays.

* ``FMClassifier`` / ``FMRegressor``: scikit-learn estimators training the in-process
  single-node job over the arrays (no temporary data files, the GIL released, Ctrl-C raises
  KeyboardInterrupt).
* ``Model.load(path)``: a ``model.fmps`` scoring arrays, its parameters as NumPy arrays.
* ``train(config, **overrides)``: ``fmps train`` single-node, returning ``summary.json``.
* ``read_metrics(run_dir)``: ``metrics.jsonl`` as a list of dicts (a DataFrame with pandas).
"""

from fmps._core import FmpsError
from fmps.estimator import FMClassifier, FMRegressor
from fmps.jobs import read_metrics, train
from fmps.model import Model

__all__ = ["FMClassifier", "FMRegressor", "FmpsError", "Model", "read_metrics", "train"]
