"""The web page at ``/`` in a real browser: Debian's headless Chromium driven by selenium.

It uploads a real photo through the page's file input and checks the stylised image the
page shows, pixel by pixel, against the image endpoint's answer for the same photo; then
runs the webcam mode on Chromium's fake camera and checks that several stylised frames
arrive and are not blank. Chromium and chromedriver come from Debian (``scripts/setup.sh
dev`` installs them as root); where they are missing the test skips, except under CI.
Set ``ROBUST_STYLE_SCREENSHOT=docs/img/web_page.png`` to refresh the documentation's
screenshot.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import ci_enforces_shared
from pixels import assert_pixels_close
from server_fixtures import decode, encode, photo, start_server

from robust_style.cli.cmd_serve import default_models_dir
from robust_style.pixels import psnr
from robust_style.server.app import StyleServer

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _browser_or_reason() -> tuple[str, str] | str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    return ("Debian's chromium and chromium-driver are not installed (scripts/setup.sh dev "
            "installs them as root: apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    found = _browser_or_reason()
    if isinstance(found, str):
        if ci_enforces_shared():
            pytest.fail(f"CI is set but the browser test cannot run: {found}")
        pytest.skip(found)
    chromium, chromedriver = found
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream", "--window-size=1280,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    driver = webdriver.Chrome(options=opts,
                              service=webdriver.ChromeService(executable_path=chromedriver))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page_server(model_store: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[StyleServer]:
    """The bundled style (first card, what the screenshot shows) and the tiny one."""
    models = tmp_path_factory.mktemp("page-models")
    shutil.copy(default_models_dir() / "the-scream.onnx", models / "the-scream.onnx")
    shutil.copy(model_store / "tiny.onnx", models / "tiny.onnx")
    s = start_server(models, http_port=0)
    yield s
    s.stop(0)


_PIXELS_OF = """
const img = document.getElementById(arguments[0]);
const c = document.createElement("canvas");
c.width = img.naturalWidth; c.height = img.naturalHeight;
c.getContext("2d").drawImage(img, 0, 0);
return c.toDataURL("image/png");
"""


def _shown(driver: webdriver.Chrome, element_id: str) -> np.ndarray:
    """The pixels the page shows in ``<img id=element_id>`` (drawn to a canvas)."""
    url = driver.execute_script(_PIXELS_OF, element_id)
    return decode(base64.b64decode(url.split(",", 1)[1]))


def _frames(driver: webdriver.Chrome) -> int:
    """Stylised webcam frames shown so far (textContent: the view may still be hidden)."""
    return int(driver.find_element(By.ID, "frames").get_attribute("textContent") or 0)


def test_upload_shows_the_servers_stylised_pixels_and_webcam_streams(
        browser: webdriver.Chrome, page_server: StyleServer, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{page_server.http_port}"
    content = photo("chelsea", 256)
    file = tmp_path / "chelsea.png"
    file.write_bytes(encode(content))
    browser.get(base + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card img[src]")) == 2)
    cards = browser.find_elements(By.CSS_SELECTOR, ".card")
    assert [c.get_attribute("data-style") for c in cards] == ["the-scream", "tiny"]
    assert "selected" in cards[0].get_attribute("class")

    browser.find_element(By.ID, "file").send_keys(str(file))
    wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("data-done") == "1"
               and d.execute_script("const i = document.getElementById('result');"
                                    "return i.complete && i.naturalWidth > 0;"))
    shown = _shown(browser, "result")
    with httpx.Client(base_url=base, timeout=60) as h:
        r = h.post("/v1/styles/the-scream/stylize", content=file.read_bytes(),
                   params={"strength": "1", "preserve_color": "false", "max_side": "1024",
                           "format": "png", "quality": "90"})
    want = decode(r.content)
    assert_pixels_close(shown, want, "the page's result vs the image endpoint")
    assert psnr(shown, content) < 30, "the shown image is stylised, not the photo"
    link = browser.find_element(By.ID, "download")
    assert link.get_attribute("href").startswith("blob:")
    assert link.get_attribute("download") == "chelsea_the-scream.png"
    screenshot = tmp_path / "web_page.png"
    browser.save_screenshot(str(screenshot))
    if target := os.environ.get("ROBUST_STYLE_SCREENSHOT"):
        shutil.copy(screenshot, target)

    # webcam mode on Chromium's fake camera, with the fast tiny style
    browser.find_element(By.CSS_SELECTOR, '.card[data-style="tiny"]').click()
    browser.find_element(By.ID, "webcam").click()
    wait.until(lambda d: _frames(d) >= 2)
    first = _shown(browser, "webcam-out")
    start = _frames(browser)
    wait.until(lambda d: _frames(d) >= start + 3)
    frame = _shown(browser, "webcam-out")
    assert frame.shape[2] == 3 and min(frame.shape[:2]) >= 100
    assert frame.std() > 5 and first.std() > 5, "stylised frames are not blank"
    assert float(browser.find_element(By.ID, "fps").get_attribute("textContent")) > 0
    browser.find_element(By.ID, "webcam").click()  # stop
    time.sleep(0.2)
    served = page_server.plane.served["image-http"]
    assert served >= 1 + 1 + start + 3  # the upload, its check, and the webcam frames
