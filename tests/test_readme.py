"""The README's examples work: every command parses with its real parser (and names shipped
configurations that exist), and its Python example runs (made small by a monkeypatched
:class:`FitConfig` default, not by editing the text). The quick start stays two commands."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import cli_check  # noqa: E402  (the docs' own checker of documented commands)


def blocks(language: str) -> list[str]:
    """The fenced code blocks of ``language`` in the README."""
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def indented_commands() -> list[tuple[str, list[str]]]:
    """Every ``python -m bayes_inr.X`` command of the README's indented code blocks."""
    text = "\n".join(line[4:] for line in README.splitlines() if line.startswith("    "))
    return cli_check.commands(text)


def test_the_readme_stays_short_with_a_two_command_quick_start():
    assert len(README.splitlines()) <= 300
    quick = README.split("## Quick start")[1].split("\n## ")[0]
    assert re.findall(r"^    (make \w+)", quick, flags=re.MULTILINE) == ["make demo", "make test"]


@pytest.mark.parametrize(("module", "argv"), indented_commands(),
                         ids=lambda value: value if isinstance(value, str) else None)
def test_every_readme_command_parses(module, argv):
    assert cli_check.check_command(module, argv) is None


def test_the_checker_can_fail():
    assert cli_check.check_command("fit", ["--inferense", "mcd"]) is not None
    assert cli_check.check_command("fit", ["--config", "mcd_21"]) is not None


def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    from bayes_inr.inference import config

    (code,) = blocks("python")
    small = {"width": 16, "depth": 1, "draws": 4, "threads": 1}

    class Small(config.FitConfig):  # the example's own settings, on a smaller network
        def __init__(self, **kwargs):
            super().__init__(**small | kwargs | {"steps": 5})

    monkeypatch.setattr(config, "FitConfig", Small)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert float(capsys.readouterr().out) > 0  # the object CRPS it prints
