"""Per-rule logging: everything a rule script reports goes to its `log:` file and to the console."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup(log_path: str | None, name: str = "charlora", append: bool = False) -> logging.Logger:
    """Send charlora's log records to `log_path` (created, truncated unless `append`) and to stderr."""
    logger = logging.getLogger("charlora")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_path, mode="a" if append else "w", encoding="utf-8")
        to_file.setFormatter(fmt)
        logger.addHandler(to_file)
    to_console = logging.StreamHandler(sys.stderr)
    to_console.setFormatter(fmt)
    logger.addHandler(to_console)

    def log_uncaught(kind, value, tb):  # a crash's traceback belongs in the rule's log too
        if not issubclass(kind, (KeyboardInterrupt, SystemExit)):
            logger.error("failed", exc_info=(kind, value, tb))
        else:
            sys.__excepthook__(kind, value, tb)

    sys.excepthook = log_uncaught
    return logging.getLogger(name)
