"""The README and docs run as written: every shell block of README.md and docs/*.md, in order, on the embedded data.

The blocks fenced as ```bash, ```sh or ```console run in a scratch folder that holds a copy of the repository's
files (tracked, plus new files not ignored) and a ``.venv`` symlink to this checkout's environment. Each block runs
in a fresh ``bash -e`` process, so a failing command fails its block. The documents run in order (README.md first,
then docs/*.md by name), all in the same scratch folder, as a reader who follows them one after the other.

Conventions (docs/writing-docs.md says the same for writers):
- ``<!-- no-run: reason -->`` on the line just before a block's fence: the block is not run. Use it sparingly, and
  always with a reason (a reason is required; an empty one fails the test).
- In a ```console block only the lines that start with ``$ `` are commands; the others are output.
- A line that starts a long-running service (``surrogate serve`` without ``--build``, ``surrogate dashboard``,
  ``surrogate ui``, ``bentoml serve``) is started in the background; the block waits until the service answers
  (``/readyz`` 200 for ``serve``, any answer for the others) before its next line, so the next blocks (the curl
  examples) find it running. The services a document started are stopped at the end of that document.
- ``curl`` is run with ``--fail-with-body`` (from a ``.curlrc``): an example answered 4xx or 5xx fails its block.
- Two commands are not run as written, each for a stated reason:
  - ``bash scripts/setup.sh`` is replaced by a check that ``.venv/bin/surrogate`` exists: ``.venv`` is this
    checkout's environment (made by setup.sh), and setup.sh in the scratch folder would re-point its editable
    install at the scratch copy, which is deleted afterwards;
  - a line that runs the test suite (``python -m pytest``) is left out: the suite contains this test.
- The services listen on the documents' own ports (3000, 8080), in a private network namespace
  (``unshare --net``) when the machine allows it, so the test never meets another process's server.
- README.md runs with no virtual environment on PATH, as on a fresh clone (its blocks activate ``.venv`` or call
  ``.venv/bin/surrogate``); the docs/*.md pages run with ``.venv`` activated, as the README's typical session
  leaves the reader's shell.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"bash", "sh", "console"}
BLOCK_TIMEOUT_S = 1800  # generous: `surrogate run` trains every family on a shared 2-core machine
SERVICE_WAIT_S = 600

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,})(?P<language>[\w-]*)\s*$")
_NO_RUN = re.compile(r"^\s*<!--\s*no-run:(?P<reason>.*?)-->\s*$")
_SETUP = "bash scripts/setup.sh"
_SETUP_CHECK = "test -x .venv/bin/surrogate"
_TEST_SUITE = re.compile(r"^(\S*/)?(python\S* -m pytest|pytest)(\s|$)")
_SERVICE = re.compile(r"^(\S*/)?(surrogate (serve|dashboard|ui)|bentoml serve)(\s|$)")
_DEFAULT_PORTS = {"serve": 3000, "dashboard": 8080, "ui": 5000, "bentoml": 3000}


@dataclass
class Block:
    """One shell block of a document: where it starts, its commands, and why it is not run (if it is not)."""

    document: str
    line: int  # 1-based line of the opening fence
    language: str
    commands: list[str]  # one entry per command (continuation lines joined with their backslashes)
    no_run_reason: str | None = None
    left_out: list[str] = field(default_factory=list)  # commands of the block not run, with the reason


def shell_blocks(document: str, text: str) -> list[Block]:
    """The ```bash / ```sh / ```console blocks of a Markdown ``text``, in order; ``no-run`` comments applied."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = index + 1  # the closing fence: as many backticks or more, and no language
        while end < len(lines) and not _closes(_FENCE.match(lines[end]), opening):
            end += 1
        if opening["language"] in SHELL_LANGUAGES:
            body = textwrap.dedent("\n".join(lines[index + 1 : end]))
            block = Block(document, index + 1, opening["language"], _commands(body, opening["language"]))
            previous = next((line for line in reversed(lines[:index]) if line.strip()), "")
            marker = _NO_RUN.match(previous)
            if marker:
                reason = marker["reason"].strip()
                assert reason, f"{document}:{index}: a no-run comment needs a reason (<!-- no-run: why -->)"
                block.no_run_reason = reason
            blocks.append(block)
        index = end + 1
    return blocks


def _closes(fence: re.Match[str] | None, opening: re.Match[str]) -> bool:
    return bool(fence) and not fence["language"] and len(fence["ticks"]) >= len(opening["ticks"])


def _commands(body: str, language: str) -> list[str]:
    """The commands of a block body: ``$``-lines of a console block; continuation lines joined."""
    lines = body.splitlines()
    if language == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    commands: list[str] = []
    pending = ""
    for line in lines:
        pending = f"{pending}\n{line}" if pending else line
        if not line.rstrip().endswith("\\"):
            commands.append(pending)
            pending = ""
    if pending:
        commands.append(pending)
    return [command for command in commands if command.strip() and not command.lstrip().startswith("#")]


def _service_port(command: str) -> tuple[str, int]:
    """The kind of service a command starts (serve, dashboard, ui, bentoml) and the port it listens on."""
    words = shlex.split(command, comments=True)
    kind = words[1] if words[0].endswith("surrogate") else "bentoml"
    port = _DEFAULT_PORTS[kind]
    for position, word in enumerate(words):
        if word == "--port" and position + 1 < len(words):
            port = int(words[position + 1])
        elif word.startswith("--port="):
            port = int(word.split("=", 1)[1])
    return kind, port


def script_of(block: Block, pid_folder: Path) -> str:
    """The bash script that runs ``block``: services backgrounded and waited for, the two substitutions made."""
    lines = [
        "_docs_wait() {  # URL PID KIND: wait until the service answers, or fail when it exits",
        f"  for _ in $(seq {SERVICE_WAIT_S * 2}); do",
        '    if [ "$3" = serve ]; then code=200; else code=; fi',
        '    got=$(command curl -q -s -o /dev/null -w "%{http_code}" --max-time 5 "$1" || true)',
        '    if [ -n "$code" ] && [ "$got" = "$code" ]; then return 0; fi',
        '    if [ -z "$code" ] && [ "$got" != 000 ]; then return 0; fi',
        '    kill -0 "$2" 2>/dev/null || { echo "the service of PID $2 exited before answering $1" >&2; return 1; }',
        "    sleep 0.5",
        "  done",
        '  echo "$1 gave no answer after ' + str(SERVICE_WAIT_S) + ' s" >&2; return 1',
        "}",
    ]
    for number, command in enumerate(block.commands):
        stripped = command.strip()
        if _TEST_SUITE.match(stripped):
            block.left_out.append(f"{stripped}  (runs the test suite, which contains this test)")
            continue
        if _SETUP in command:
            block.left_out.append(f"{_SETUP} -> {_SETUP_CHECK}  (.venv is this checkout's, made by setup.sh)")
            command = command.replace(_SETUP, _SETUP_CHECK)
        if _SERVICE.match(stripped) and "--build" not in shlex.split(stripped, comments=True):
            kind, port = _service_port(stripped)
            log = pid_folder / f"service-{block.line}-{number}.log"
            path = "/readyz" if kind == "serve" else "/"
            lines += [
                f"setsid bash -c {shlex.quote(stripped)} >{shlex.quote(str(log))} 2>&1 &",  # its own process group
                f"echo $! >{shlex.quote(str(pid_folder / f'service-{block.line}-{number}.pid'))}",
                f"_docs_wait http://127.0.0.1:{port}{path} $! {kind} || {{ tail -50 {shlex.quote(str(log))}; exit 1; }}",
            ]
            continue
        lines.append(command)
    return "\n".join(lines) + "\n"


def stop_services(pid_folder: Path) -> None:
    """Stop every service a document started (its whole process group), then forget them."""
    for pid_file in sorted(pid_folder.glob("service-*.pid")):
        pid = int(pid_file.read_text())
        for sent in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sent)
            except ProcessLookupError:
                break
            for _ in range(100):
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                continue
            break
        pid_file.unlink()


# ------------------------------------------------------------------ the parser and its conventions (fast)
def test_shell_blocks_follow_the_conventions():
    text = "\n".join(
        [
            "```bash",
            "surrogate lab params   # a comment",
            "curl -s localhost:3000/predict \\",
            "  -d '{}'",
            "# a comment line",
            "```",
            "<!-- no-run: needs a robot -->",
            "",
            "```sh",
            "robot start",
            "```",
            "```python",
            "print('not shell')",
            "```",
            "  ```console",
            "  $ surrogate --help",
            "  usage: surrogate ...",
            "  ```",
            "````markdown",
            "```bash",
            "shown, not run",
            "```",
            "````",
        ]
    )
    blocks = shell_blocks("x.md", text)
    assert [(block.line, block.language, block.no_run_reason) for block in blocks] == [
        (1, "bash", None),
        (9, "sh", "needs a robot"),
        (15, "console", None),
    ]
    assert blocks[0].commands == ["surrogate lab params   # a comment", "curl -s localhost:3000/predict \\\n  -d '{}'"]
    assert blocks[2].commands == ["surrogate --help"]
    with pytest.raises(AssertionError, match="needs a reason"):
        shell_blocks("x.md", "<!-- no-run: -->\n```bash\ntrue\n```")


