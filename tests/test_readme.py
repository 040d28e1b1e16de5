"""The documentation's commands and code, read from README.md and the docs/ pages themselves and run:
a new user's path cannot rot.

Each test takes its command or snippet from a fenced code block of a page (found by its section and
language: a ``## `` section of the README, or a docs page, whose title is its section), so an edit to
the page is what gets tested; a failure names the page and line.

- The two commands (README): ``./scripts/run-example.sh`` runs end to end without ``KLING_API_KEY``.
- A first DAG (README): the ``@task.kling`` block runs in a DAG with ``dag.test()`` against the
  emulator.
- Install: the wheel command builds, in a copy of the work tree (tracked and untracked, not ignored
  files), the wheel the next line installs; both ``pip install`` lines resolve with ``--dry-run``
  against the Airflow already installed (nothing is installed into the test venv).
- The connection: the CLI command runs in a fresh ``AIRFLOW_HOME`` after ``airflow db migrate`` (the
  Use section's first step) and the connection is read back; each ``export`` form is set and read by
  ``KlingHook``, the emulator one against a running emulator.
- Use: every Python block of every page compiles; the operator block and the mapped
  ``.partial().expand()`` block run in a DAG with ``dag.test()`` against the emulator.
- The emulator: both forms of its command start (on a free port), print the README's banner and
  serve; the default key and the estimate the README gives for its ``--speed`` are checked; the
  Python snippet runs.

Not run here, and why:

- ``./scripts/run-example.sh`` with ``KLING_API_KEY`` (and ``KLING_BASE_URL``): calls the real API
  and spends ~55 credits of a paid key.
- ``./scripts/run-tests.sh``: it is CI (``.ci/run``), and it runs this file.
- The UI path (Admin > Connections, the Test button): driven in Chromium by tests/test_end_to_end.py.
- ``pip install .`` and the wheel's install for real: resolved with ``--dry-run`` only, since
  installing would replace the package in the venv the tests run from.
- ``python benchmarks/*.py`` (inline in the README, not fenced): run at a small size by
  tests/test_benchmark_*.py and tests/test_soak.py; their full sizes take minutes to hours.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from airflow.utils.state import DagRunState
from built_wheel import copy_checkout
from dag_runs import DagBag, xcoms

from airflow_provider_kling.core.dialects.ulazai import DEFAULT_BASE_URL
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.get_provider_info import get_provider_info
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.operators.kling import KlingGenerateOperator

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
#: The pages whose commands and code run here: the README (the site's front page) and docs/.
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent
#: What a test key stands for in the README's ``YOUR_KEY`` and ``$KLING_API_KEY``.
TEST_KEY = "readme-test-key-0123"
#: Where the README's emulator command listens, as its connection and banner name it.
README_EMULATOR_ADDRESS = "127.0.0.1:8088"


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page: its language, the section it is in, where it starts."""

    language: str
    section: str
    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.language} block in '{self.section}')"


FENCE = re.compile(r"^[ \t]*```(?P<language>[\w-]*)[ \t]*$")


