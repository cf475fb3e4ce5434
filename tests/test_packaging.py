"""The wheel a plain `pip install .` builds holds every module of the checkout.

An editable install (the test venv) imports from the checkout and never sees a
package missing from setup.py; the README's install does, at the first run.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_module_template_and_migration(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )
    [wheel] = tmp_path.glob("dkmonitor-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    wanted = {str(p.relative_to(ROOT)) for p in (ROOT / "dkmonitor").rglob("*")
              if p.suffix in (".py", ".txt", ".j2") and "__pycache__" not in p.parts}
    wanted |= {"dkmonitor/migrations/" + str(p.relative_to(ROOT / "migrations"))
               for p in (ROOT / "migrations").rglob("*.py") if "__pycache__" not in p.parts}
    assert wanted - inside == set()
