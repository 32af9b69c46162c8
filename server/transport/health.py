"""The health service: grpc's asyncio one, plus List and one switch for the whole server."""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2

Status = int  # a health_pb2.HealthCheckResponse.ServingStatus value


class Health(health_aio.HealthServicer):
    """grpc's asyncio health service, with the List method it leaves unimplemented."""

    def __init__(self, services: Iterable[str]) -> None:
        super().__init__()
        self.services = tuple(services)  # the names set_serving() reports for
        self.statuses: dict[str, Status] = {}
        self.closing = False

    async def set(self, service: str, status: Status) -> None:
        """Sets the status of a service (ignored once shutting down)."""
        if self.closing:
            return
        self.statuses[service] = status
        await super().set(service, status)

    async def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for every service, for good."""
        self.closing = True
        self.statuses = dict.fromkeys(self.statuses, health_pb2.HealthCheckResponse.NOT_SERVING)
        await super().enter_graceful_shutdown()

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        """Every service's status."""
        del request, context
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self.statuses.items()
            }
        )

    async def set_serving(self, serving: bool) -> None:
        """SERVING or NOT_SERVING for the whole server and the Recommender service."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self.services:
            await self.set(name, status)
