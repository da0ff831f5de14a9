import argparse
import subprocess
import sys

import pytest

from robust_style import __version__
from robust_style.cli import main


def test_version_and_help(capsys) -> None:
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert __version__ in capsys.readouterr().out
    assert main([]) == 2  # like a bare command group
    assert "usage: robust-style" in capsys.readouterr().err
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "1 partial failure" in capsys.readouterr().out


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "robust_style", "--help"], capture_output=True,
                         text=True, check=True)
    assert "usage: robust-style" in out.stdout


def test_renamed_options_keep_their_old_names() -> None:
    from robust_style.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    robustness = next(a for a in sub["analyze"]._actions
                      if a.dest == "analysis").choices["robustness"]  # type: ignore[attr-defined]
    for cmd, new, old, dest in [(sub["export"], "--out", "--output", "output"),
                                (robustness, "--photos", "--images", "images"),
                                (sub["tune"], "--max-steps", "--steps", "steps"),
                                (sub["serve"], "--threads", "--workers", "workers")]:
        help_text = cmd.format_help()
        assert new in help_text and old in help_text, cmd.prog
        for flag in (new, old):
            assert cmd._option_string_actions[flag].dest == dest, (cmd.prog, flag)


def test_no_progress_is_one_option_and_quiet_hides_bars_too() -> None:
    from robust_style.cli import build_parser
    from robust_style.cli.options import show_progress

    parser = build_parser()
    for argv in (["-q", "weights", "download", "x"], ["weights", "download", "x", "--no-progress"]):
        assert not show_progress(parser.parse_args(argv)), argv
    assert show_progress(parser.parse_args(["weights", "download", "x"]))


def test_device_is_one_option_with_one_default() -> None:
    """``--device`` means a torch device with default ``auto`` in every torch command
    (``serve --device`` picks an inference engine's device, a different option)."""
    from robust_style.cli import build_parser
    from robust_style.cli.options import torch_device

    def parsers(p: argparse.ArgumentParser):  # every (sub)command parser
        yield p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for child in a.choices.values():
                    yield from parsers(child)

    found = {}
    for p in parsers(build_parser()):
        action = p._option_string_actions.get("--device")
        if action is not None and not p.prog.endswith(" serve"):
            found[p.prog] = action
    assert {"robust-style train", "robust-style adapt", "robust-style evaluate",
            "robust-style optimize"} <= set(found)
    for prog, action in found.items():
        assert action.default is None and "auto (default" in (action.help or ""), prog
    assert str(torch_device(None)) in ("cpu", "cuda:0")
    if not __import__("torch").cuda.is_available():
        from robust_style.errors import UserError

        with pytest.raises(UserError, match="no CUDA GPU"):
            torch_device("cuda")
