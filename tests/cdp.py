"""A minimal Chrome DevTools Protocol client for the browser tests: start headless Chromium,
open a page, press real keys (Input.dispatchKeyEvent), evaluate JavaScript, reload."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# DOM key -> (code, Windows virtual key code) for the non-character keys the tests press
SPECIAL = {"ArrowRight": ("ArrowRight", 39), "ArrowLeft": ("ArrowLeft", 37),
           "Backspace": ("Backspace", 8)}


def need_chromium() -> str:
    """Chromium's path; skip (fail under CI's PROMIX_REQUIRE_BROWSER=1) without it."""
    if CHROMIUM is None:
        if os.environ.get("PROMIX_REQUIRE_BROWSER") == "1":
            pytest.fail("PROMIX_REQUIRE_BROWSER=1 but chromium is not installed: "
                        "apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium to run this test)")
    return CHROMIUM


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, url: str, profile_dir, downloads_dir=None):
        try:
            import websocket
        except ImportError:
            if os.environ.get("PROMIX_REQUIRE_BROWSER") == "1":
                pytest.fail("PROMIX_REQUIRE_BROWSER=1 but websocket-client is not installed: "
                            "pip install -e '.[test]'")
            pytest.skip("pip install websocket-client to drive Chromium in this test")
        self.proc = subprocess.Popen(
            [need_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile_dir}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = self._port()
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                                    timeout=30).read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)
        self.next_id = 0
        if downloads_dir is not None:
            self.call("Browser.setDownloadBehavior", behavior="allow",
                      downloadPath=str(downloads_dir))
        self.call("Page.enable")
        self.goto(url)

    def _port(self) -> int:
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                return int(m.group(1))
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError("chromium did not start its DevTools endpoint")

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self._load("Page.navigate", url=url)

    def reload(self) -> None:
        self._load("Page.reload", ignoreCache=True)

    def _load(self, method: str, **params) -> None:
        """Start a navigation and wait for the new document: the old one is marked first, so
        its own data-ready cannot be taken for the new page's."""
        self.evaluate("window.__promixOld = true")
        self.call(method, **params)
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        ready = ("!window.__promixOld && document.body && "
                 "document.body.getAttribute('data-ready')")
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.evaluate(ready) == "1":
                    return
            except RuntimeError:  # the context went away mid-navigation: ask the new one
                pass
            time.sleep(0.1)
        raise RuntimeError("the page did not finish loading (no data-ready on <body>)")

    def press(self, key: str) -> None:
        """A real key press: keyDown (with its text for printable keys), then keyUp."""
        if key in SPECIAL:
            code, vk = SPECIAL[key]
        else:
            code, vk = (f"Key{key.upper()}" if key.isalpha() else f"Digit{key}"), ord(key.upper())
        down = {"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": vk}
        if key not in SPECIAL:
            down["text"] = key
        self.call("Input.dispatchKeyEvent", **down)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code,
                  windowsVirtualKeyCode=vk)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=30)
