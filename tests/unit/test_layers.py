"""The package's layers hold at run time: `import ml_app` is cheap, the CLI loads no web stack."""

from __future__ import annotations

import subprocess
import sys

from ml_app.core.config import PROJECT_ROOT

HEAVY = ("flask", "werkzeug", "onnxruntime", "sklearn", "numpy")


def _imported_after(code: str) -> set[str]:
    """Top-level modules loaded in a fresh interpreter after running `code`."""
    script = (
        f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


def test_importing_the_package_loads_nothing_heavy():
    loaded = _imported_after("import ml_app")
    assert loaded.isdisjoint(HEAVY), loaded & set(HEAVY)


def test_the_cli_lists_models_without_flask_or_onnx_runtime(demo_store):
    code = (
        "from ml_app.ops.cli import main\n"
        f"main(['models', '--store', {str(demo_store)!r}, 'list'], standalone_mode=False)"
    )
    loaded = _imported_after(code)
    assert "click" in loaded  # the command ran
    assert loaded.isdisjoint({"flask", "werkzeug", "onnxruntime"}), loaded


def test_python_dash_m_lists_the_demo_models(demo_store):
    result = subprocess.run(
        [sys.executable, "-m", "ml_app", "models", "--store", str(demo_store), "list"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"name": "iris"' in result.stdout
    assert '"name": "breast_cancer"' in result.stdout
