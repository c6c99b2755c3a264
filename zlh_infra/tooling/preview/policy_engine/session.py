"""A policy pack run beside a program, or over a finished recording."""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from pathlib import Path

from ..policy_config import load_policy_config_file
from ..recording import Diagnostic, RecordedResource, StackRecording
from .engine_service import EngineLogService, serve_engine
from .errors import PackFailedError, PolicyEngineError, PolicyPackError
from .pack_process import PackProcess, choose_python, load_pack_yaml, pack_environment
from .protocol import AnalyzerDriver, ResourceFeed
from .report import PolicyReport
from .settings import PolicySettings, SessionSettings, takes_settings


@takes_settings(PolicySettings)
def run_policy_pack(
    pack_dir: Path, recording: StackRecording, settings: PolicySettings
) -> PolicyReport:
    """Run the policy pack in ``pack_dir`` over a finished ``recording``.

    Takes the ``PolicySettings`` as keywords. Raises PolicyConfigError for unusable
    policy config and PolicyPackError when the pack fails; the pack process is ended in
    every case.
    """
    with PolicySession(
        pack_dir, stack=recording.stack, project=recording.project, **settings.keywords()
    ) as session:
        for resource in recording.resources:
            session.analyze(resource)
        return session.finish(recording)


class PolicySession:
    """A policy pack beside a running program, as the engine runs one during a preview.

    Takes the ``SessionSettings`` as keywords. The pack starts at once; ``analyze``
    hands it each resource as it registers (from any thread), ``finish`` sends the whole
    stack to AnalyzeStack and returns the report. Used as a context manager, the pack
    process is ended in every case.

    Once the pack is configured, ``analyze`` starts the resource's calls in the
    registering thread itself and returns without waiting for their answers, which are
    read when the stack is finished. Handing each resource to another thread instead
    costs a GIL hand-off per call, and a busy program starves that thread.
    """

    @takes_settings(SessionSettings)
    def __init__(self, pack_dir: Path, settings: SessionSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        #: Resources registered before the pack was ready; then the live feed.
        self._backlog: list[RecordedResource] = []
        self._feed: ResourceFeed | None = None
        self._recording: concurrent.futures.Future[StackRecording] = concurrent.futures.Future()
        self._closed = False
        # Config file errors surface here, before any process starts.
        config_file = settings.policy_config_file
        self._given = load_policy_config_file(config_file) if config_file else {}
        self._pack_dir = Path(pack_dir).resolve()
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._report = self._worker.submit(self._run)

    def analyze(self, resource: RecordedResource) -> None:
        """Start analysing ``resource``; never raises, and waits for the pack only while
        too many calls are unanswered."""
        with self._lock:
            feed = self._feed
            if feed is None:
                self._backlog.append(resource)
                return
        feed.submit(resource)

    def finish(self, recording: StackRecording) -> PolicyReport:
        """AnalyzeStack over ``recording``, and the report (raises the pack's failure)."""
        self._recording.set_result(recording)
        return self._report.result()

    def close(self) -> None:
        """End the session, finished or not: the pack process never outlives it."""
        if self._closed:
            return
        self._closed = True
        if not self._recording.done():
            self._recording.set_exception(PolicyEngineError("the preview ended early"))
        with contextlib.suppress(Exception):
            self._report.result()
        self._worker.shutdown(wait=True)

    def __enter__(self) -> PolicySession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _attach(self, feed: ResourceFeed) -> None:
        """The pack is configured: send it the backlog, then every registration."""
        with self._lock:
            for resource in self._backlog:
                feed.submit(resource)
            self._backlog.clear()
            self._feed = feed

    def _run(self) -> PolicyReport:
        settings, pack_dir = self._settings, self._pack_dir
        pack_yaml = load_pack_yaml(pack_dir)
        interpreter, env_path = choose_python(pack_dir, pack_yaml, settings.python)
        env = pack_environment(settings, env_path)

        deadline = time.monotonic() + settings.timeout
        logs = EngineLogService()
        failure: str | None = None
        with serve_engine(logs) as engine_address:
            pack = PackProcess(
                [interpreter, "-u", "-m", "pulumi.policy", engine_address, "."], pack_dir, env
            )
            try:
                driver = AnalyzerDriver(
                    pack=pack,
                    pack_dir=pack_dir,
                    engine_address=engine_address,
                    settings=settings,
                    given=self._given,
                    attach=self._attach,
                    final=self._recording.result,
                    deadline=deadline,
                    yaml_version=str(pack_yaml.get("version") or ""),
                )
                report = driver.run()
            except PackFailedError as exc:
                failure = str(exc)
            finally:
                pack.shutdown()
        if failure is not None:
            raise PolicyPackError(failure, pack.stderr_tail())

        name = report.pack_name
        report.diagnostics.extend(logs.diagnostics(name))
        report.diagnostics.extend(
            Diagnostic(severity="info", message=line, source="policy", policy_pack=name)
            for line in pack.output_lines()
        )
        return report
