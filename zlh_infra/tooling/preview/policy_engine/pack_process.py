"""The policy pack's process: where it is, which interpreter runs it, its port and output.

Interpreter: the ``python`` setting if given; else the ``runtime.options.virtualenv`` of
``PulumiPolicy.yaml`` (relative to the pack directory) when it holds ``bin/python``;
else the current interpreter. The engine's Python shim would fail on a missing
virtualenv instead; falling back keeps offline runs working from the project's own
environment.

The pack's stdout (after the port line) and stderr lines are kept: the engine shows
them as info diagnostics; ``pulumi.log`` inside a policy writes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import PackFailedError, PolicyPackError
from .settings import SessionSettings

_STDERR_TAIL_LINES = 60


class PackProcess:
    """The policy pack process, its port and its output."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.argv = argv
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._port: str | None = None
        self._port_ready = threading.Event()
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise PolicyPackError(f"cannot start policy pack with {argv[0]}: {exc}") from exc
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        first = True
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if first:
                first = False
                self._port = line.strip()
                self._port_ready.set()
            elif line.strip():
                self._stdout.append(line)
        self._port_ready.set()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def wait_port(self, deadline: float) -> int:
        self._port_ready.wait(max(0.0, deadline - time.monotonic()))
        if self._port is None:
            # stdout closes a moment before the process is reaped: wait for the exit
            # so a pack that died is reported as such, not as slow.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=max(0.0, min(5.0, deadline - time.monotonic())))
            if self.proc.poll() is None:
                raise PackFailedError("policy pack did not report its port in time")
            raise PackFailedError(
                f"policy pack exited with code {self.proc.returncode} before serving"
            )
        if not self._port.isdigit():
            raise PackFailedError(f"policy pack printed {self._port!r} instead of its port")
        return int(self._port)

    def shutdown(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The pipes reach EOF once the process is gone, so every line is read.
        for reader, pipe in zip(self._readers, (self.proc.stdout, self.proc.stderr), strict=True):
            reader.join(timeout=3)
            if pipe is not None and not reader.is_alive():
                pipe.close()

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr[-_STDERR_TAIL_LINES:])

    def output_lines(self) -> list[str]:
        return [*self._stdout, *(line for line in self._stderr if line.strip())]


def load_pack_yaml(pack_dir: Path) -> dict[str, Any]:
    """``PulumiPolicy.yaml``, refused unless its runtime is Python."""
    path = pack_dir / "PulumiPolicy.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise PolicyPackError(f"no policy pack at {pack_dir}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyPackError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyPackError(f"{path}: expected a mapping")
    runtime = data.get("runtime")
    name = runtime.get("name") if isinstance(runtime, dict) else runtime
    if name != "python":
        raise PolicyPackError(f"{path}: runtime {name!r} is not supported, only python")
    return data


def choose_python(
    pack_dir: Path, pack_yaml: Mapping[str, Any], python: str | None
) -> tuple[str, str | None]:
    """The interpreter to run, and a bin directory to put first on PATH (venv only)."""
    if python:
        return python, None
    runtime = pack_yaml.get("runtime")
    options = runtime.get("options") if isinstance(runtime, dict) else None
    venv = options.get("virtualenv") if isinstance(options, dict) else None
    if venv:
        bindir = (pack_dir / str(venv)).resolve() / ("Scripts" if os.name == "nt" else "bin")
        candidate = bindir / ("python.exe" if os.name == "nt" else "python")
        if candidate.is_file():
            return str(candidate), str(bindir)
    return sys.executable, None


def pack_environment(settings: SessionSettings, env_path: str | None) -> dict[str, str]:
    """The pack's environment: this one, and the stack as the engine describes it."""
    env = dict(os.environ)
    env.update(
        PULUMI_ORGANIZATION=settings.organization,
        PULUMI_PROJECT=settings.project,
        PULUMI_STACK=settings.stack,
        PULUMI_DRY_RUN="true" if settings.dry_run else "false",
        PULUMI_CONFIG=json.dumps(dict(settings.stack_config)),
    )
    if env_path is not None:
        # What the engine's shim does when it runs a virtualenv's python.
        env["PATH"] = env_path + os.pathsep + env.get("PATH", "")
        env.pop("PYTHONHOME", None)
    return env
