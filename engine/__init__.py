"""estiba's container engine: a pure-Python library, no Django, Celery or Channels.

Start with :class:`engine.engine.Engine`.
"""

from engine.engine import Engine, EngineConfig

__all__ = ["Engine", "EngineConfig"]
