import subprocess
import sys

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