def section_heading(page: Path) -> str:
    """What starts a section: the README's ``## `` headings; a docs page is one section, its title."""
    return "## " if page == README else "# "


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page`` in order; a block indented into a list item is dedented."""
    blocks: list[Block] = []
    heading, name = section_heading(page), str(page.relative_to(REPO))
    section = ""
    opened: tuple[str, int] | None = None  # the open block's language and the line of its fence
    body: list[str] = []
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        fence = FENCE.match(line)
        if opened is None:
            if line.startswith(heading):
                section = line[len(heading) :].strip()
            elif fence:
                opened, body = (fence["language"], number), []
        elif fence and not fence["language"]:
            language, fence_line = opened
            blocks.append(Block(language, section, name, fence_line + 1, textwrap.dedent("\n".join(body))))
            opened = None
        else:
            body.append(line)
    return blocks


BLOCKS = [block for page in PAGES for block in fenced_blocks(page)]


def readme_block(language: str, section: str, containing: str = "") -> Block:
    """The one block of ``language`` in ``section`` (of the README or a docs page) with ``containing``."""
    found = [b for b in BLOCKS if (b.language, b.section) == (language, section) and containing in b.text]
    assert len(found) == 1, f"expected one {language} block in the section '{section}' with {containing!r}"
    return found[0]


def commands(block: Block) -> list[list[str]]:
    """The block's commands as argument lists: continuation lines joined, comments dropped."""
    joined = block.text.replace("\\\n", " ")
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def section_prose(section: str) -> str:
    """A section's text: the docs page of that title, or the README's section."""
    for page in PAGES[1:]:
        if (text := page.read_text()).startswith(f"# {section}\n"):
            return text
    text = README.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def environment(**variables: str) -> dict[str, str]:
    """This environment without Airflow's or Kling's variables (conftest sets its own AIRFLOW_HOME)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "_AIRFLOW", "KLING_"))
    }
    return {**env, **variables}


def in_shell(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a README command with bash, this venv's ``airflow``, ``python`` and ``pip`` first on PATH."""
    env = {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"}
    return subprocess.run(["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True)


def succeeded(done: subprocess.CompletedProcess[str], block: Block) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{block}: {done.args[-1]!r} failed:\n{done.stderr}\n{done.stdout}"
    return done


def origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or {"https": 443, "http": 80}.get(parts.scheme)


# ---- Install ----------------------------------------------------------------------------------------

INSTALL = readme_block("bash", "Install")
PIP_INSTALLS = [argv for argv in commands(INSTALL) if argv[:2] == ["pip", "install"]]
[WHEEL_BUILD] = [argv for argv in commands(INSTALL) if "wheel" in argv]


@pytest.fixture(scope="module")
def checkout_with_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the work tree (uncommitted edits included) in which the README's wheel command ran."""
    checkout = tmp_path_factory.mktemp("checkout")
    copy_checkout(checkout)
    succeeded(in_shell(shlex.join(WHEEL_BUILD), environment(), checkout), INSTALL)
    return checkout


def test_wheel_command_builds_the_wheel_the_readme_installs(checkout_with_wheel: Path) -> None:
    [wheel_name] = [word for argv in PIP_INSTALLS for word in argv if word.endswith(".whl")]
    wheel = checkout_with_wheel / wheel_name
    built = sorted(path.name for path in wheel.parent.glob("*.whl"))
    assert wheel.is_file(), f"{INSTALL}: names {wheel_name}, the wheel command built {built}"
    assert "airflow_provider_kling/hooks/kling.py" in zipfile.ZipFile(wheel).namelist()


@pytest.mark.parametrize("command", PIP_INSTALLS, ids=shlex.join)
def test_pip_install_command_resolves_against_the_installed_airflow(
    checkout_with_wheel: Path, command: list[str]
) -> None:
    done = succeeded(
        in_shell(shlex.join([*command, "--dry-run"]), environment(), checkout_with_wheel), INSTALL
    )
    assert "Would install airflow-provider-kling-" in done.stdout


# ---- The connection ---------------------------------------------------------------------------------

CLI_CONNECTION = readme_block("bash", "The connection", "airflow connections add")
ENV_CONNECTIONS = readme_block("bash", "The connection", "AIRFLOW_CONN_KLING_DEFAULT")


@pytest.fixture(scope="module")
def cli_airflow_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh AIRFLOW_HOME, migrated as the Use section says, where the README's CLI command ran."""
    [migrate] = re.findall(r"`(airflow db \w+)`", section_prose("Use"))
    env = environment(AIRFLOW_HOME=str(tmp_path_factory.mktemp("airflow-home")), KLING_API_KEY=TEST_KEY)
    succeeded(in_shell(migrate, env, REPO), CLI_CONNECTION)
    succeeded(in_shell(CLI_CONNECTION.text, env, REPO), CLI_CONNECTION)
    return env


def stored_connection(env: dict[str, str]) -> dict[str, Any]:
    done = in_shell("airflow connections get kling_default -o json", env, REPO)
    [connection] = json.loads(succeeded(done, CLI_CONNECTION).stdout)
    return dict(connection)


def test_cli_connection_command_stores_a_kling_connection_with_the_key(
    cli_airflow_home: dict[str, str],
) -> None:
    [argv] = commands(CLI_CONNECTION)
    given = dict(zip(argv[4::2], argv[5::2], strict=True))  # airflow connections add ID --opt value ...
    stored = stored_connection(cli_airflow_home)
    [connection_type] = get_provider_info()["connection-types"]
    assert stored["conn_type"] == given["--conn-type"] == connection_type["connection-type"], CLI_CONNECTION
    assert (stored["host"], str(stored["port"])) == (given["--conn-host"], given["--conn-port"])
    assert stored["password"] == TEST_KEY, f"{CLI_CONNECTION}: the key is not $KLING_API_KEY's value"


def test_cli_connection_points_the_hook_at_the_vendor_on_443(cli_airflow_home: dict[str, str]) -> None:
    # As the api-server (the UI's Test button) builds the hook: from the metadata database.
    probe = "from airflow_provider_kling.hooks.kling import KlingHook; print(KlingHook().base_url)"
    env = {**cli_airflow_home, "_AIRFLOW_PROCESS_CONTEXT": "server"}
    done = succeeded(in_shell(shlex.join(["python", "-c", probe]), env, REPO), CLI_CONNECTION)
    base_url = done.stdout.strip().splitlines()[-1]
    assert origin(base_url) == origin(DEFAULT_BASE_URL) == ("https", "ulazai.com", 443), CLI_CONNECTION


def exported_connections() -> dict[str, str]:
    """The README's ``export AIRFLOW_CONN_KLING_DEFAULT=...`` values: ``uri``, ``json`` and ``emulator``."""
    forms: dict[str, str] = {}
    for argv in commands(ENV_CONNECTIONS):
        assert argv[0] == "export", ENV_CONNECTIONS
        name, _, value = argv[1].partition("=")
        assert name == "AIRFLOW_CONN_KLING_DEFAULT", ENV_CONNECTIONS
        kind = "emulator" if README_EMULATOR_ADDRESS in value else "json" if value.startswith("{") else "uri"
        kind = "klingai" if '"api": "klingai"' in value else kind
        assert kind not in forms, f"{ENV_CONNECTIONS}: two {kind} forms"
        forms[kind] = value
    assert sorted(forms) == ["emulator", "json", "klingai", "uri"], ENV_CONNECTIONS
    return forms


def test_env_connection_for_kling_s_own_api_points_the_hook_at_it_with_both_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = exported_connections()["klingai"]
    assert "YOUR_ACCESS_KEY" in value and "YOUR_SECRET_KEY" in value, ENV_CONNECTIONS
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLING_DEFAULT",
        value.replace("YOUR_ACCESS_KEY", "ak").replace("YOUR_SECRET_KEY", TEST_KEY),
    )
    hook = KlingHook()
    assert hook.dialect.name == "klingai" and hook.base_url == "https://api-singapore.klingai.com"
    connection = hook.get_connection(hook.kling_conn_id)
    assert (connection.login, connection.password) == ("ak", TEST_KEY), ENV_CONNECTIONS


@pytest.mark.parametrize("form", ["uri", "json"])
def test_env_connection_points_the_hook_at_the_vendor_with_the_key(
    form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = exported_connections()[form]
    assert "YOUR_KEY" in value, ENV_CONNECTIONS
    monkeypatch.setenv("AIRFLOW_CONN_KLING_DEFAULT", value.replace("YOUR_KEY", TEST_KEY))
    hook = KlingHook()
    assert hook.base_url == DEFAULT_BASE_URL, f"{ENV_CONNECTIONS}: the {form} form"
    assert hook.get_connection(hook.kling_conn_id).password == TEST_KEY, f"{ENV_CONNECTIONS}: {form} form"


def test_env_connection_for_the_emulator_passes_the_connection_test(
    kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = urlsplit(kling_emulator.base_url).netloc
    value = exported_connections()["emulator"].replace(README_EMULATOR_ADDRESS, address)
    monkeypatch.setenv("AIRFLOW_CONN_KLING_DEFAULT", value)
    hook = KlingHook()
    assert hook.base_url == kling_emulator.base_url, ENV_CONNECTIONS
    accepted, message = hook.test_connection()
    assert accepted is True, f"{ENV_CONNECTIONS}: {message}"


# ---- Use --------------------------------------------------------------------------------------------

USE_TASKFLOW = readme_block("python", "A first DAG", "@task.kling")
USE_OPERATORS = readme_block("python", "Use", "KlingGenerateOperator(")
USE_MAPPED = readme_block("python", "Use", "KlingGenerateOperator.partial(")


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.language == "python"], ids=lambda block: f"{block.page}:{block.line}"
)
def test_python_block_compiles(block: Block) -> None:
    compile(block.text, str(block), "exec")


#: A DAG file around the README's TaskFlow block: the block's text, indented into ``with DAG(...)``.
TASKFLOW_DAG = """\
from airflow.sdk import DAG

with DAG("readme_use_taskflow", schedule=None):
    # {page}:{line}
{snippet}
"""

#: A DAG file around the README's operator block: the block's text, indented into ``with DAG(...)``.
OPERATORS_DAG = """\
from airflow.sdk import DAG

with DAG("readme_use_operators", schedule=None):
    # {page}:{line}
{snippet}
"""

#: A DAG file around the README's mapped block, with the ``prompts`` it maps over; its ``@task`` also
#: returns what the task was given, so the test can read what ``report`` received.
MAPPED_DAG = """\
from airflow.sdk import DAG
from airflow.sdk import task as airflow_task

from airflow_provider_kling.operators.kling import KlingGenerateOperator


def task(function):
    def and_return_the_input(results):
        function(results)
        return list(results)

    and_return_the_input.__name__ = function.__name__
    return airflow_task(and_return_the_input)


with DAG("readme_use_mapped", schedule=None):

    @airflow_task
    def prompts():
        return ["A lighthouse in a storm", "A paper boat on a puddle"]

    prompts = prompts()
    # {page}:{line}
{snippet}
"""


@pytest.fixture
def dag_around(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Block], Any]:
    """``dag_around(template, block)``: the DAG of a file made of the template and the README block.

    dag.test() runs only DAGs that a configured bundle holds, so the file gets a bundle of its own.
    """
    bundles = json.loads(os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    classpath = bundles[0]["classpath"]
    bundles.append({"name": "readme_snippets", "classpath": classpath, "kwargs": {"path": str(tmp_path)}})
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))

    def build(template: str, block: Block) -> Any:
        snippet = textwrap.indent(block.text, " " * 4)
        source = template.format(page=block.page, line=block.line, snippet=snippet)
        (tmp_path / "readme_snippet_dag.py").write_text(source)
        dagbag = DagBag(str(tmp_path))
        assert dagbag.import_errors == {}, f"{block}: {dagbag.import_errors}"
        [dag] = dagbag.dags.values()
        return dag

    return build


