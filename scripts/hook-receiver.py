#!/usr/bin/env python3
"""The demo's webhook receiver: a loopback HTTP server for examples/webhook.

    scripts/hook-receiver.py PORT

POST /orders          200, and prints what it received
POST /busy            429 with Retry-After: 1 the first time, then 200
POST /broken          503 the first two times, then 200
POST /gone            410
"""
import sys
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

seen = Counter()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        seen[self.path] += 1
        n = seen[self.path]
        status, extra = 200, {}
        if self.path == "/busy" and n == 1:
            status, extra = 429, {"retry-after": "1"}
        elif self.path == "/broken" and n <= 2:
            status = 503
        elif self.path == "/gone":
            status = 410
        elif self.path not in ("/orders", "/busy", "/broken"):
            status = 404
        print(
            f"receiver: {self.path} #{n} job {self.headers.get('x-bullpen-job')} "
            f"-> {status}: {body.decode(errors='replace')}",
            flush=True,
        )
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