def test_scripts_background_services_and_make_the_two_stated_substitutions(tmp_path):
    block = Block(
        "x.md",
        3,
        "bash",
        [
            "bash scripts/setup.sh && .venv/bin/surrogate run",
            ".venv/bin/python -m pytest",
            "surrogate serve --port 3001 --workers 2   # the service",
            "surrogate serve --build",
            "surrogate dashboard",
        ],
    )
    script = script_of(block, tmp_path)
    assert "test -x .venv/bin/surrogate && .venv/bin/surrogate run" in script
    assert "-m pytest" not in script
    assert "setsid bash -c 'surrogate serve --port 3001 --workers 2   # the service' >" in script
    assert "_docs_wait http://127.0.0.1:3001/readyz $! serve" in script
    assert "\nsurrogate serve --build\n" in script  # a build ends by itself: run in the foreground
    assert "_docs_wait http://127.0.0.1:8080/ $! dashboard" in script
    assert len(block.left_out) == 2


def test_every_document_has_its_shell_blocks_found():
    found = {document: shell_blocks(document, (ROOT / document).read_text()) for document in DOCUMENTS}
    assert found["README.md"] and found["docs/service.md"]
    for blocks in found.values():
        for block in blocks:
            assert block.commands or block.no_run_reason, f"{block.document}:{block.line}: an empty shell block"


