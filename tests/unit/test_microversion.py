"""Microversion negotiation as the clients exercise it."""

import pytest

from pocketstack.core import errors
from pocketstack.core.microversion import Version, VersionRange

COMPUTE = VersionRange("compute", Version(2, 1), Version(2, 96), "X-OpenStack-Nova-API-Version")


def test_no_header_means_minimum() -> None:
    assert COMPUTE.negotiate({}) == Version(2, 1)


def test_latest_means_maximum() -> None:
    assert COMPUTE.negotiate({"openstack-api-version": "compute latest"}) == Version(2, 96)


def test_other_services_entries_are_ignored() -> None:
    headers = {"openstack-api-version": "volume 3.5, compute 2.61"}
    assert COMPUTE.negotiate(headers) == Version(2, 61)


def test_legacy_header_is_read() -> None:
    assert COMPUTE.negotiate({"x-openstack-nova-api-version": "2.10"}) == Version(2, 10)


def test_versions_compare_numerically() -> None:
    assert Version.parse("2.10") > Version.parse("2.9")


def test_out_of_range_is_406_with_the_range() -> None:
    with pytest.raises(errors.NotAcceptable) as caught:
        COMPUTE.negotiate({"openstack-api-version": "compute 2.200"})
    assert (caught.value.min_version, caught.value.max_version) == ("2.1", "2.96")


@pytest.mark.parametrize("text", ["2", "two.one", "2.01", "-1.0"])
def test_malformed_version_is_400(text: str) -> None:
    with pytest.raises(errors.Invalid):
        COMPUTE.negotiate({"openstack-api-version": f"compute {text}"})


def test_response_headers_name_the_service() -> None:
    headers = COMPUTE.response_headers(Version(2, 61))
    assert headers["OpenStack-API-Version"] == "compute 2.61"
    assert headers["X-OpenStack-Nova-API-Version"] == "2.61"
