"""What bench/serve_bench.py and bench/serve_load.py share: starting `clip serve` on a free
loopback port and waiting until it is ready."""
import http.client
import re
import subprocess
import threading
import time


def start_server(cmd):
    """Runs cmd (a `clip serve ... --port 0` command line); returns (process, port) once
    GET /ready answers 200. The server's stderr is read on a thread so that it never blocks."""
    srv = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    port = None
    for line in srv.stderr:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        raise SystemExit(f"clip serve exited before listening (exit {srv.wait()})")
    threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port)
            c.request("GET", "/ready")
            if c.getresponse().status == 200:
                return srv, port
        except OSError:
            pass
        time.sleep(0.05)
