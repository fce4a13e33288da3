"""The engine setting, under its former module name (``bot/cli.py`` and the chaos
benchmark import it from here). The GPU queue no longer uses procrastinate: see
:mod:`gpu_queue.engines` for why, and for how workers are woken on each backend."""

from __future__ import annotations

from gpu_queue.engines import ENGINES, ENV, Engine, configure, engine_for, engine_setting

__all__ = ["ENGINES", "ENV", "Engine", "configure", "engine_for", "engine_setting"]
