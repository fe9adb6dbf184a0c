"""The gate at the true start for httpx clients (the atproto SDK); see remote.py.

A request asks the gate through its `trace` extension (`httpx_trace`), and the
client's transports resolve host names in the channel's own threads
(`gated_transports`), so one hung account never delays another's lookups.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ipaddress
import socket
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

import httpcore
import httpx
from httpx._utils import get_environment_proxies

from switchboard.channels.remote import Attempt, ChannelThreads


def httpx_trace(attempt: Attempt) -> Callable[[str, Mapping[str, Any]],
                                                Coroutine[Any, Any, None]]:
    """The `trace` extension of an httpx request that asks the gate at its true start:
    httpcore calls it once the connection is ready (new or reused, TLS done), right
    before it writes the request headers. A proxy's CONNECT is a wait, not the start."""

    async def trace(event: str, info: Mapping[str, Any]) -> None:
        if not event.endswith(".send_request_headers.started"):
            return
        request = info.get("request")
        if getattr(request, "method", None) == b"CONNECT":
            return
        attempt.begin()

    return trace


def gated_transports(threads: ChannelThreads, **kwargs: Any) -> dict[str, Any]:
    """The `transport` and `mounts` arguments of an httpx client whose connections,
    direct or through the proxies the environment names, resolve host names in the
    channel's own threads. (Given a transport, httpx would ignore HTTPS_PROXY and
    NO_PROXY: they are mounted here as httpx would mount them.)"""
    mounts = {pattern: None if proxy is None else gated_transport(threads, proxy=proxy, **kwargs)
              for pattern, proxy in get_environment_proxies().items()}
    return {"transport": gated_transport(threads, **kwargs), "mounts": mounts}


def gated_transport(threads: ChannelThreads, **kwargs: Any) -> httpx.AsyncHTTPTransport:
    """An httpx transport resolving host names in the channel's own threads (httpx
    would use the loop's shared pool, where a hung account's lookups queue others)."""
    transport = httpx.AsyncHTTPTransport(**kwargs)
    # httpcore takes its network backend only when the pool is built; httpx builds
    # the pool itself, so the backend is swapped in before any connection exists.
    transport._pool._network_backend = _ChannelNetwork(threads.pool)
    return transport


class _ChannelNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, given addresses looked up in the channel's pool."""

    def __init__(self, pool: concurrent.futures.Executor) -> None:
        self._pool = pool
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        failure: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in await self._addresses(host, port, timeout):
            try:
                return await self._backend.connect_tcp(address, port, timeout, local_address,
                                                       socket_options)
            except httpcore.ConnectError as exc:  # the next address may answer
                failure = exc
        raise failure

    async def _addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [host]  # a literal needs no lookup
        lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._pool, lookup), timeout)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"looking up {host} took too long") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot look up {host}: {exc}") from exc
        found = [str(address[0]) for af, _, _, _, address in infos
                 if af in (socket.AF_INET, socket.AF_INET6)]
        return list(dict.fromkeys(found))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        return await self._backend.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)
