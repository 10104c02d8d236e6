"""The web page at / in a real headless Chromium (Debian's chromium and chromium-driver, driven by selenium):
choose a photo, run a model, see the result appear beside the original."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serving_support import encode, noise, solid

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra (make test installs it)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (make test installs them when run as root)")


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    return {"http_port": 0}


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def open_page(browser: webdriver.Chrome, server, model: str) -> None:
    browser.get(f"http://127.0.0.1:{server.http_port}/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda b: not b.find_element(By.ID, "model").get_property("disabled"))
    Select(browser.find_element(By.ID, "model")).select_by_value(model)


def result_pixel(browser: webdriver.Chrome) -> list[int]:
    """The top-left pixel of the result image, read back through a canvas."""
    return browser.execute_script("""
        const img = document.getElementById('result');
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const context = canvas.getContext('2d');
        context.drawImage(img, 0, 0);
        return Array.from(context.getImageData(0, 0, 1, 1).data);""")


def test_stylize_a_photo(browser: webdriver.Chrome, server, tmp_path: Path) -> None:
    photo = noise(24, 32, seed=5)
    path = tmp_path / "photo.png"
    path.write_bytes(encode(photo))
    open_page(browser, server, "invert")
    browser.find_element(By.ID, "file").send_keys(str(path))
    Select(browser.find_element(By.ID, "format")).select_by_value("png")
    browser.find_element(By.ID, "run").click()
    wait = WebDriverWait(browser, 30)
    wait.until(lambda b: b.execute_script("const i = document.getElementById('result');"
                                          "return i.complete && i.naturalWidth > 0;"))
    assert browser.execute_script("return document.getElementById('original').naturalWidth") == 32
    assert browser.execute_script("return document.getElementById('result').naturalHeight") == 24
    assert result_pixel(browser)[:3] == [255 - int(v) for v in photo[0, 0]]  # the inverted photo
    download = browser.find_element(By.ID, "download")
    assert download.get_attribute("href").startswith("blob:") and download.get_attribute("download") == "invert.png"
    assert "Done" in browser.find_element(By.ID, "status").text


def test_classify_shows_labels(browser: webdriver.Chrome, server, tmp_path: Path) -> None:
    path = tmp_path / "blue.png"
    path.write_bytes(encode(solid((0, 0, 255), 20, 20)))
    open_page(browser, server, "colours")
    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#labels li"))
    first = browser.find_elements(By.CSS_SELECTOR, "#labels li")[0]
    assert first.get_attribute("data-label") == "blue"


def test_generate_a_grid_and_see_an_error(browser: webdriver.Chrome, server) -> None:
    open_page(browser, server, "dreams")
    for field, value in (("count", "4"), ("grid", "2"), ("seed", "3")):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 30).until(lambda b: b.execute_script(
        "const i = document.getElementById('result'); return i.complete && i.naturalWidth > 0;"))
    assert browser.execute_script("return document.getElementById('result').naturalWidth") == 2 * 4 + 3 * 2
    assert browser.find_element(By.ID, "download").get_attribute("download") == "dreams-3.png"
    # The server's one-sentence error reaches the page.
    element = browser.find_element(By.ID, "count")
    element.clear()
    element.send_keys("1000")
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 30).until(lambda b: "at most" in b.find_element(By.ID, "status").text)
    assert "error" in browser.find_element(By.ID, "status").get_attribute("class")
    assert np.asarray(result_pixel(browser)).size == 4  # the last good result is still shown
