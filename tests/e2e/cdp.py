"""Open a page in headless Chromium and watch it over the DevTools protocol:
console errors, uncaught exceptions, every network request, a screenshot."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websocket

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageVisit:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    evaluated: dict = field(default_factory=dict)

    @property
    def remote_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(LOCAL_SCHEMES)]


class _Session:
    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id, self.events = 0, []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self.ws.settimeout(0.2)
        while time.monotonic() < end:
            try:
                self.events.append(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                pass
        self.ws.settimeout(60)


def _port(profile: Path, proc: subprocess.Popen, timeout: float = 60) -> int:
    marker = profile / "DevToolsActivePort"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().splitlines()[0])
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        time.sleep(0.2)
    raise TimeoutError("chromium did not open its DevTools port")


def visit(page: Path, settle_s: float = 3.0, evaluate: dict[str, str] | None = None) -> PageVisit:
    """Load ``page`` (a local file), wait for its load event plus ``settle_s``, and
    report what it logged and requested; ``evaluate`` = {name: JS expression}."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        profile = Path(tmp)
        proc = subprocess.Popen(
            [
                chromium(),
                *FLAGS,
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "--window-size=1400,1000",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port = _port(profile, proc)
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30).read())
            tab = next(t for t in targets if t["type"] == "page")
            s = _Session(tab["webSocketDebuggerUrl"])
            for domain in ("Runtime", "Log", "Network", "Page"):
                s.call(f"{domain}.enable")
            s.call("Page.navigate", url=page.absolute().as_uri())
            end = time.monotonic() + 60
            while not any(e.get("method") == "Page.loadEventFired" for e in s.events) and time.monotonic() < end:
                s.pump(0.5)
            s.pump(settle_s)
            out = PageVisit()
            for name, expr in (evaluate or {}).items():
                out.evaluated[name] = s.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get(
                    "value"
                )
            out.screenshot = base64.b64decode(s.call("Page.captureScreenshot", format="png")["data"])
            for e in s.events:
                m, p = e.get("method"), e.get("params", {})
                if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    out.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
                elif m == "Runtime.exceptionThrown":
                    out.errors.append(p["exceptionDetails"].get("text", "exception"))
                elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                    out.errors.append(p["entry"].get("text", ""))
                elif m == "Network.requestWillBeSent":
                    out.requests.append(p["request"]["url"])
            s.ws.close()
            return out
        finally:  # the browser and its helper processes
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
