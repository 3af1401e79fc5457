"""Run leases: one owner drives a run (an owner id, a fencing token, a heartbeat, an expiry).

The lease SQL lives in ``Journal`` (claim_run, claim_next, renew_lease, release_lease, and the fence every write
checks); this module holds what the rest of agentd names: the Lease itself, who this process is, whether an owner
is gone, and the two errors a driver meets.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from .errors import AgentdError


class LeaseLost(AgentdError):
    """This process no longer owns the run: another one took its lease over. Stop driving it; write nothing."""


class RunHeld(AgentdError):
    """Another live process holds the run's lease: it is being driven elsewhere."""


@dataclass(frozen=True)
class Lease:
    """The right to drive (and write) one run, until another claim raises the token past ``token``."""

    run_id: str
    owner: str
    token: int
    ttl_s: float


_OWNER: tuple[int, str] | None = None


def process_owner(kind: str = "cli") -> str:
    """This process's owner id, ``kind:host:pid:random``; the first call's ``kind`` names it for good."""
    global _OWNER
    if _OWNER is None or _OWNER[0] != os.getpid():  # a forked child is another owner
        _OWNER = (os.getpid(), f"{kind}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")
    return _OWNER[1]


def owner_is_dead(owner: str | None) -> bool:
    """True only when ``owner`` is a process on this host that no longer exists (a reused pid reads alive)."""
    parts = (owner or "").split(":")
    if len(parts) != 4 or parts[1] != socket.gethostname() or not parts[2].isdigit():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by another user
        return False
    return False
