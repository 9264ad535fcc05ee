"""The coordinator page in a real headless Chromium against the live worker.

It loads, shows a booked assignment, and a decline click leads to a re-match that the
page then shows. Screenshots go to ``artifacts/`` (or ``VOLMATCH_ARTIFACTS``) for people
to look at; CI keeps that folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.live import ROOT, LiveSetup, Worker

if TYPE_CHECKING:
    from tests.integration.conftest import Services

pytestmark = pytest.mark.integration

COMMUNITY = "龙潭北里社区"
PHONE = "13800007777"
TOKENS = {COMMUNITY: "tok-longtan", "左安浦园社区": "tok-zuoan"}
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 90


def _artifacts() -> Path:
    folder = Path(os.environ.get("VOLMATCH_ARTIFACTS", ROOT / "artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _event(**fields: Any) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


def _electrician(vid: str, name: str, skills: str) -> bytes:
    return _event(
        type="volunteer.available",
        event_id=f"page-{vid}",
        occurred_at="2026-12-13T08:00:00+08:00",
        volunteer_id=vid,
        name=name,
        kind="party_member",
        skills=skills,
        community=COMMUNITY,
        availability=[{"start": "2026-12-16T19:00:00+08:00", "end": "2026-12-16T21:00:00+08:00"}],
        max_hours_per_week=3,
    )


VOLUNTEERS = [
    _electrician("v-el-1", "罗志刚", "电工师傅，老房子线路改造、灯不亮、跳闸都能修"),
    _electrician(
        "v-el-2", "Zhao Lei", "Licensed electrician: sockets, breakers, rewiring old flats"
    ),
]
NEED = _event(
    type="need.posted",
    event_id="page-n1",
    occurred_at="2026-12-14T10:00:00+08:00",
    need_id="n-page-1",
    community=COMMUNITY,
    text="家里插座没电了，空气开关一推就跳闸，老人一个人在家",
    window={"start": "2026-12-16T18:00:00+08:00", "end": "2026-12-16T22:00:00+08:00"},
    duration_minutes=60,
    contact={"phone": PHONE, "address": "3号楼2单元"},
)


@pytest.fixture
def setup(services: Services, tmp_path: Path, redis_client: object) -> LiveSetup:
    url = f"{services.redis_url.rstrip('/').rsplit('/', 1)[0]}/0"
    live = LiveSetup(services.kafka_bootstrap, url, tmp_path)
    live.create_topics()
    return live


@pytest.fixture
def browser() -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing and os.environ.get("VOLMATCH_SKIP_BROWSER") == "1":
        pytest.skip(f"VOLMATCH_SKIP_BROWSER=1 and {missing} not installed")
    assert not missing, f"{missing} not installed: scripts/bootstrap.sh installs Debian's chromium"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="volmatch-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        # This machine's network is closed: without these, Chromium keeps dialling out.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rows(driver: Any) -> dict[str, str]:
    """Volunteer id -> status of the assignments the page shows now (read in one script:
    the page redraws its tables on every poll)."""
    pairs = driver.execute_script(
        "return Array.from(document.querySelectorAll('#assignments tr[data-assignment-id]'))"
        ".map(r => [r.dataset.volunteerId, r.dataset.status]);"
    )
    return {str(v): str(s) for v, s in pairs}


def _click(driver: Any, css: str) -> None:
    """A real WebDriver click; the element is found again if a redraw replaced it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(20):
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css} kept being redrawn before it could be clicked")


def _wait(driver: Any, worker: Worker, what: str, condition: Callable[[Any], Any]) -> None:
    """Wait for ``condition``; on timeout keep a screenshot and say what the page showed."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, WAIT_S, poll_frequency=0.5).until(condition)
    except TimeoutException:
        driver.save_screenshot(str(_artifacts() / "coordinator-failure.png"))
        shown = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(
            f"page never showed {what}:\n{shown[:3000]}\n--- worker log\n{worker.log()[-3000:]}"
        ) from None


def test_decline_on_the_page_leads_to_a_rematch(setup: LiveSetup, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    port = _free_port()
    env = {"VOLMATCH_COORDINATOR__TOKENS": json.dumps(TOKENS, ensure_ascii=False)}
    worker = Worker(setup, ops_port=port, extra_env=env)
    base = f"http://127.0.0.1:{port}/coordinator"
    artifacts = _artifacts()
    try:
        worker.wait_ready()
        setup.produce(VOLUNTEERS)
        setup.wait_caught_up()
        setup.produce([NEED])
        browser.get(f"{base}#token={TOKENS[COMMUNITY]}")
        _wait(browser, worker, "a booking", lambda d: "proposed" in _rows(d).values())
        assert "#token" not in browser.current_url  # the token leaves the address bar
        [(first, _)] = _rows(browser).items()
        browser.save_screenshot(str(artifacts / "coordinator-booked.png"))

        _click(browser, f'tr[data-volunteer-id="{first}"] button[data-action="decline"]')
        _wait(
            browser,
            worker,
            "the decline and a re-match",
            lambda d: _rows(d).get(first) == "declined" and len(_rows(d)) == 2,
        )
        rows = _rows(browser)
        [second] = [v for v in rows if v != first]
        assert rows[second] == "proposed"
        browser.save_screenshot(str(artifacts / "coordinator-rematched.png"))

        # Another community's coordinator sees neither the booking nor the resident.
        browser.execute_script("sessionStorage.clear()")
        browser.get("about:blank")
        browser.get(f"{base}#token={TOKENS['左安浦园社区']}")
        _wait(
            browser,
            worker,
            "the other community's board",
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"),
        )
        assert _rows(browser) == {}
        assert PHONE not in browser.page_source
        assert "罗志刚" not in browser.page_source
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert PHONE not in worker.log()
    assert all(PHONE.encode() not in raw for raw in setup.outputs())
