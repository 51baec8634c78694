"""fmps.train (a YAML job, single-node) and fmps.read_metrics."""

import json
import os

from fmps import _core


def _override(key, value):
    """One ``--set`` override: key with ``__`` for dots, value written as YAML (JSON)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return f"{key.replace('__', '.')}={text}"


def train(config, **overrides):
    """Runs a training job like ``fmps train CONFIG.yaml --set ...`` in single-node mode and
    returns its summary.json as a dict.

    ``config`` is a path to a YAML file or a dict of the same structure. Overrides name
    dotted keys with double underscores: ``train(cfg, train__epochs=3, model__k=16)``.
    Errors raise ValueError (bad config, with fmps's message), OSError (files) or
    fmps.FmpsError; Ctrl-C stops the job and raises KeyboardInterrupt."""
    sets = [_override(k, v) for k, v in overrides.items()]
    if isinstance(config, dict):
        out_dir = _core.train_config("config", json.dumps(config), sets)
    else:
        out_dir = _core.train_config(os.fspath(config), "", sets)
    with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as f:
        return json.load(f)


def read_metrics(run_dir):
    """The events of ``run_dir/metrics.jsonl`` (or of that file when given), one dict each;
    a pandas DataFrame when pandas is importable."""
    events = read_events(run_dir)
    try:
        import pandas
    except ImportError:
        return events
    return pandas.DataFrame(events)


def read_events(run_dir):
    """The events of run_dir/metrics.jsonl (or of that file) as a list of dicts."""
    path = os.fspath(run_dir)
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
