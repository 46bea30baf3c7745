"""Serve a data folder over HTTP on the loopback interface: a local mirror for the data loaders.

Point ``$NEURALARCH_DATA_URL`` at the yielded URL to let notebooks running elsewhere on the same
machine fetch (and checksum-verify) the book's data without a network connection.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep test and notebook output clean."""


@contextlib.contextmanager
def serve_folder(folder: str | Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``folder`` on ``host`` at a free port; yield the base URL; stop on exit."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot serve {folder}: not a directory")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
