"""`connect(coordinates)`: the Bmc implementation for the coordinates' protocol."""

from __future__ import annotations

from mayu_py.bmc.base import Bmc
from mayu_py.bmc.coordinates import BmcCoordinates, BmcProtocol
from mayu_py.bmc.ipmi import IpmiBmc
from mayu_py.bmc.redfish import RedfishBmc


def connect(coordinates: BmcCoordinates, *, timeout: float = 10.0) -> Bmc:
    """A client for this BMC. Nothing is sent yet: every call opens what it needs.

    `timeout` bounds each request's wait for an answer (Redfish) or a power cycle's wait for
    "off" (IPMI). A dead BMC fails within 2 s (Redfish: TCP connect) or 3 s (IPMI: login).
    """
    if coordinates.protocol is BmcProtocol.REDFISH:
        return RedfishBmc(coordinates, timeout=timeout)
    return IpmiBmc(coordinates, timeout=timeout)
