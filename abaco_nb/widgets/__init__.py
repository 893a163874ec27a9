"""Notebook widgets: the dashboard, executor progress and a log viewer (ipywidgets 8).

Imported lazily by the magics and the executor, so ``import abaco_nb`` does not need ipywidgets.
"""

from __future__ import annotations

from .dashboard import Dashboard
from .logs import LogViewer
from .progress import ExecutorProgress, count, show_progress
from .timeline import timeline_svg

__all__ = ["Dashboard", "ExecutorProgress", "LogViewer", "count", "show_progress", "timeline_svg"]
