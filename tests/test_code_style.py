"""The code's shape: formatted and lint-clean by ruff (settings in pyproject.toml), and no library
function longer than a screen and a half."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ["scripts", "tests", "benchmarks", "tools"]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args, *FOLDERS], cwd=REPO, capture_output=True, text=True)


def test_the_code_is_formatted_and_lint_clean():
    """`ruff format` (line length 120) leaves every file as it is, and `ruff check` (pycodestyle, pyflakes)
    finds nothing. Fix with: .venv/bin/python -m ruff format scripts tests benchmarks tools"""
    formatted = ruff("format", "--check")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    checked = ruff("check", "--output-format", "concise")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_no_library_function_is_over_100_lines():
    long = [
        f"{path.name}: {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sorted((REPO / "scripts" / "charlora").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 100
    ]
    assert long == []
