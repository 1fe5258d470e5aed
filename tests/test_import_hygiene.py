"""The UI process and the light commands never import the training stack (checked in a
fresh interpreter, through sys.modules)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from import_probe import HEAVY, heavy_after

PROBE = """
import io, contextlib
from mgtui.cli import main
argv = {argv!r}
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main(argv)
    except SystemExit:
        pass
"""


@pytest.mark.parametrize(
    "argv",
    [
        [],  # placeholder for `import mgtui` alone
        ["train", "--quality-mode", "--base-model", "unsloth/llama-3.1-8b", "--lora-r", "64", "--dry-run"],
        ["presets", "list"],
        ["presets", "show", "default"],
        ["train", "--help"],
        ["--help"],
        ["estimate", "--json"],
        ["estimate", "--base-model", "unsloth/llama-3.1-8b-bnb-4bit", "--gpu-memory", "8"],
        ["estimate", "--method", "grpo", "--gpu-memory", "24"],
        ["train", "--method", "grpo", "--reward-funcs", "answer_match,format_match", "--dry-run"],
    ],
    ids=lambda a: " ".join(a) or "import",
)
def test_light_paths_import_no_training_library(argv):
    code = PROBE.format(argv=argv) if argv else "import mgtui, mgtui.settings, mgtui.presets, mgtui.cli"
    assert heavy_after(code) == []


def test_domain_modules_import_no_textual():
    """Every module outside tui/ (and train/, which runs in its own process) is importable without Textual."""
    code = (
        "import importlib, json, pkgutil, sys, mgtui\n"
        "names = [m.name for m in pkgutil.walk_packages(mgtui.__path__, 'mgtui.')\n"
        "         if not m.name.startswith(('mgtui.tui', 'mgtui.train')) and not m.name.endswith('__main__')]\n"
        "for name in names: importlib.import_module(name)\n"
        "assert 'mgtui.completion' in names and 'mgtui.form_model' in names\n"
        "print(json.dumps([m for m in sys.modules if m.split('.')[0] == 'textual']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


APP_PROBE = """
import asyncio, json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from app_helpers import NO_GPU, settle
from mgtui.tui.app import MgApp

async def main():
    app = MgApp({{"dataset": "builtin:demo-chat"}}, ("H100 80GB", 79.6), NO_GPU, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+o")      # the preset list
        await pilot.press("escape")
        await pilot.press("ctrl+g")      # the GPU picker
        await pilot.press("escape")
        app.attach(Path({run!r}))        # and the run screen on a recorded run
        await pilot.pause(0.5)

asyncio.run(main())
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))
"""


def test_the_app_process_never_imports_the_training_stack(tmp_path):
    """The UI process, through the form, the pickers and the run screen, stays light."""
    import shutil
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tests / "data" / "run_done.jsonl", run / "events.jsonl")
    code = APP_PROBE.format(tests=str(tests), run=str(run), heavy=set(HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_nothing_imports_the_cli_module():
    """The CLI is the top: errors and exit codes live in mgtui.errors, so no module reaches up."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "mgtui"
    offenders = []
    for path in root.rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module or ''}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.split(".")[-1] == "cli" or n.endswith(".cli") or n == "mgtui.cli" for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []
