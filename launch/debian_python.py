"""Shared helper of the launch/ scripts: fall back to Debian's Python for Debian packages.

The python3 on PATH may be a separate interpreter (pyenv, a venv) without the Debian
packages the scripts use (python3-matplotlib, python3-protobuf). reexec_with_system_python()
restarts the running script under /usr/bin/python3 once; it returns only when that is not
possible (no such interpreter, already running it, or already retried).
"""
import os
import sys

SYSTEM_PYTHON = "/usr/bin/python3"
_GUARD = "FMPS_REEXEC_SYSTEM_PYTHON"


def reexec_with_system_python():
    if (os.environ.get(_GUARD) == "1" or not os.path.exists(SYSTEM_PYTHON)
            or os.path.realpath(sys.executable) == os.path.realpath(SYSTEM_PYTHON)):
        return
    os.environ[_GUARD] = "1"
    script = os.path.abspath(sys.argv[0])
    os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, script] + sys.argv[1:])
