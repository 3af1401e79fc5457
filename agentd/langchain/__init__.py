"""LangChain interop: any LangChain ``BaseTool`` as an agentd tool (``tools.from_langchain``), and the built-in
plugin that registers the ones named in the config (``plugin``).
"""

from .._lazy import exports

__all__ = ["from_langchain"]
__getattr__ = exports(__name__, {"from_langchain": "tools"})
