"""``python -m sandbox --port 8900``: serve every provider fake on one local port."""

from __future__ import annotations

import argparse
import os
import threading
import time

import uvicorn


def _exit_with_parent() -> None:
    """`heliograph demo` starts the sandbox; when the demo dies (Ctrl-C, kill), so does this,
    rather than holding port 8900 for the next `make run`."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    args = parser.parse_args()
    _exit_with_parent()
    uvicorn.run(
        "channels.registry:sandbox_app",  # the shell with every channel package's fakes
        factory=True,
        host=args.host,
        port=args.port,
        log_level="warning",
        # A connection left idle is kept far longer than uvicorn's 5 s: a client that sent
        # on one just as the server closed it got "Server disconnected without sending a
        # response" (a test's teardown after 14 s of other work did). The fakes' clients
        # are few and local; an idle connection costs nothing here.
        timeout_keep_alive=300,
    )


if __name__ == "__main__":
    main()
