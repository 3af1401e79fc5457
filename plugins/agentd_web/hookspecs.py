"""The web plugin's own extension point: search backends.

Backends are registered on a small pluggy manager of the web plugin's own (project ``agentd_web``), loaded from
the built-ins, the entry-point group ``agentd_web`` and the modules or files named in
``plugins.web.backend_plugins``. A separate project name keeps these hooks invisible to agentd's manager, so a
package can be an agentd plugin and a search-backend provider at once without either manager tripping over
the other's hooks. Example::

    from agentd_web.hookspecs import web_hookimpl
    from agentd_web.backends import SearchResult

    class MySearch:
        def search(self, query, max_results, context):
            data = context.request_json("MySearch", "GET", "https://my.example/api", params={"q": query})
            return [SearchResult(title=r["t"], url=r["u"], snippet=r["s"], engine="mysearch") for r in data]

    @web_hookimpl
    def register_search_backends(register):
        register("mysearch", MySearch())
"""

from __future__ import annotations

import pluggy

PROJECT = "agentd_web"
ENTRY_POINT_GROUP = "agentd_web"

hookspec = pluggy.HookspecMarker(PROJECT)
web_hookimpl = pluggy.HookimplMarker(PROJECT)


class WebHookSpecs:
    """Hooks of the web plugin."""

    @hookspec
    def register_search_backends(self, register):
        """Register search backends: call ``register(name, backend)``; a later plugin may replace a name."""
