"""The daemon: the HTTP API on an owner-only socket, the durable run queue and its workers, and the client the CLI
uses to talk to it. Names load lazily: the CLI imports ``client`` without FastAPI.
"""

from .._lazy import exports

__all__ = ["Daemon", "RunQueue", "create_api", "daemon_running"]
__getattr__ = exports(
    __name__, {"Daemon": "server", "RunQueue": "worker", "create_api": "api", "daemon_running": "client"}
)