@pytest.mark.usefixtures("airflow_db")
def test_taskflow_snippet_runs_as_a_dag_and_makes_a_video_per_subject(
    emulator: KlingEmulator, dag_around: Callable[[str, Block], Any]
) -> None:
    dag = dag_around(TASKFLOW_DAG, USE_TASKFLOW)
    dag_run = dag.test()
    assert dag_run.state == DagRunState.SUCCESS, USE_TASKFLOW
    [task_id] = dag.task_ids
    results = xcoms(dag_run, task_id)
    assert [result["task_id"] for result in results] == xcoms(dag_run, task_id, key="task_id"), USE_TASKFLOW
    assert all(result["status"] == "completed" for result in results), USE_TASKFLOW
    assert emulator.stats()["jobs_created"] == len(results) == 2, USE_TASKFLOW


@pytest.mark.usefixtures("airflow_db")
def test_operator_snippet_runs_as_a_dag_and_makes_its_videos(
    emulator: KlingEmulator, dag_around: Callable[[str, Block], Any]
) -> None:
    dag = dag_around(OPERATORS_DAG, USE_OPERATORS)
    assert dag.tasks and all(isinstance(t, KlingGenerateOperator) for t in dag.tasks), USE_OPERATORS
    dag_run = dag.test()
    assert dag_run.state == DagRunState.SUCCESS, USE_OPERATORS
    for operator in dag.tasks:
        [result] = xcoms(dag_run, operator.task_id)
        assert result["status"] == "completed" and result["video_url"], f"{USE_OPERATORS}: {operator}"
    assert emulator.stats()["jobs_created"] == len(dag.tasks)


