"""A real S3 server for tests: moto's, in its own process, on 127.0.0.1 and a free port.

moto keeps its buckets and its IAM switch in module globals, so each server runs in a
child process: tests that turn IAM checks on cannot leak that into another server.
``FaultyProxy`` stands between a client and the server to inject the faults S3 has and
moto does not: throttling, and a response body cut off mid-stream.
"""

import http.client
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

import boto3
import requests
from botocore.config import Config

__all__ = ["FAKE_CREDENTIALS", "MotoServer", "FaultyProxy"]

# boto3 signs every request, so some credentials must exist; without any it would also
# ask the EC2 metadata address, which is no place for a test to send traffic.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

_SERVE = """
import sys, threading
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # serve until the parent closes our stdin or ends us
server.stop()
"""


class MotoServer:
    """moto's S3 (and IAM) server in a child process; a context manager that stops it.

    ``iam=True`` starts it with IAM checks off so a test can create users and
    policies, then ``enforce_iam()`` turns them on: every request must then be signed
    by a known access key and be allowed by that user's policies.
    """

    def __init__(self, *, deadline: float = 30.0):
        self._deadline = deadline
        self._process: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoServer":
        env = {**os.environ, **FAKE_CREDENTIALS}
        self._process = subprocess.Popen(
            [sys.executable, "-c", _SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, text=True,
        )
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("moto server did not start (is moto[server] installed?)")
        self.port = int(line)
        self._wait_until_listening()
        return self

    def _wait_until_listening(self) -> None:
        end = time.monotonic() + self._deadline
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > end or self._process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"moto server not listening on 127.0.0.1:{self.port}")
                time.sleep(0.05)

    def client(self, service: str = "s3", **credentials):
        """A boto3 client for this server (fake credentials unless others are given)."""
        keys: Dict[str, str] = {
            "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            **credentials,
        }
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            config=Config(max_pool_connections=32), **keys)

    def enforce_iam(self) -> None:
        """From now on, check every request's signature and permissions against IAM."""
        response = requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"0", timeout=10)
        response.raise_for_status()

    def stop(self) -> None:
        if self._process is None:
            return
        try:
            self._process.stdin.close()
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
              b"<Message>Please reduce your request rate.</Message></Error>")


class FaultyProxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 endpoint, failing the requests it is told to.

    ``fail(suffix, *faults)`` queues faults for the next requests whose path ends with
    ``suffix``: ``"throttle"`` answers 503 SlowDown as S3 does under load, ``"cut"``
    forwards the request but closes the connection halfway through the response body.
    Every request is recorded in ``requests`` as (method, path, fault or None).
    """

    def __init__(self, upstream: str):
        host, _, port = upstream.split("://", 1)[1].partition(":")
        self._upstream = (host, int(port))
        self._faults: Dict[str, Deque[str]] = {}
        self._lock = threading.Lock()
        self.requests: List[Tuple[str, str, Optional[str]]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self):
                proxy._forward(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = forward

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, suffix: str, *faults: str) -> None:
        with self._lock:
            self._faults.setdefault(suffix, deque()).extend(faults)

    def _next_fault(self, path: str) -> Optional[str]:
        with self._lock:
            for suffix, queue in self._faults.items():
                if path.split("?", 1)[0].endswith(suffix) and queue:
                    return queue.popleft()
        return None

    def _forward(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        fault = self._next_fault(handler.path)
        self.requests.append((handler.command, handler.path, fault))
        if fault == "throttle":
            handler.send_response(503)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(_SLOW_DOWN)))
            handler.end_headers()
            handler.wfile.write(_SLOW_DOWN)
            return
        upstream = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            upstream.request(handler.command, handler.path, body=body,
                             headers=dict(handler.headers.items()))
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        handler.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                    "server", "date"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        if fault == "cut":
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data[: len(data) // 2] if fault == "cut" else data)

    def __enter__(self) -> "FaultyProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
