"""What the Kubernetes source keeps of each tenant it runs, for rolling replacements.

Per tenant a `TenantRecord` (mayu_py.tenants.record), the server's own record type: the
revision of the TenantCluster this host last acted on (with the node and ingress addresses
assigned to it, which later passes keep), the rollout (nodes pinned to an earlier
revision, those revisions' specs) and the nodes' last reports. A TenantCluster object keeps no
earlier spec, so the pins live here, written atomically (0600) to `<root>/<tenant>/record.json`
beside the tenant's PKI before the nodes they describe are handed to the agent: an agent
restarted mid-rollout resumes with the same pins. The rollout logic itself is the server's
(`TenantRecord.with_spec`, `TenantRecord.advanced`, mayu_py.tenants.rollout); the progress is
published in the object's `status.rollout` by the source.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mayu_py.files import atomic_write
from mayu_py.tenants import TenantRecord

log = logging.getLogger(__name__)

RECORD_FILE = "record.json"


class TenantBook:
    """The records of the tenants this host runs, cached in memory, kept under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._records: dict[str, TenantRecord] = {}

    def get(self, tenant: str) -> TenantRecord | None:
        """The tenant's record, or None when this host kept none (or it is unreadable)."""
        record = self._records.get(tenant)
        if record is not None:
            return record
        path = self.root / tenant / RECORD_FILE
        try:
            record = TenantRecord.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("tenant record %s unreadable (%s): starting afresh", path, exc)
            return None
        self._records[tenant] = record
        return record

    def put(self, record: TenantRecord) -> None:
        """Keep `record` (on disk first: what the agent then does follows from it)."""
        if self._records.get(record.name) == record:
            return
        directory = self.root / record.name
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(directory / RECORD_FILE, json.dumps(record.to_json()), 0o600)
        self._records[record.name] = record

    def forget(self, tenant: str) -> None:
        """Drop the cached record (its directory is removed with the tenant's PKI)."""
        self._records.pop(tenant, None)