@pytest.mark.usefixtures("airflow_db")
def test_mapped_snippet_hands_report_a_sequence_of_result_dicts(
    emulator: KlingEmulator, dag_around: Callable[[str, Block], Any]
) -> None:
    dag_run = dag_around(MAPPED_DAG, USE_MAPPED).test()
    assert dag_run.state == DagRunState.SUCCESS, USE_MAPPED
    [received] = xcoms(dag_run, "report")
    assert len(received) == 2 and all(result["video_url"] for result in received), USE_MAPPED
    assert [result["task_id"] for result in received] == xcoms(dag_run, "generate", key="task_id")


# ---- The emulator -----------------------------------------------------------------------------------

EMULATOR = readme_block("bash", "The emulator", "--port 8088")


def emulator_commands() -> dict[str, list[str]]:
    """The README's emulator command and the alternative in its ``# or:`` comment."""
    command_line = EMULATOR.text.splitlines()[0]
    command, _, alternative = command_line.partition("# or:")
    return {"python -m": shlex.split(command), "console script": shlex.split(alternative)}


def readme_banner() -> tuple[str, str]:
    """The banner the README shows (``# ... listening on http://127.0.0.1:8088   (default key: K)``)."""
    comment = EMULATOR.text.splitlines()[1]
    shown = re.fullmatch(r"#\s*(?P<banner>.+?)\s+\(default key: (?P<key>[^)]+)\)\s*", comment)
    assert shown, f"{EMULATOR}: no banner and default key in {comment!r}"
    return shown["banner"], shown["key"]


