"""`workbench dashboard`: start the Streamlit app (headless, loopback by default)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workbench.errors import UsageError


def app_path() -> Path:
    """dashboards/app.py next to the workbench package (a source checkout or editable install)."""
    path = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dashboard app not found (run from a source checkout of the workbench)")
    return path


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(host: str) -> list[str]:
    """Host-header allow-list for Streamlit's `server.allowedHosts` (DNS-rebinding protection).

    On loopback only the loopback names are accepted; bound elsewhere, the bind address too.
    """
    names = ["localhost", "127.0.0.1", "::1"]
    if host not in LOOPBACK and host not in ("0.0.0.0", "::"):
        names.append(host)
    return names


def streamlit_command(host: str = "127.0.0.1", port: int = 8501, headless: bool = True,
                      max_upload_mb: int | None = None) -> list[str]:
    """The `streamlit run` command line: loopback bind, a small upload limit, XSRF and CORS
    protection on, and a Host-header allow-list (Streamlit 1.67 checks it on the WebSocket that
    carries every session, so a page reached through a rebound DNS name cannot drive the app)."""
    from workbench.app.verify import UPLOAD_MAX_MB
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path()), "--server.address", host,
           "--server.port", str(port), "--server.headless", "true" if headless else "false",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer",
           "--server.maxUploadSize", str(max_upload_mb or UPLOAD_MAX_MB),
           "--server.enableXsrfProtection", "true", "--server.enableCORS", "true"]
    for name in allowed_hosts(host):
        cmd += ["--server.allowedHosts", name]
    return cmd


def cmd_dashboard(args) -> int:
    import importlib.util
    if importlib.util.find_spec("streamlit") is None:
        raise UsageError("streamlit is not installed (pip install streamlit==1.67.0)")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: not a TCP port")
    env = dict(os.environ)
    if args.model:
        env["WORKBENCH_DASHBOARD_MODEL"] = args.model
    cmd = streamlit_command(args.host, args.port, headless=not args.browser)
    if args.host not in LOOPBACK:
        print(f"warning: serving on {args.host}: anyone who can reach it can run edits on this machine",
              file=sys.stderr)
    print(f"dashboard: http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130
