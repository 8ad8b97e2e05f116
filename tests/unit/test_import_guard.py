import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import check_imports  # noqa: E402


def test_library_imports_no_kfp():
    assert check_imports.check_library(ROOT / "lumbar_core") == []


def test_the_guard_can_fail(tmp_path):
    (tmp_path / "bad.py").write_text("import os\nfrom kfp import dsl\n")
    check_imports.ROOT = tmp_path
    try:
        assert check_imports.check_library(tmp_path) == ["bad.py:2: lumbar_core must not import kfp"]
        (tmp_path / "comp.py").write_text("import kfp\nimport numpy\n\ndef f():\n    import torch\n")
        problems = check_imports.check_components(tmp_path)
        assert any("comp.py:2: module-level import of numpy" in p for p in problems)
        assert not any("torch" in p for p in problems)
    finally:
        check_imports.ROOT = ROOT


def test_guard_script_passes_on_the_tree():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_imports.py")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
