"""A TCP proxy the fault tests can cut: a broker or database outage for one process only.

Cutting it refuses new connections and resets the open ones, as a network failure would; the
machine's RabbitMQ and PostgreSQL are never touched.
"""

import select
import socket
import threading


class Proxy:
    """Forwards 127.0.0.1:<port> to `target`; `cut()` and `restore()` the link."""

    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._stopping = threading.Event()
        self._pairs = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._accept, name="proxy-accept")]
        self._threads[0].start()

    def url(self, scheme, rest):
        """The URL of the target through the proxy: url("amqp://guest:guest", "/vhost")."""
        return f"{scheme}@127.0.0.1:{self.port}{rest}"

    def cut(self):
        """Refuse new connections and reset the open ones."""
        self._up.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def restore(self):
        self._up.set()

    def close(self):
        self._stopping.set()
        self.cut()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self):
        self._listener.settimeout(0.1)
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if not self._up.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            thread = threading.Thread(target=self._pump, args=(pair,), name="proxy-pump")
            self._threads.append(thread)
            thread.start()

    def _pump(self, pair):
        client, upstream = pair
        peer = {client: upstream, upstream: client}
        try:
            while not self._stopping.is_set():
                readable, _, _ = select.select(list(peer), [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peer[sock].sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for sock in pair:
                _reset(sock)


def _reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    except OSError:
        pass
