"""The small things a user meets first: ``python -m codesign``, ``--quiet``, help texts that name
only files that exist, a MODEL that is a directory or missing."""

import ast
import os
import pty
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from codesign import cli
from codesign.guides import DOCS

REPO = Path(__file__).resolve().parent.parent


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- python -m codesign ---------------------------------------------------------------------------

def _script() -> Path:
    script = Path(sys.executable).parent / "codesign"
    if not script.is_file():
        pytest.skip(f"no `codesign` script beside {sys.executable} (package not installed)")
    return script


def test_python_m_codesign_is_the_codesign_script(tmp_path):
    # A refused command goes through the whole of main(): parsing, the command, the error.
    argv = ["--quiet", "generate", "no-such-model.onnx", "--array", "2x2"]
    via_module = subprocess.run([sys.executable, "-m", "codesign", *argv], cwd=tmp_path,
                                capture_output=True, text=True)
    via_script = subprocess.run([str(_script()), *argv], cwd=tmp_path, capture_output=True,
                                text=True)
    assert via_module.returncode == via_script.returncode
    assert (via_module.stdout, via_module.stderr) == (via_script.stdout, via_script.stderr)
    assert via_module.returncode == 2
    assert via_module.stderr == "codesign: error: no-such-model.onnx: no such file\n"


# -- --quiet and --debug, before or after the command ---------------------------------------------

@pytest.mark.parametrize("option", ["--quiet", "--debug"])
def test_common_options_before_and_after_the_command(option):
    name = option[2:]
    for argv in ([option, "simulate", "d", "--input", "x.npy"],
                 ["simulate", "d", "--input", "x.npy", option],
                 [option, "generate", "m.onnx", option]):
        assert getattr(cli._parser().parse_args(argv), name) is True, argv
    assert getattr(cli._parser().parse_args(["synth", "d"]), name) is False


#: A ``codesign`` whose ``simulate`` is one long step: the progress display as a command shows it.
_CHILD = """
import sys, time
from codesign import cli, progress

def simulate(*args, **kwargs):
    with progress.step("a long step of codesign"):
        time.sleep(0.5)
    return 0

cli.simulate = simulate
sys.exit(cli.main(sys.argv[1:]))
"""


def _stderr_of(argv: list[str], terminal: bool) -> str:
    """What ``codesign ARGV`` (with :data:`_CHILD`'s simulate) writes on stderr, a pseudo-terminal
    when ``terminal``, else a pipe."""
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    cmd = [sys.executable, "-c", _CHILD, *argv]
    if not terminal:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env)
        assert done.returncode == 0, done.stderr
        return done.stderr.decode(errors="replace")
    master, slave = pty.openpty()
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=slave, env=env) as proc:
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:         # EIO: the child has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
    assert proc.returncode == 0, b"".join(chunks)
    return b"".join(chunks).decode(errors="replace")


def test_progress_is_drawn_on_a_terminal_and_quiet_removes_it():
    command = ["simulate", "d", "--input", "x.npy"]
    assert "a long step of codesign" in _stderr_of(command, terminal=True)
    # (Before the command, --quiet is the same flag: test_common_options_before_and_after_...)
    assert _stderr_of([*command, "--quiet"], terminal=True) == ""
    assert _stderr_of(command, terminal=False) == ""


# -- help texts and messages name only files that exist -------------------------------------------

def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_help_names_only_guides_that_are_installed(capsys):
    top = _help(capsys)
    commands = re.search(r"\{([\w,]+)\}", top).group(1).split(",")
    texts = {"": top} | {command: _help(capsys, command) for command in commands}
    named = set()
    for command, text in texts.items():
        assert "DESIGN.md" not in text, command
        # argparse wraps help at spaces and hyphens: codesign's texts name files where
        # neither can break them (the epilog is wrapped by codesign).
        for name in re.findall(r"[\w./-]+\.md\b", text):
            named.add(name)
            path = Path(name) if name.startswith("/") else DOCS / name
            assert path.is_file(), f"`codesign {command} --help` names {name}"
        for path in re.findall(r"(?:^|\s)(/[\w./-]+)", text):
            assert Path(path).exists(), f"`codesign {command} --help` names {path}"
    assert {"bus.md", "arithmetic.md"} <= named and len(texts) >= 6


def _user_strings(path: Path):
    """The string constants of a module that are not docstrings (messages, help texts)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                                | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings):
            yield node.lineno, node.value


def test_messages_name_only_guides_that_are_installed():
    sources = [p for top in ("codesign", "sim", "rtl") for p in (REPO / top).rglob("*.py")]
    assert len(sources) > 30
    for source in sources:
        for line, text in _user_strings(source):
            where = f"{source.relative_to(REPO)}:{line}"
            assert "DESIGN.md" not in text, where
            for name in re.findall(r"\bdocs/([\w.-]+\.md)", text):
                assert (DOCS / name).is_file(), f"{where} names docs/{name}"


def test_the_guides_are_package_data():
    """The wheel ships docs/ as codesign/docs (a link in the repository)."""
    assert DOCS.resolve() == REPO / "docs"
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["codesign"]
    shipped = {p for pattern in patterns for p in (REPO / "codesign").glob(pattern)}
    guides = set(DOCS.glob("*.md"))
    assert guides and guides <= shipped


# -- MODEL that is a directory or missing ---------------------------------------------------------

MODEL_COMMANDS = {
    "generate": ["generate"],
    "generate --target": ["generate", "--target", "ecp5-45k"],
    "verify": ["verify"],
    "explore": ["explore", "--target", "ecp5-45k"],
}


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize("kind", ["directory", "missing"])
def test_model_that_is_a_directory_or_missing_says_so(capsys, tmp_path, command, kind):
    model = tmp_path / "model.onnx"
    if kind == "directory":
        model.mkdir()
        (model / "model.onnx").write_bytes(b"")      # what a user may have meant
    outdir = tmp_path / "out"
    code, out, err = run(capsys, *MODEL_COMMANDS[command], model, "-o", outdir)
    assert code == 2 and out == ""
    expected = "is a directory; give the model's .onnx file" if kind == "directory" \
        else "no such file"
    assert err == f"codesign: error: {model}: {expected}\n"
    assert not outdir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["model.onnx"] * (kind == "directory"))
