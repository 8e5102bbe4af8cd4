"""The README's two commands stay true: CI runs the test command verbatim."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent.parent


def commands() -> list[str]:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    return [lines[i + 1] for i, line in enumerate(lines[:30]) if line.strip() == "```bash"]


def test_the_readme_opens_with_the_main_job_and_the_tests() -> None:
    serve, test = commands()[:2]
    assert serve.endswith("python -m router serve --sandbox")
    assert test.endswith("python -m pytest -q")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test = commands()[1]
    assert test in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def test_the_embed_example_runs_as_printed(tmp_path: Path) -> None:
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### 2. Embed the router in code", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "embed.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("13800138000 accepted ")
    assert second.startswith("12345 invalid None None")
