"""The web dashboard: pages on the daemon's own FastAPI app, opened in a browser through `agentd ui`.

On the daemon's Unix socket (owner-only) the pages need nothing more; browsers reach them through a loopback
listener the daemon starts on the first ``POST /ui/session``, guarded by one-time login links and session
cookies (agentd.daemon.ui.auth). Templates and static files ship inside this package: no build step, no CDN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .auth import MINT_PATH
from .listener import UiListener

__all__ = ["mount_ui"]


def mount_ui(api: Any, daemon: Any, port: int = 0, log_level: str = "warning") -> UiListener:
    """Add the dashboard to ``api``; returns its (not yet started) loopback listener."""
    from fastapi.staticfiles import StaticFiles

    from .queries import MIGRATIONS
    from .views import make_router

    daemon.app.journal.apply_migrations(MIGRATIONS)
    listener = UiListener(api, port=port, log_level=log_level)

    @api.post(MINT_PATH, include_in_schema=False)
    async def ui_session() -> dict[str, Any]:
        """A one-time login URL for the loopback listener (started on first use)."""
        url = await listener.login_url()
        return {"url": url, "expires_in_s": listener.auth.token_ttl_s}

    api.include_router(make_router(daemon))
    api.mount("/ui/static", StaticFiles(directory=Path(__file__).parent / "static"), name="ui-static")
    return listener
