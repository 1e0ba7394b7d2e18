"""Putting the server in front of other machines, safely: an nginx front, tunnels.

    nginx.py      FrontSpec (frozen) -> the nginx site: Host rewrite, streaming, TLS, auth, upstream
    install.py    put the site in place, `nginx -t`, reload; find the fronts ollamactl installed
    tunnels.py    the seed's ngrok / cloudflared commands with the Host-header flags

The server keeps no authentication of its own (as Ollama): a front that authenticates is how a
non-loopback client should reach it.
"""
