#!/usr/bin/env python3
"""Sends exactly N keep-alive `GET /` requests over 8 connections to 127.0.0.1:PORT and waits
for every answer. Used to count the instructions a server spends per request under callgrind
(run it twice, with N and 11 N, and divide the difference): see BENCHMARKS.md.

usage: fixed-requests.py PORT N
"""
import selectors
import socket
import sys

port, n = int(sys.argv[1]), int(sys.argv[2])
request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
sel = selectors.DefaultSelector()
left, done = n, 0
for _ in range(8):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, bytearray())
    if left > 0:
        s.send(request)
        left -= 1
while done < n:
    for key, _ in sel.select():
        s, buf = key.fileobj, key.data
        data = s.recv(65536)
        if not data:
            sys.exit("the server closed a connection")
        buf += data
        while b"\r\n\r\n" in buf:
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            if len(rest) < length:
                break
            del buf[: len(head) + 4 + length]
            done += 1
            if left > 0:
                s.send(request)
                left -= 1
print(done)
