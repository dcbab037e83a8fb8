"""etcd records of users (`P users/<name>`): the people who operate the server, tokens hashed.

Mixed into the etcd transaction class: the same optimistic transaction. Like every named
record, a listing is checked at commit. A user record gains fields only with defaults (there
are no migrations on etcd).
"""

from __future__ import annotations

from mayu_py.model import User
from mayu_py.store.etcd_keys import KeyLayout
from mayu_py.store.etcd_records import asdict
from mayu_py.store.etcd_txn import OptimisticTxn

USERS = "users"


class UserRecords:
    """The user part of the Tx protocol over `self.txn`."""

    txn: OptimisticTxn
    keys: KeyLayout

    def get_user(self, name: str) -> User | None:
        data = self.txn.get(self.keys.record(USERS, name))
        return User(**data) if data is not None else None

    def put_user(self, user: User) -> None:
        self.txn.put(self.keys.record(USERS, user.name), asdict(user))

    def delete_user(self, name: str) -> None:
        self.txn.delete(self.keys.record(USERS, name))

    def list_users(self) -> list[User]:
        entries = self.txn.scan(*self.keys.records(USERS), checked=True)
        return [User(**entry.data) for entry in entries]
