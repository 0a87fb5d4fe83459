"""``--import``: module names and files; errors that say what is wrong, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sagaline.model.errors import SagalineError
from sagaline.worker_process import import_modules


def test_a_file_path_is_imported_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "file_sagas_x1.py").write_text("LOADED = True\n")
    import_modules([str(tmp_path / "file_sagas_x1.py")])
    assert sys.modules["file_sagas_x1"].LOADED is True


def test_a_missing_module_or_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SagalineError, match=r"cannot find module 'no_such_mod_x2'"):
        import_modules(["no_such_mod_x2"])
    with pytest.raises(SagalineError, match=r"no such file"):
        import_modules([str(tmp_path / "absent.py")])


def test_a_module_whose_own_import_fails_is_told_apart(tmp_path: Path) -> None:
    (tmp_path / "broken_x3.py").write_text("import not_installed_anywhere_x3\n")
    (tmp_path / "raises_x4.py").write_text("raise RuntimeError('bad config')\n")
    with pytest.raises(SagalineError, match=r"it imports 'not_installed_anywhere_x3'"):
        import_modules([str(tmp_path / "broken_x3.py")])
    with pytest.raises(SagalineError, match=r"RuntimeError: bad config"):
        import_modules([str(tmp_path / "raises_x4.py")])


# ``sagaline worker`` (``python -m sagaline``) parses its options itself; ``sagaline.cli``'s
# command of the same name forwards to the same parser.
ENTRIES = pytest.mark.parametrize("entry", ["sagaline", "sagaline.cli"])


@ENTRIES
def test_the_worker_says_it_in_one_line_without_a_traceback(tmp_path: Path, entry: str) -> None:
    (tmp_path / "broken_x5.py").write_text("import not_installed_anywhere_x5\n")
    done = subprocess.run(
        [
            *(sys.executable, "-m", entry, "worker"),
            *("--db", f"sqlite:///{tmp_path}/w.db", "--import", str(tmp_path / "broken_x5.py")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: importing ")
    assert "it imports 'not_installed_anywhere_x5'" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


@ENTRIES
def test_a_bad_worker_command_line_gets_the_usage_and_what_was_wrong(
    tmp_path: Path, entry: str
) -> None:
    def worker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", entry, "worker", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )

    missing = worker()
    assert missing.returncode == 2
    assert "usage: sagaline worker" in missing.stderr
    assert "the following arguments are required: --import" in missing.stderr
    typo = worker("--import", "m", "--concurrency", "many")
    assert typo.returncode == 2
    assert "argument --concurrency: invalid int value: 'many'" in typo.stderr
    helped = worker("--help")
    assert helped.returncode == 0
    for option in ("--import MODULE", "--db URL", "--lease-seconds SECONDS", "--metrics-port"):
        assert option in helped.stdout
    assert "Traceback" not in missing.stderr + typo.stderr + helped.stderr
    assert not (tmp_path / "sagaline.db").exists()  # nothing was opened, nothing created


SCRIPT = """
import asyncio, sys
import sagaline
from sagaline import Engine, step, workflow

@step
async def remember(x: str) -> str:
    return x

@workflow
async def flow(x: str) -> str:
    await remember(x)
    await sagaline.sleep(0.5)   # the script exits while the run sleeps
    return await remember(x + "!")

async def main() -> None:
    async with Engine(sys.argv[1]) as engine:
        await engine.start(flow, "hi", run_id="r1")
        await asyncio.sleep(0.2)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_a_script_names_its_definitions_as_the_module_a_worker_imports(tmp_path: Path) -> None:
    script = tmp_path / "script_shop_x6.py"
    script.write_text(SCRIPT)
    url = f"sqlite:///{tmp_path / 's.db'}"
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, str(script), url], check=True, timeout=60, env=env)
    worker = subprocess.Popen(
        [sys.executable, "-m", "sagaline.cli", "worker", "--db", url, "--import", str(script)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        import asyncio

        from sagaline import Engine

        async def finished() -> tuple[str, str, list[str]]:
            async with Engine(url, worker=False) as client:
                run = await client.wait("r1", timeout=60)
                steps = [s.name for s in await client.steps("r1")]
                return run.workflow, run.status.value, steps

        workflow_name, status, steps = asyncio.run(finished())
    finally:
        worker.terminate()
        worker.wait(30)
    assert workflow_name == "script_shop_x6.flow"  # not __main__.flow
    assert status == "COMPLETED"  # resumed by a worker that imported the script
    assert "script_shop_x6.remember" in steps


def test_the_worker_never_prints_the_database_password(postgres_url: str) -> None:
    # trust authentication ignores the password, so the URL opens as given
    url = postgres_url.replace("://postgres@", "://postgres:s3cr3t-x7@", 1)
    assert "s3cr3t-x7" in url, "the test's PostgreSQL URL has no user to add a password to"
    worker = subprocess.Popen(
        [sys.executable, "-m", "sagaline", "worker", "--db", url, "--import", "bench.workload"],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=60)
    assert line.startswith("worker serving default on postgresql://postgres:***@"), line + err
    assert "s3cr3t-x7" not in line + err
