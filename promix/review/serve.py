"""`promix review RUN_DIR --serve`: the review page on http://127.0.0.1:PORT/, which also
saves each export as RUN_DIR/corrections.csv. Local only: it binds to the loopback address."""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

MAX_BODY = 50 * 2**20  # a corrections.csv larger than this is refused


class ReviewHandler(http.server.SimpleHTTPRequestHandler):
    """GET serves the run directory (review.html first); POST /corrections.csv writes it."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path in ("/", ""):
            self.path = "/review.html"
        super().do_GET()

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if self.path != "/corrections.csv" or not 0 < length <= MAX_BODY:
            self.send_error(400, "POST corrections.csv only")
            return
        text = self.rfile.read(length).decode("utf-8")
        if not text.startswith("path,index,given_label,decision,label"):
            self.send_error(400, "not a corrections.csv")
            return
        path = Path(self.directory) / "corrections.csv"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        self.send_response(204)
        self.end_headers()


def review_server(run_dir: Path, port: int = 8765) -> http.server.ThreadingHTTPServer:
    """The server `--serve` runs, bound to loopback (port 0: any free port)."""
    handler = functools.partial(ReviewHandler, directory=str(run_dir))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def serve(run_dir: Path, *, port: int = 8765) -> None:
    """Serve until Ctrl-C."""
    with review_server(run_dir, port) as server:
        print(f"review page: http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C to stop; "
              f"exports are saved as {Path(run_dir) / 'corrections.csv'})")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
