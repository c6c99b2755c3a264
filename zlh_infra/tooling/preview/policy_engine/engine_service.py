"""A minimal Engine gRPC service at the engine address, for packs that log through it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
from google.protobuf import empty_pb2  # type: ignore[import-untyped]
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

from ..recording import Diagnostic

_LOG_SEVERITY: dict[engine_pb2.LogSeverity.ValueType, str] = {
    engine_pb2.DEBUG: "info",
    engine_pb2.INFO: "info",
    engine_pb2.WARNING: "warning",
    engine_pb2.ERROR: "error",
}


class EngineLogService(engine_pb2_grpc.EngineServicer):
    """Just enough of the engine's host service to capture ``Log`` calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: list[tuple[str, str, str]] = []

    def Log(  # noqa: N802 - gRPC method name
        self, request: engine_pb2.LogRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self._lock:
            severity = _LOG_SEVERITY.get(request.severity, "info")
            self._logs.append((severity, request.message, request.urn))
        return empty_pb2.Empty()

    def GetRootResource(  # noqa: N802 - gRPC method name
        self, request: engine_pb2.GetRootResourceRequest, context: grpc.ServicerContext
    ) -> engine_pb2.GetRootResourceResponse:
        return engine_pb2.GetRootResourceResponse(urn="")

    def SetRootResource(  # noqa: N802 - gRPC method name
        self, request: engine_pb2.SetRootResourceRequest, context: grpc.ServicerContext
    ) -> engine_pb2.SetRootResourceResponse:
        return engine_pb2.SetRootResourceResponse()

    def diagnostics(self, pack: str) -> list[Diagnostic]:
        """The logged lines, as the engine shows them for ``pack``."""
        with self._lock:
            return [
                Diagnostic(
                    severity=sev,
                    message=msg,
                    source="policy",
                    urn=urn or None,
                    policy_pack=pack,
                )
                for sev, msg, urn in self._logs
            ]


@contextlib.contextmanager
def serve_engine(service: EngineLogService) -> Iterator[str]:
    """Serve ``service`` on a free local port; yields its address."""
    executor = futures.ThreadPoolExecutor(max_workers=2)
    server = grpc.server(executor)
    engine_pb2_grpc.add_EngineServicer_to_server(service, server)
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    try:
        yield address
    finally:
        server.stop(None)
        executor.shutdown(wait=False)
