"""Microversion parsing and negotiation, shared by every microversioned API.

Clients send `OpenStack-API-Version: <service-type> X.Y` (and some a legacy
header such as `X-OpenStack-Nova-API-Version: X.Y`); no header means the
minimum, `latest` the maximum, and a version outside the range is a 406.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pocketstack.core import app as app_mod
from pocketstack.core import errors
from pocketstack.core.app import ErrorRenderer

_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)$")


@dataclass(frozen=True, slots=True, order=True)
class Version:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION.match(text.strip())
        if match is None:
            raise errors.Invalid(f"invalid version string: {text} (use 'X.Y' or 'latest')")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


@dataclass(frozen=True, slots=True)
class VersionRange:
    """What one service supports, and how its clients name it in headers."""

    service_type: str
    minimum: Version
    maximum: Version
    legacy_header: str | None = None

    def requested(self, headers: Mapping[str, str]) -> str | None:
        """The raw version string asked for this service, if any."""
        for entry in headers.get("openstack-api-version", "").split(","):
            name, _, value = entry.strip().partition(" ")
            if name.lower() == self.service_type and value.strip():
                return value.strip()
        if self.legacy_header:
            legacy = headers.get(self.legacy_header.lower())
            if legacy:
                return legacy.strip()
        return None

    def negotiate(self, headers: Mapping[str, str]) -> Version:
        """The version to serve this request at; 400 if malformed, 406 if out of range."""
        text = self.requested(headers)
        if text is None:
            return self.minimum
        if text.lower() == "latest":
            return self.maximum
        version = Version.parse(text)
        if not self.minimum <= version <= self.maximum:
            raise errors.NotAcceptable(
                f"Version {version} is not supported by the API. Minimum is {self.minimum} "
                f"and maximum is {self.maximum}.",
                min_version=str(self.minimum),
                max_version=str(self.maximum),
            )
        return version

    def response_headers(self, version: Version) -> dict[str, str]:
        headers = {
            "OpenStack-API-Version": f"{self.service_type} {version}",
            "Vary": "openstack-api-version",
        }
        if self.legacy_header:
            headers[self.legacy_header] = str(version)
            headers["Vary"] += f", {self.legacy_header.lower()}"
        return headers


class MicroversionMiddleware:
    """Negotiates the version before routing, for every route of one service.

    The version lands in `scope["state"]["microversion"]` (read it with
    `requested_version`); every response gets the version headers, and an
    unacceptable or malformed request gets the service's own error body.
    """

    def __init__(self, app: ASGIApp, versions: VersionRange, render: ErrorRenderer) -> None:
        self.app = app
        self.versions = versions
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        try:
            version = self.versions.negotiate(headers)
        except errors.PocketstackError as exc:
            response = app_mod.error_response(exc, self.render, scope)
            response.headers.update(self.versions.response_headers(self.versions.minimum))
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["microversion"] = version
        extra = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in self.versions.response_headers(version).items()
        ]

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_version)


def requested_version(request: Request) -> Version:
    """The version MicroversionMiddleware negotiated for this request."""
    version: Version = request.state.microversion
    return version