# ------------------------------------------------------------------ the documents, run (slow)
def _scratch_copy(folder: Path) -> None:
    """The repository's files (tracked, and new ones not ignored) under ``folder``; ``.venv`` a symlink."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    (folder / ".venv").symlink_to(ROOT / ".venv")


def _block_environment(folder: Path, activated: bool = False) -> dict[str, str]:
    """A new user's environment: no store or token variables; curl fails on HTTP errors.

    ``activated``: ``.venv`` is active (as after the README's ``source .venv/bin/activate``); else no venv on PATH.
    """
    curl_home = folder / ".docs-test-curl"
    curl_home.mkdir(exist_ok=True)
    (curl_home / ".curlrc").write_text("fail-with-body\nshow-error\nmax-time = 900\n")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SURROGATE_", "MLFLOW_", "BENTOML_", "PYTEST_", "VIRTUAL_ENV", "CURL_HOME"))
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.endswith(".venv/bin"))
    if activated:
        env.update(VIRTUAL_ENV=str(folder / ".venv"), PATH=f"{folder / '.venv' / 'bin'}{os.pathsep}{env['PATH']}")
    env.update(
        CURL_HOME=str(curl_home),
        BENTOML_HOME=str(folder / ".docs-test-bentoml"),  # `serve --build` writes its Bento here, not in ~/bentoml
        MLFLOW_DISABLE_TELEMETRY="true",
        BENTOML_DO_NOT_TRACK="true",
        DO_NOT_TRACK="true",
    )
    return env


def _die_with_parent() -> None:
    """In the child, before exec: Linux stops it when this test process dies (PR_SET_PDEATHSIG), even by kill -9."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _private_network() -> tuple[list[str], subprocess.Popen | None]:
    """A command prefix that enters a private network namespace (its own loopback), and the process holding it."""
    if not (shutil.which("unshare") and shutil.which("nsenter") and shutil.which("ip")):
        return [], None
    holder = subprocess.Popen(
        ["unshare", "--net", "--map-root-user", "sh", "-c", "ip link set lo up && echo up && exec sleep 86400"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=_die_with_parent,
    )
    if holder.stdout.readline().strip() != "up":  # no user namespaces here: the host's network it is
        holder.wait()
        return [], None
    return ["nsenter", f"--target={holder.pid}", "--user", "--net", "--preserve-credentials"], holder


def _children_cpu_s() -> float:
    """CPU seconds (user + sys) of the children this process has waited for (a block's foreground commands)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The scratch folder, the blocks' environment and the command prefix of the private network."""
    if not (ROOT / ".venv" / "bin" / "surrogate").exists():
        pytest.fail(f"{ROOT / '.venv'} is not set up: run bash scripts/setup.sh")
    folder = tmp_path_factory.mktemp("docs-commands")
    _scratch_copy(folder)
    pid_folder = tmp_path_factory.mktemp("docs-commands-services")
    prefix, holder = _private_network()
    try:
        yield folder, prefix, pid_folder
    finally:
        stop_services(pid_folder)
        if holder is not None:
            holder.kill()
            holder.wait()


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.parametrize("document", DOCUMENTS)
def test_document_runs_as_written(document, scratch, record_property):
    folder, prefix, pid_folder = scratch
    env = _block_environment(folder, activated=document != "README.md")
    blocks = shell_blocks(document, (ROOT / document).read_text())
    try:
        for block in blocks:
            if block.no_run_reason:
                print(f"{document}:{block.line}: not run ({block.no_run_reason})")
                continue
            script = folder / f".docs-test-block-{Path(document).stem}-{block.line}.sh"
            script.write_text(script_of(block, pid_folder))
            wall_start, cpu_start = time.perf_counter(), _children_cpu_s()
            done = subprocess.run(
                [*prefix, "bash", "-e", str(script)],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
            record_property(
                f"{document}:{block.line}",
                {
                    "wall_s": round(time.perf_counter() - wall_start, 1),
                    "cpu_s": round(_children_cpu_s() - cpu_start, 1),
                },
            )
            for left_out in block.left_out:
                print(f"{document}:{block.line}: not run as written: {left_out}")
            assert done.returncode == 0, (
                f"{document}:{block.line}: the ```{block.language} block exited {done.returncode}\n"
                f"--- block\n{chr(10).join(block.commands)}\n"
                f"--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}"
            )
    finally:
        stop_services(pid_folder)
