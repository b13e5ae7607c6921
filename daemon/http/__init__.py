"""The HTTP transport over a Unix socket: server, connection protocol, wire types, peer check.
It imports no domain module: the API is handed to it as an ``App``."""
