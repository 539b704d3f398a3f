"""The trace viewer in a real browser: Debian's chromium driven by Selenium (chromium-driver), headless.

Runs a conversation through the viewer's own form, then checks rows, routing score bars and an
expanded prompt, and writes a screenshot (viewer.png in the test's tmp dir) for a person to look at."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
CHROMIUM = Path("/usr/bin/chromium")
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not CHROMIUM.exists() or not Path(DRIVER).exists():
    pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {DRIVER}); "
                "apt-get install -y chromium chromium-driver", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from rapo.server import create_app, serve_in_thread  # noqa: E402

TEAM = Path(__file__).resolve().parents[1] / "src" / "rapo" / "data" / "bench-team.yaml"
TOKEN = "viewer-token-0d4e"


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=DRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def send(driver, wait, text: str, critical: bool = False) -> None:
    rows = len(driver.find_elements(By.CSS_SELECTOR, "#rows .row"))
    box = driver.find_element(By.ID, "turn-text")
    box.clear()
    box.send_keys(text)
    check = driver.find_element(By.ID, "turn-critical")
    if check.is_selected() != critical:
        check.click()
    driver.find_element(By.ID, "send").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rows .row")) == rows + 1)


def test_viewer_shows_rows_scores_and_the_prompt(browser, tmp_path):
    app = create_app(TEAM, backend="sim", token=TOKEN)
    with serve_in_thread(app) as url:
        wait = WebDriverWait(browser, 15)
        browser.get(f"{url}/viewer#token={TOKEN}")
        wait.until(EC.text_to_be_present_in_element((By.ID, "team"), "bench-support"))
        assert TOKEN not in browser.current_url  # taken out of the address bar at once
        browser.find_element(By.ID, "new-conv").click()
        wait.until(EC.visibility_of_element_located((By.ID, "conversation")))

        send(browser, wait, "The refund limit for order A17 is 120 dollars.")
        send(browser, wait, "The shipping fee for order A17 is 15 dollars.")
        send(browser, wait, "What is the refund limit for order A17?", critical=True)
        send(browser, wait, "What is the shipping fee for order A17 plus the refund limit for order A17?")

        rows = browser.find_elements(By.CSS_SELECTOR, "#rows .row")
        assert [r.get_attribute("data-turn") for r in rows] == ["1", "2", "3", "4"]
        assert "ledger" in rows[0].find_element(By.CSS_SELECTOR, ".agent").text
        question = rows[2]
        agent = question.find_element(By.CSS_SELECTOR, ".agent").text
        assert agent in {"retriever", "calculator", "reasoner", "generalist"}
        bars = question.find_elements(By.CSS_SELECTOR, ".score-bar")
        assert len(bars) == 4 and all(b.size["width"] > 0 for b in bars)
        chosen = question.find_element(By.CSS_SELECTOR, ".score.chosen .name").text
        assert chosen == app.state.service.store.list()[0].records[2].routing.chosen
        assert "120 dollars" in question.find_element(By.CSS_SELECTOR, ".value").text
        chips = question.find_elements(By.CSS_SELECTOR, ".chip.named")
        assert any("A17" in c.text for c in chips)
        assert "agreement" in question.find_element(By.CSS_SELECTOR, ".consensus").text
        assert "tokens" in question.find_element(By.CSS_SELECTOR, ".stats").text

        prompt = question.find_element(By.CSS_SELECTOR, ".details")
        assert not prompt.is_displayed()
        question.find_element(By.CSS_SELECTOR, ".row-head").click()
        wait.until(lambda d: prompt.is_displayed())
        shown = prompt.find_element(By.CSS_SELECTOR, ".prompt").text
        assert "What is the refund limit for order A17?" in shown and "120 dollars" in shown
        assert "Answer:" in prompt.find_element(By.CSS_SELECTOR, ".reply").text

        html = browser.page_source
        assert TOKEN not in html
        shot = tmp_path / "viewer.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
