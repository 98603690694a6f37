#!/usr/bin/env python3
"""How long a blocked BLPOP takes to answer after the push that feeds it.

    scripts/bench-blocking.py PORT [ROUNDS]

One connection sends `BLPOP key 0` and waits; once the server reports it
blocked (INFO blocked_clients; a server that does not report it is given
50 ms), another connection sends `RPUSH key x`;
the figure is the time from sending the RPUSH to reading the BLPOP's
answer. Prints the median, p90 and max in ms over ROUNDS (default 200),
and the RPUSH round trip alone for scale. Standard library only (raw
RESP over sockets), so it runs against a Chordal node's `--resp` port
and a real redis-server alike.
"""
import socket
import statistics
import sys
import time


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def read_reply(s):
    """Reads one whole reply (enough RESP2 for these commands)."""
    buf = b""
    def line():
        nonlocal buf
        while b"\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        head, buf = buf.split(b"\r\n", 1)
        return head
    def value():
        nonlocal buf
        head = line()
        kind, rest = head[:1], head[1:]
        if kind in (b"+", b"-", b":"):
            return rest
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(buf) < n + 2:
                buf += s.recv(65536)
            data, buf = buf[:n], buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [value() for _ in range(n)]
        raise ValueError(head)
    return value()


def blocked(s):
    s.sendall(command("INFO"))
    info = read_reply(s).decode()
    for l in info.splitlines():
        if l.startswith("blocked_clients:"):
            return int(l.split(":")[1])
    return None


def main():
    port = int(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    waiter, pusher = connect(port), connect(port)
    key = "bench:blocking:%d" % time.time_ns()
    wake, push = [], []
    for _ in range(rounds):
        waiter.sendall(command("BLPOP", key, "0"))
        deadline = time.time() + 5
        while True:
            n = blocked(pusher)
            if n is None:
                # A server that does not say: give the BLPOP time to block.
                time.sleep(0.05)
                break
            if n > 0:
                break
            if time.time() > deadline:
                sys.exit("the BLPOP never blocked")
            time.sleep(0.001)
        t0 = time.perf_counter()
        pusher.sendall(command("RPUSH", key, "x"))
        read_reply(pusher)
        t1 = time.perf_counter()
        read_reply(waiter)
        t2 = time.perf_counter()
        wake.append((t2 - t0) * 1000)
        push.append((t1 - t0) * 1000)
    q = lambda v, p: sorted(v)[int(p * (len(v) - 1))]
    print("push->wake ms: median %.2f p90 %.2f max %.2f | RPUSH alone: median %.2f (%d rounds)"
          % (statistics.median(wake), q(wake, 0.9), max(wake), statistics.median(push), rounds))


if __name__ == "__main__":
    main()
