"""``ferrocornc``: talk to a running ferrocorn (or Gunicorn 27) master through
its control socket, with Gunicorn's ``gunicornc`` verbs, plus ``top``.

- ``client``: the protocol (a 4-byte big-endian length, then JSON) and a
  client that keeps one connection;
- ``formats``: the human-readable answers;
- ``top``: the live view of the workers;
- ``cli``: the command line.
"""
