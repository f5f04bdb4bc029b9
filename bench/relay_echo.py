#!/usr/bin/env python3
"""A byte echo on one loopback port, a thread per connection: the "runtime" of the relay floor (bench/compare.py warm,
bench/KestrelFloor --relay). One process per port, as each Lamina environment is a process of its own.

    python3 bench/relay_echo.py PORT
"""
import socket
import sys
import threading


def serve(connection: socket.socket) -> None:
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := connection.recv(65536):
        connection.sendall(data)


def main() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen()
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=serve, args=(connection,), daemon=True).start()


if __name__ == "__main__":
    main()
