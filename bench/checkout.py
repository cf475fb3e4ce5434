"""Find the checkout's virtualenv, so ``python3 bench/...`` works from a plain clone.

The README installs dkmonitor into ``.venv`` at the top of the checkout; the
benchmarks run dkmonitor (and history.py imports SQLAlchemy) from there,
whatever ``python3`` started them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def dkmonitor_python() -> str:
    """The interpreter that has dkmonitor: this one, else the checkout's .venv."""
    if importlib.util.find_spec("dkmonitor") is not None:
        return sys.executable
    venv = CHECKOUT / ".venv" / "bin" / "python"
    if venv.is_file():
        return str(venv)
    sys.exit(
        f"dkmonitor is not installed for {sys.executable} and {venv} does not exist: "
        "install it as the README says (python3 -m venv .venv && .venv/bin/pip install -e .)"
    )


def reexec_with_dkmonitor() -> None:
    """Run this script again under the .venv interpreter when dkmonitor is not importable."""
    python = dkmonitor_python()
    if python != sys.executable:
        os.execv(python, [python, *sys.argv])