@contextmanager
def running_emulator(argv: list[str]) -> Iterator[str]:
    """Start a README emulator command on a free port (``--port 0``); yield its banner; stop it by pid."""
    argv = list(argv)
    argv[argv.index("--port") + 1] = "0"
    program = shutil.which(argv[0], path=str(VENV_BIN))
    assert program, f"{EMULATOR}: no {argv[0]} in {VENV_BIN}"
    server = subprocess.Popen(
        [program, *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment()
    )
    assert server.stdout is not None and server.stderr is not None
    try:
        banner = server.stdout.readline().strip()
        if not banner:
            pytest.fail(f"{EMULATOR}: {shlex.join(argv)} printed no banner: {server.stderr.read()}")
        yield banner
    finally:
        server.send_signal(signal.SIGTERM)  # by its pid; a no-op if it has already ended
        server.communicate()


@pytest.fixture(scope="module")
def readme_emulator_url() -> Iterator[str]:
    with running_emulator(emulator_commands()["python -m"]) as banner:
        yield banner.rsplit(" ", 1)[-1]


@pytest.mark.parametrize("form", ["python -m", "console script"])
def test_emulator_command_prints_the_readme_banner_and_serves(form: str) -> None:
    argv = emulator_commands()[form]
    shown, _ = readme_banner()
    port = f":{argv[argv.index('--port') + 1]}"
    assert shown.endswith(port), f"{EMULATOR}: the banner shown is not for the command's port"
    with running_emulator(argv) as banner:
        assert re.fullmatch(re.escape(shown).replace(port, r":\d+"), banner), f"{EMULATOR}: {banner!r}"
        stats = requests.get(f"{banner.rsplit(' ', 1)[-1]}/_emulator/stats", timeout=30)
    assert stats.status_code == 200 and stats.json()["jobs_created"] == 0


def test_emulator_command_accepts_the_readme_default_key(
    readme_emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = readme_banner()
    connection = {"conn_type": "kling", "host": readme_emulator_url, "password": key}
    monkeypatch.setenv("AIRFLOW_CONN_KLING_DEFAULT", json.dumps(connection))
    accepted, message = KlingHook().test_connection()
    assert accepted is True, f"{EMULATOR}: {message}"


def test_emulator_command_announces_the_estimate_the_readme_gives_for_its_speed(
    readme_emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = emulator_commands()["python -m"]
    speed = argv[argv.index("--speed") + 1]
    announced = re.search(
        rf'`--speed {speed}`\s+announces\s+"(?P<estimate>[^"]+)"', section_prose("The emulator")
    )
    assert announced, f"the README's emulator section says nothing of what --speed {speed} announces"
    _, key = readme_banner()
    connection = {"conn_type": "kling", "host": readme_emulator_url, "password": key}
    monkeypatch.setenv("AIRFLOW_CONN_KLING_DEFAULT", json.dumps(connection))
    submitted = KlingHook().submit(GenerationRequest("A kite over a beach"))
    assert submitted.estimated_time == announced["estimate"], EMULATOR


def test_emulator_python_snippet_runs_and_names_a_real_plugin() -> None:
    block = readme_block("python", "The emulator", "KlingEmulator(")
    namespace: dict[str, Any] = {}
    exec(compile(block.text, str(block), "exec"), namespace)
    assert isinstance(namespace["emulator"], KlingEmulator), block
    for plugin in namespace["pytest_plugins"]:
        __import__(plugin)


# ---- The two commands -------------------------------------------------------------------------------

TWO_COMMANDS = readme_block("bash", "The two commands")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_run_example_ends_with_the_path_of_a_kept_mp4(tmp_path: Path, api: str) -> None:
    [command] = [argv for argv in commands(TWO_COMMANDS) if argv[0].endswith("run-example.sh")]
    # A new user's shell: no key (so the emulator, speaking KLING_API), no Airflow settings; its
    # mktemp home here.
    env = environment(TMPDIR=str(tmp_path), KLING_API=api)
    done = subprocess.run(
        ["bash", "-c", shlex.join(command)], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, f"{TWO_COMMANDS}: {command}:\n{done.stdout}\n{done.stderr}"
    kept = Path(done.stdout.strip().splitlines()[-1].rsplit(" ", 1)[-1])
    assert kept.is_file(), f"the last line names no file: {done.stdout.strip().splitlines()[-1]!r}"
    assert kept.read_bytes()[4:8] == b"ftyp"
