"""A TCP relay in front of cupsd that stops one job submission at a chosen step, so that a test can break
the submit exactly there (kill the worker, stop cupsd)."""

from __future__ import annotations

import contextlib
import enum
import re
import socket
import threading

# The start of an IPP request body (RFC 8010): version, operation id, request id, then the operation
# attributes group opening with attributes-charset. Observed on the wire from pycups' printFile: Get-Printer-
# Attributes twice, then Create-Job (0x0005), then Send-Document (0x0006) with the file, on one connection.
CREATE_JOB = re.compile(rb"[\x01\x02]\x00\x00\x05.{4}\x01\x47\x00\x12attributes-charset", re.DOTALL)
SEND_DOCUMENT = re.compile(rb"[\x01\x02]\x00\x00\x06.{4}\x01\x47\x00\x12attributes-charset", re.DOTALL)


class GateMode(enum.Enum):
    HOLD_CREATE_JOB = "hold_create_job"  # CUPS never hears of the job; the client waits for an answer
    SWALLOW_SEND_DOCUMENT_REPLY = "swallow_send_document_reply"  # CUPS gets the job; the client no answer
    HOLD_SEND_DOCUMENT = "hold_send_document"  # CUPS has the job (Create-Job) but never gets its document


class _Relay:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.is_swallowing = False

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class IppGate:
    """A TCP relay to cupsd. Armed, it stops the next job submission that passes at one step, so a test
    can SIGKILL the worker at exactly that point; everything else (polls, queries) passes untouched."""

    def __init__(self, *, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.tripped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._mode: GateMode | None = None
        self._relays: list[_Relay] = []
        self._held: _Relay | None = None
        self._is_open = True

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self._port}"

    def start(self) -> IppGate:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def arm(self, mode: GateMode) -> None:
        with self._lock:
            self._mode = mode
            self.tripped.clear()

    def release(self) -> None:
        """Drop the held connection: whatever the server did not get by now, it never gets."""
        with self._lock:
            held, self._held = self._held, None
        if held is not None:
            held.close()

    def pause(self) -> None:
        """As cupsd is while it is stopped: every relayed connection dropped (the held one too) and the port
        refusing new ones, until resume(). With a relay that kept accepting (and closed each connection,
        cupsd being down) two full-suite runs saw a print call never return; our reading, not proven: libcups
        reconnecting and retrying inside printFile, where a stopped cupsd's refusal ends it."""
        self.stop()

    def resume(self) -> None:
        """Accept again on the same port (after pause())."""
        self._listener = socket.create_server(("127.0.0.1", self._port))
        self._is_open = True
        self.start()

    def stop(self) -> None:
        """Close the relay: its port refuses connections from now on (shutdown wakes the accepting thread,
        which a close alone would leave holding the listening socket open); every relayed one is dropped."""
        self._is_open = False
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            relays, self._relays = self._relays, []
        for relay in relays:
            relay.close()

    def _accept(self) -> None:
        while self._is_open:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()  # cupsd is down: the client sees its connection refused, as without the relay
                continue
            relay = _Relay(client, upstream)
            with self._lock:
                self._relays.append(relay)
            threading.Thread(target=self._client_to_server, args=(relay,), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(relay,), daemon=True).start()

    def _trip(self, relay: _Relay, pattern: re.Pattern[bytes], window: bytes, mode: GateMode) -> bool:
        with self._lock:
            if self._mode is not mode or not pattern.search(window):
                return False
            self._mode = None
            self._held = relay
        self.tripped.set()
        return True

    def _client_to_server(self, relay: _Relay) -> None:
        tail = b""
        while True:
            try:
                data = relay.client.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    relay.upstream.shutdown(socket.SHUT_WR)
                return
            window = tail + data
            if self._trip(relay, CREATE_JOB, window, GateMode.HOLD_CREATE_JOB):
                return  # nothing more reaches cupsd; release() closes both ends
            if self._trip(relay, SEND_DOCUMENT, window, GateMode.HOLD_SEND_DOCUMENT):
                return
            if self._trip(relay, SEND_DOCUMENT, window, GateMode.SWALLOW_SEND_DOCUMENT_REPLY):
                relay.is_swallowing = True
            try:
                relay.upstream.sendall(data)
            except OSError:
                return
            tail = window[-64:]

    def _server_to_client(self, relay: _Relay) -> None:
        while True:
            try:
                data = relay.upstream.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    relay.client.shutdown(socket.SHUT_WR)
                return
            if relay.is_swallowing:
                continue
            try:
                relay.client.sendall(data)
            except OSError:
                return
