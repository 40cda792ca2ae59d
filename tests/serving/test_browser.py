"""The web page in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven
by Selenium against the real server (uvicorn on a free loopback port). Two images picked through the
page's file input must come back as two scores equal to the model's; sorting and the CSV download are
checked too. Nothing is downloaded: the driver path is given explicitly, so Selenium Manager never runs.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)", allow_module_level=True)
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from perceptiq.inference import load_model  # noqa: E402
from perceptiq.serving import create_app  # noqa: E402

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1100,800",
)
WAIT_S = 30


def write_image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:120, 0:160].astype(np.float32)
    pixels = np.stack([xx * 1.5, yy * 2, 128 + 100 * np.sin(xx / (3 + seed))], axis=-1)
    pixels += rng.normal(0, 25, pixels.shape)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def assessor():
    return load_model(backbone="test-tiny", weights="random", precision="fp32")


@contextlib.contextmanager
def running_server(app):
    """The real service on a loopback port chosen by the OS (the socket is bound before the server
    starts, so no other process can take the port in between); yields the page's URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def server_url(assessor):
    with running_server(create_app(assessor)) as url:
        yield url


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def expected_score(assessor, path: Path) -> float:
    return float(assessor.predict(assessor.preprocess(path).unsqueeze(0)).scores[0])


def shown_names(driver) -> list[str]:
    return [item.get_attribute("data-name") for item in driver.find_elements(By.CSS_SELECTOR, "#results .result")]


def test_page_scores_two_uploaded_images(browser, server_url, assessor, tmp_path):
    paths = [tmp_path / "first.png", tmp_path / "second.png"]
    for seed, path in enumerate(paths):
        write_image(path, seed)
    expected = {p.name: expected_score(assessor, p) for p in paths}

    browser.get(server_url)
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda d: "test-tiny" in d.find_element(By.ID, "model-info").text)
    assert not browser.find_element(By.ID, "token-field").is_displayed()  # the server has no token
    browser.find_element(By.ID, "file-input").send_keys("\n".join(str(p) for p in paths))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result.done")) == 2)

    shown = {item.get_attribute("data-name"): item.find_element(By.CSS_SELECTOR, ".score").text
             for item in browser.find_elements(By.CSS_SELECTOR, "#results .result")}
    assert shown == {name: f"{score:.4f}" for name, score in expected.items()}
    bar_widths = [bar.value_of_css_property("width") for bar in
                  browser.find_elements(By.CSS_SELECTOR, "#results .result .bar > span")]
    assert all(width != "0px" for width in bar_widths)
    browser.save_screenshot(str(tmp_path / "page.png"))

    Select(browser.find_element(By.ID, "sort")).select_by_value("score-asc")
    assert shown_names(browser) == sorted(expected, key=expected.get)
    Select(browser.find_element(By.ID, "sort")).select_by_value("score-desc")
    assert shown_names(browser) == sorted(expected, key=expected.get, reverse=True)

    browser.find_element(By.ID, "download").click()
    csv_path = browser.downloads / "perceptiq-scores.csv"
    WebDriverWait(browser, WAIT_S).until(lambda _d: csv_path.exists())
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [r["filename"] for r in rows] == sorted(expected, key=expected.get, reverse=True)
    for row in rows:
        assert float(row["score"]) == pytest.approx(expected[row["filename"]], abs=1e-5)


def test_page_reports_a_bad_file_and_still_scores_the_good_one(browser, server_url, tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "broken.png"
    write_image(good, 5)
    bad.write_bytes(b"this is not a png")
    browser.get(server_url)
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda d: "test-tiny" in d.find_element(By.ID, "model-info").text)
    browser.find_element(By.ID, "file-input").send_keys(f"{good}\n{bad}")
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#results .result.pending")
               and len(d.find_elements(By.CSS_SELECTOR, "#results .result")) == 2)
    failed = browser.find_element(By.CSS_SELECTOR, "#results .result.failed")
    assert failed.get_attribute("data-name") == "broken.png"
    assert "not an image" in failed.find_element(By.CSS_SELECTOR, ".error").text
    done = browser.find_element(By.CSS_SELECTOR, "#results .result.done")
    assert done.get_attribute("data-name") == "good.png"


def test_page_takes_each_files_own_result_even_when_names_repeat(browser, server_url, tmp_path):
    """The service answers per file in upload order; the page matches results by position, so a broken
    file and a good one that share a name each get their own result."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    good, bad = tmp_path / "a" / "photo.png", tmp_path / "b" / "photo.png"
    write_image(good, 6)
    bad.write_bytes(b"not a png either")
    browser.get(server_url)
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda d: "test-tiny" in d.find_element(By.ID, "model-info").text)
    browser.find_element(By.ID, "file-input").send_keys(f"{good}\n{bad}")
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#results .result.pending")
               and len(d.find_elements(By.CSS_SELECTOR, "#results .result")) == 2)
    states = [e.get_attribute("class").split()[-1] for e in browser.find_elements(By.CSS_SELECTOR, "#results .result")]
    assert states == ["done", "failed"]
    assert "1 scored, 1 failed" in browser.find_element(By.ID, "status").text


def test_page_asks_for_the_token_when_the_server_has_one(browser, assessor, tmp_path):
    image = tmp_path / "photo.png"
    write_image(image, 3)
    with running_server(create_app(assessor, token="page-token")) as url:
        browser.get(url)
        wait = WebDriverWait(browser, WAIT_S)
        wait.until(lambda d: d.find_element(By.ID, "token-field").is_displayed())
        assert "token" in browser.find_element(By.ID, "model-info").text
        token = browser.find_element(By.ID, "token")
        token.send_keys("page-token")
        browser.find_element(By.ID, "task").click()  # leaving the field commits it ("change")
        wait.until(lambda d: "test-tiny" in d.find_element(By.ID, "model-info").text)
        browser.find_element(By.ID, "file-input").send_keys(str(image))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .result.done"))
        shown = browser.find_element(By.CSS_SELECTOR, "#results .result.done .score").text
    assert shown == f"{expected_score(assessor, image):.4f}"


def test_page_draws_the_quality_map_of_a_crops_view(browser, server_url, assessor, tmp_path):
    """View crops:16 picked on the page: the score is the 16 crops' mean, and the overlay on the picture
    is red at the centre of the worst crop and green at the centre of the best (as `score --map` draws).
    900 x 900 pixels: the 4 x 4 grid of 224 crops does not overlap, so each centre has one crop's colour."""
    path = tmp_path / "square.png"
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:900, 0:900].astype(np.float32)
    pixels = np.stack([xx / 4, yy / 4, 128 + 100 * np.sin(xx / 9) * np.cos(yy / 13)], axis=-1)
    pixels[:, 450:] += rng.normal(0, 60, pixels[:, 450:].shape)     # one half noisy: crops differ
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    (expected,) = assessor.score(path, view="crops:16")

    browser.get(server_url)
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda d: "test-tiny" in d.find_element(By.ID, "model-info").text)
    assert browser.find_element(By.CSS_SELECTOR, "#view option[value='']").text == "model default (resize)"
    Select(browser.find_element(By.ID, "view")).select_by_value("crops:16")
    browser.find_element(By.ID, "file-input").send_keys(str(path))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .result.done canvas[data-drawn='1']"))
    item = browser.find_element(By.CSS_SELECTOR, "#results .result.done")
    assert item.find_element(By.CSS_SELECTOR, ".score").text == f"{expected.score:.4f}"
    canvas = item.find_element(By.CSS_SELECTOR, "canvas")
    assert canvas.get_attribute("data-crops") == "16"
    side = int(canvas.get_attribute("width"))

    def colour_at(box):
        x, y = int((box[0] + box[2]) / 2 * side), int((box[1] + box[3]) / 2 * side)
        return browser.execute_script(
            "return Array.from(arguments[0].getContext('2d').getImageData(arguments[1], arguments[2], 1, 1).data);",
            canvas, x, y)

    red = colour_at(expected.boxes[int(np.argmin(expected.crop_scores))])
    green = colour_at(expected.boxes[int(np.argmax(expected.crop_scores))])
    assert red[0] - red[1] > 40 and green[1] - green[0] > 40, (red, green)
    assert "16 crops" in item.find_element(By.CSS_SELECTOR, "figcaption").text
