"""Running ``callhook`` in a subprocess, as a user would, with a clean CALLHOOK_* environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CALLHOOK = [sys.executable, "-m", "callhook.cli"]
TIMEOUT = 60


def cli_env(data_dir: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    """The current environment without CALLHOOK_* settings, then the data dir and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLHOOK_")}
    env["CALLHOOK_DATA_DIR"] = str(data_dir)
    if database_url:
        env["CALLHOOK_DATABASE_URL"] = database_url
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


class Cli:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        done = subprocess.run(
            [*CALLHOOK, *args],
            env=env or self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.code == 0, f"{args}: exit {result.code}\n{result.err}"
        assert result.err == "", result.err
        return result

    def json(self, *args: str) -> Any:
        return self.ok(*args, "--json").json()

    def fails(self, code: int, *args: str) -> str:
        """Run a command that must fail with ``code``; returns its one-line error."""
        result = self.run(*args)
        assert result.code == code, f"{args}: exit {result.code}\n{result.out}\n{result.err}"
        assert result.err.startswith("error: "), result.err
        return result.err
