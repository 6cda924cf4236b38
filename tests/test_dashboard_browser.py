"""Real-browser test of the dashboard: `streamlit run` on loopback, driven by headless Chromium
(Debian `chromium` + `chromium-driver`, through selenium) through locate -> edit; the results must
appear on the page, and a screenshot is saved as a test artifact (WORKBENCH_TEST_ARTIFACTS, default
`artifacts/` at the repository root, git-ignored; also under pytest's tmp dir).

Skips with a message only when Chromium or its driver is not installed (`make browser` installs
them; `make test` does so too where apt is usable).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)

pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="Chromium / chromedriver not installed: run `make browser` "
                                       "(apt-get install chromium chromium-driver)")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (requirements.lock)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout} s")


@pytest.fixture
def server(tmp_path):
    from workbench.cli.dashboard import streamlit_command
    port = _free_port()
    log = open(tmp_path / "streamlit.log", "w")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(streamlit_command("127.0.0.1", port), stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,2000"):
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)   # empty user-data dir
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_text(driver, text: str, timeout: float) -> None:
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: text in d.find_element("tag name", "body").text)


def _idle(driver, timeout: float = 600) -> None:
    """Wait until the app is not running a script (no 'Running…' status widget)."""
    from selenium.webdriver.support.ui import WebDriverWait
    time.sleep(1.0)
    WebDriverWait(driver, timeout, poll_frequency=0.5).until(
        lambda d: not d.find_elements("css selector", "[data-testid='stStatusWidget']"))


def _click(driver, xpath: str, timeout: float = 120) -> None:
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    el = WebDriverWait(driver, timeout).until(EC.element_to_be_clickable(("xpath", xpath)))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
    el.click()


def _nav(driver, page: str) -> None:
    _click(driver, f"//*[@data-testid='stSidebarNav']//a[.//span[normalize-space()='{page}']]")
    _idle(driver)


def _artifact_dir(tmp_path) -> Path:
    out = Path(os.environ.get("WORKBENCH_TEST_ARTIFACTS", ROOT / "artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_locate_then_edit_in_a_real_browser(server, browser, tmp_path):
    d = browser
    d.get(server)
    _wait_text(d, "Concept Workbench", 120)
    _idle(d)
    _nav(d, "Locate")
    _wait_text(d, "Run location", 300)                     # model loads on the first page that needs it
    _idle(d)
    for label in ("concept vectors", "causal tracing"):  # keep the browser run fast: directions only
        _click(d, f"//label[.//p[normalize-space()='{label}']]")
        _idle(d)
    _click(d, "//button[.//p[normalize-space()='Run location']]")
    _wait_text(d, "LocalizationReport for 'Japan'", 600)
    _idle(d)
    body = d.find_element("tag name", "body").text
    assert "Traceback" not in body
    _click(d, "//*[@role='tab'][contains(normalize-space(.), 'Residual directions')]")
    _wait_text(d, "probe accuracy", 60)
    located = tmp_path / "dashboard_locate.png"
    assert d.save_screenshot(str(located))
    shutil.copy(located, _artifact_dir(tmp_path) / located.name)

    _nav(d, "Edit")
    _wait_text(d, "Fit edit", 120)
    _click(d, "//button[.//p[normalize-space()='Fit edit']]")
    _wait_text(d, "edit fitted:", 900)
    _idle(d)
    _wait_text(d, "edited", 120)
    codes = [c.text for c in d.find_elements("css selector", "[data-testid='stCode']")]
    assert len(codes) >= 2, codes
    base, edited = codes[0], codes[1]
    assert "Tokyo" in base and "Tokyo" not in edited, (base, edited)
    body = d.find_element("tag name", "body").text
    assert "params changed" in body and "Traceback" not in body

    shot = tmp_path / "dashboard_locate_edit.png"
    assert d.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    shutil.copy(shot, _artifact_dir(tmp_path) / shot.name)
