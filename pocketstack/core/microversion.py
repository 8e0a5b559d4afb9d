"""Microversion parsing and negotiation, shared by every microversioned API.

Clients send `OpenStack-API-Version: <service-type> X.Y` (and some a legacy
header such as `X-OpenStack-Nova-API-Version: X.Y`); no header means the
minimum, `latest` the maximum, and a version outside the range is a 406.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pocketstack.core import errors

_VERSION = re.compile(r"^([1-9]\d*)\.(0|[1-9]\d*)$")


@dataclass(frozen=True, slots=True, order=True)
class Version:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION.match(text.strip())
        if match is None:
            raise errors.Invalid(f"Invalid microversion string: {text!r}. Use 'X.Y' or 'latest'.")
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
            "Vary": "OpenStack-API-Version",
        }
        if self.legacy_header:
            headers[self.legacy_header] = str(version)
            headers["Vary"] += f", {self.legacy_header}"
        return headers
