"""Power and boot device of a machine through its BMC, over Redfish (sushy) or IPMI (pyghmi).

Modules: `coordinates` (where a BMC is and how to log in, validated), `base` (the `Bmc`
protocol, power states, boot devices, results), `errors` (one error family with one-line
messages), `redfish` and `ipmi` (the two implementations, each mapping its library's
exceptions at this boundary), `pyghmi_sha1` (the cipher-suite workaround vbmc needs) and
`client` (`connect(coordinates)` picks the implementation).
"""

from __future__ import annotations
