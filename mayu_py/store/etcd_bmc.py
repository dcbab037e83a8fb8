"""BMC records and BMC actions on etcd, mixed into the etcd transaction class (EtcdTx).

Keys (docs/store.md): `bmcs/<machine>` a machine's BMC; `bmc-actions/<id>` an action, its id
from the counter `bmc-action-seq` (read and written in the transaction that queues it, so
two replicas never hand out one id); `index/open-action/<id>` the queued and running ones
(the runner's queue); `index/machine-action/<machine>/<id>` a machine's actions, each with
its state, so trimming its finished ones reads no action record. Like SQLite, a machine keeps
its newest `ACTIONS_KEPT` finished actions; open ones are never trimmed.
"""

from __future__ import annotations

from collections.abc import Callable

from mayu_py.bmc.records import ACTIONS_KEPT, FINISHED, ActionState, BmcAction, StoredBmc
from mayu_py.model import Machine
from mayu_py.store.etcd_keys import KeyLayout, last_segment
from mayu_py.store.etcd_records import action_data, action_of, bmc_data, bmc_of
from mayu_py.store.etcd_txn import OptimisticTxn


class BmcKeys:
    """The BMC part of the Tx protocol over `self.txn` (an optimistic etcd transaction);
    the class it is mixed into provides `get_machine`."""

    txn: OptimisticTxn
    keys: KeyLayout
    get_machine: Callable[[str], Machine | None]

    # -- BMC records ------------------------------------------------------------------------

    def get_bmc(self, machine_id: str) -> StoredBmc | None:
        data = self.txn.get(self.keys.bmc(machine_id))
        return bmc_of(data) if data is not None else None

    def put_bmc(self, bmc: StoredBmc) -> None:
        """Keep a machine's BMC; a discovered machine with one leaves the expiry sweep."""
        if self.get_bmc(bmc.machine_id) is None:
            self._bmc_changes_index(bmc.machine_id, has_bmc=True)
        self.txn.put(self.keys.bmc(bmc.machine_id), bmc_data(bmc))

    def delete_bmc(self, machine_id: str) -> None:
        if self.get_bmc(machine_id) is not None:
            self._bmc_changes_index(machine_id, has_bmc=False)
        self.txn.delete(self.keys.bmc(machine_id))

    def _bmc_changes_index(self, machine_id: str, has_bmc: bool) -> None:
        machine = self.get_machine(machine_id)
        if machine is not None:
            before = self.keys.machine_index(machine, not has_bmc)
            after = self.keys.machine_index(machine, has_bmc)
            for key in before.keys() - after.keys():
                self.txn.delete(key)
            for key in after.keys() - before.keys():
                self.txn.put(key, after[key])

    # -- actions ----------------------------------------------------------------------------

    def add_action(self, action: BmcAction) -> BmcAction:
        """Queue an action; returns it with its id. Old finished ones of the machine go."""
        counter = self.txn.get(self.keys.action_seq) or {"next": 1}
        added = BmcAction(**{**action.__dict__, "id": counter["next"]})
        self.txn.put(self.keys.action_seq, {"next": counter["next"] + 1})
        self._trim_finished(action.machine_id)
        self._write_action(added)
        return added

    def _trim_finished(self, machine_id: str) -> None:
        entries = self.txn.scan(*self.keys.machine_actions(machine_id), descending=True)
        finished = [e for e in entries if ActionState(e.data) in FINISHED]
        for entry in finished[ACTIONS_KEPT:]:
            action_id = int(last_segment(entry.key))
            self.txn.delete(entry.key)
            self.txn.delete(self.keys.action(action_id))

    def get_action(self, action_id: int) -> BmcAction | None:
        data = self.txn.get(self.keys.action(action_id))
        return action_of(data) if data is not None else None

    def update_action(self, action: BmcAction) -> None:
        if action.id is not None and self.get_action(action.id) is not None:
            self._write_action(action)

    def _write_action(self, action: BmcAction) -> None:
        assert action.id is not None
        self.txn.put(self.keys.action(action.id), action_data(action))
        self.txn.put(self.keys.machine_action(action.machine_id, action.id), str(action.state))
        if action.state in FINISHED:
            self.txn.delete(self.keys.open_action(action.id))
        else:
            self.txn.put(self.keys.open_action(action.id), action.machine_id)

    def open_actions(self, limit: int) -> list[BmcAction]:
        """Queued and running actions, oldest first (each one read is checked at commit: two
        runners cannot both claim one)."""
        entries = self.txn.scan(*self.keys.open_actions, limit=limit, keys_only=True)
        return self._actions([int(last_segment(e.key)) for e in entries])

    def machine_actions(self, machine_id: str, limit: int) -> list[BmcAction]:
        """A machine's newest actions, newest first."""
        range_ = self.keys.machine_actions(machine_id)
        entries = self.txn.scan(*range_, limit=limit, descending=True, keys_only=True)
        return self._actions([int(last_segment(e.key)) for e in entries])

    def _actions(self, ids: list[int]) -> list[BmcAction]:
        found = self.txn.get_many([self.keys.action(i) for i in ids])
        return [action_of(data) for data in found.values() if data is not None]

    def _forget_bmc_of(self, machine_id: str) -> None:
        """A forgotten machine's BMC and actions go with it."""
        self.txn.delete(self.keys.bmc(machine_id))
        range_ = self.keys.machine_actions(machine_id)
        for entry in self.txn.scan(*range_, keys_only=True):
            action_id = int(last_segment(entry.key))
            self.txn.delete(self.keys.action(action_id))
            self.txn.delete(self.keys.open_action(action_id))
        self.txn.delete_range(*range_)
