"""The README's Python examples run as written (its ```python blocks of "## Python", in
order, in one namespace, in a scratch directory)."""

import os
import re

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def python_blocks():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert len(blocks) >= 3 and "load_breast_cancer" in blocks[0]
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, README, "exec"), namespace)  # noqa: S102 (the README's own code)
    out = capsys.readouterr().out
    auc = float(re.search(r"test AUC (\S+)", out).group(1))
    assert auc >= 0.99
    assert (tmp_path / "runs" / "breast_cancer" / "model.fmps").exists()
