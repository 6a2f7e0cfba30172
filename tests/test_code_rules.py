"""The code's own rules (issue 17, "The code"), checked on the product packages (surrogate/, serving/, training/):

- no function over cyclomatic complexity 12 (ruff's mccabe check, C901, configured in pyproject.toml);
- no class over 300 lines, except those listed in :data:`OVERSIZED` with the reason, each checked to be still
  over (so the entry goes when the class is split);
- no import of a private module (``bentoml._internal``, ``_bentoml_impl``, ``optuna.…._…``) except those in
  :data:`PRIVATE_ALLOWED`: Optuna's RDB table models in
  ``surrogate/storage.py``, whose use is documented there and tested by reading every write back through
  Optuna's public API (tests/test_campaign_faults.py).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("surrogate", "serving", "training")
MAX_CLASS_LINES = 300
OVERSIZED = {
    "surrogate/models/physics_gp.py:PhysicsPriorGP": (
        "the physics-prior GP (about 500 lines): its kernel and hyper-parameter fit are still methods of the "
        "estimator; splitting them out is open (issue 15 owns the models)"
    ),
}
PRIVATE_IMPORT = re.compile(
    r"^\s*(?:from|import)\s+(_(?!_future__)[\w.]+|(?:bentoml|optuna|mlflow|sklearn|botorch)(?:\.\w+)*\._[\w.]*)",
    re.MULTILINE,
)
"""An import of a private module of a library the product builds on (``optuna.storages._rdb``, ``bentoml._internal``,
``_bentoml_impl`` ...); group 1 is the module."""
PRIVATE_ALLOWED = {
    "optuna.storages._rdb": ("surrogate/storage.py",),  # one-transaction batch writes, documented and read back
    # scikit-learn's declarative parameter validation (``_parameter_constraints`` with Interval/StrOptions), the
    # convention issue 17 asks every family to follow; scikit-learn keeps the module private but documents the
    # convention for estimators
    "sklearn.utils._param_validation": (
        "surrogate/models/features.py",
        "surrogate/models/gp.py",
        "surrogate/models/physics_gp.py",
        "surrogate/models/torch_ensemble.py",
        "surrogate/models/trees.py",
    ),
}


def _sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_no_function_is_over_complexity_12():
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run(
        [str(ruff), "check", "--select", "C901", "--output-format", "concise", *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_class_is_over_300_lines_but_the_listed_ones():
    long: dict[str, int] = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                long[f"{path.relative_to(ROOT)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert set(long) - set(OVERSIZED) == set(), long
    assert set(OVERSIZED) - set(long) == set(), "split now: remove it from OVERSIZED"


def test_no_private_api_is_imported_outside_the_documented_storage_writes():
    found = [
        (str(path.relative_to(ROOT)), match.group(1))
        for path in _sources()
        for match in PRIVATE_IMPORT.finditer(path.read_text())
    ]
    assert ("surrogate/storage.py", "optuna.storages._rdb") in found  # the pattern sees the one it allows
    assert [(f, m) for f, m in found if f not in PRIVATE_ALLOWED.get(m, ())] == []
