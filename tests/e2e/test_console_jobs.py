"""The console's Jobs card in real headless Chromium against the real server: two keys each submit a job over
plain HTTP, and the admin console lists both with their key names, filters by key, and shows a job's details.

The page's states that the test waits for: ``#jobs[data-jobs]`` is "loading", "ready" or "error";
``#job-details[data-state]`` is "loading", "ready" or "error", with ``data-job`` the id it shows. Each table row
is ``tr[data-job][data-key][data-status]``; the details' values are ``dd[data-field]``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.audio import espeak

# The playground's module fixtures (browser, web_server, shots and what they use), shared by name here.
from tests.e2e.test_playground import browser as browser
from tests.e2e.test_playground import downloads as downloads
from tests.e2e.test_playground import enter_key, open_page, page_errors, screenshot, wait
from tests.e2e.test_playground import live_wav as live_wav
from tests.e2e.test_playground import media as media
from tests.e2e.test_playground import shots as shots
from tests.e2e.test_playground import web_server as web_server
from tests.server import RunningServer

pytestmark = pytest.mark.e2e

OTHER_KEY = "jobs-bot"
SAID = "Please send the quarterly report before Friday."
FINAL = {"succeeded", "failed", "cancelled"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(server: RunningServer, key: str, audio: Path, response_format: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{server.v1}/audio/transcriptions/jobs",
        headers=bearer(key),
        files={"file": (audio.name, audio.read_bytes(), "audio/wav")},
        data={"model": "whisper-1", "response_format": response_format},
        timeout=60,
    )
    assert answer.status_code == 202, (answer.status_code, answer.text)
    job: dict[str, Any] = answer.json()
    assert job["object"] == "audio.job" and job["status"] in {"queued", "running", "succeeded"}, job
    return job


def finished(server: RunningServer, key: str, job_id: str, timeout: float = 240) -> dict[str, Any]:
    """The job once it has stopped (polled as its owner would)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(f"{server.v1}/audio/jobs/{job_id}", headers=bearer(key), timeout=30)
        assert answer.status_code == 200, (answer.status_code, answer.text)
        job: dict[str, Any] = answer.json()
        if job["status"] in FINAL:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s:\n{server.log()[-4000:]}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def two_jobs(web_server: RunningServer, media: Path) -> dict[str, dict[str, Any]]:
    """One finished job for the configured key "test" and one for a key made through /admin/keys, by key name."""
    created = httpx.post(
        f"{web_server.base_url}/admin/keys",
        headers=bearer(web_server.admin_key),
        json={"name": OTHER_KEY},
        timeout=30,
    )
    assert created.status_code == 201, (created.status_code, created.text)
    secrets = {"test": web_server.api_key, OTHER_KEY: created.json()["secret"]}
    audio = espeak(media / "job.wav", SAID)
    submitted = {
        "test": submit(web_server, secrets["test"], audio, "json"),
        OTHER_KEY: submit(web_server, secrets[OTHER_KEY], audio, "srt"),
    }
    jobs = {name: finished(web_server, secrets[name], job["id"]) for name, job in submitted.items()}
    for name, job in jobs.items():
        assert job["status"] == "succeeded", (name, job, web_server.log()[-4000:])
    return jobs


def job_rows(driver: Chrome) -> list[dict[str, Any]]:
    """The jobs table's rows, read in one script (the table may be redrawn between two reads)."""
    rows: list[dict[str, Any]] = driver.execute_script(
        """return [...document.querySelectorAll('#jobs tbody tr[data-job]')].map((row) => ({
             id: row.dataset.job, key: row.dataset.key, status: row.dataset.status,
             cells: [...row.cells].map((cell) => cell.textContent),
           }));"""
    )
    return rows


def table_ready(driver: Chrome) -> bool:
    return driver.find_element(By.ID, "jobs").get_attribute("data-jobs") == "ready"


# --- plain HTTP ----------------------------------------------------------------------------------------------------


def test_admin_jobs_answers_admins_only(web_server: RunningServer, two_jobs: dict[str, dict[str, Any]]) -> None:
    mine = two_jobs["test"]["id"]
    for path in ("/admin/jobs", f"/admin/jobs/{mine}"):
        refused = httpx.get(f"{web_server.base_url}{path}", headers=bearer(web_server.api_key), timeout=30)
        assert refused.status_code == 403, (path, refused.status_code, refused.text)
        assert refused.json()["error"]["message"], refused.text

    admin = bearer(web_server.admin_key)
    listed = httpx.get(f"{web_server.base_url}/admin/jobs", headers=admin, timeout=30).json()
    assert listed["object"] == "list" and listed["has_more"] is False, listed
    assert {(j["id"], j["key_name"]) for j in listed["data"]} == {(j["id"], name) for name, j in two_jobs.items()}
    only = httpx.get(f"{web_server.base_url}/admin/jobs", params={"key": OTHER_KEY}, headers=admin, timeout=30).json()
    assert [j["id"] for j in only["data"]] == [two_jobs[OTHER_KEY]["id"]], only
    one = httpx.get(f"{web_server.base_url}/admin/jobs/{mine}", headers=admin, timeout=30).json()
    assert one["key_name"] == "test" and one["attempts"] == 1 and one["webhook_deliveries"] == [], one


# --- the console -----------------------------------------------------------------------------------------------------


def test_console_jobs_table_filter_paging_and_details(
    browser: Chrome, web_server: RunningServer, shots: Path, two_jobs: dict[str, dict[str, Any]]
) -> None:
    open_page(browser, web_server, "console")
    enter_key(browser, web_server.admin_key)
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-console") == "ready", 30, "console")
    wait(browser, table_ready, 30, "the jobs table")

    rows = {row["id"]: row for row in job_rows(browser)}
    assert set(rows) == {job["id"] for job in two_jobs.values()}, rows
    for name, job in two_jobs.items():
        row = rows[job["id"]]
        assert row["key"] == name and row["status"] == "succeeded", row
        # id, key, status, model, format, audio s, progress, created, finished, error
        cells = row["cells"]
        assert cells[:5] == [job["id"], name, "succeeded", job["model"], job["response_format"]], cells
        assert float(cells[5]) == pytest.approx(job["audio_seconds"], abs=0.05), cells
        assert cells[6] == "100 %" and cells[7] != "–" and cells[8] != "–" and cells[9] == "–", cells
    assert not browser.find_element(By.ID, "jobs-older").is_enabled()  # two jobs fit one page
    assert not browser.find_element(By.ID, "jobs-newer").is_enabled()
    screenshot(browser, shots, "20-console-jobs")

    # Filter by one key (with the keyboard): only its job is listed.
    browser.find_element(By.ID, "jobs-key").send_keys(OTHER_KEY, Keys.ENTER)
    wait(
        browser,
        lambda d: table_ready(d) and [r["key"] for r in job_rows(d)] == [OTHER_KEY],
        30,
        "the filtered jobs table",
    )
    assert [r["id"] for r in job_rows(browser)] == [two_jobs[OTHER_KEY]["id"]]
    assert OTHER_KEY in browser.find_element(By.ID, "jobs-state").text

    # A click on the id shows the job's details, and the focus moves to them.
    job_id = two_jobs[OTHER_KEY]["id"]
    browser.find_element(By.CSS_SELECTOR, f'#jobs tr[data-job="{job_id}"] button').click()
    wait(
        browser,
        lambda d: d.find_element(By.ID, "job-details").get_attribute("data-state") == "ready",
        30,
        "the job's details",
    )
    details = browser.find_element(By.ID, "job-details")
    assert details.is_displayed() and details.get_attribute("data-job") == job_id
    assert browser.find_element(By.ID, "job-details-id").text == job_id
    fields = {
        dd.get_attribute("data-field"): dd.text for dd in details.find_elements(By.CSS_SELECTOR, "dd[data-field]")
    }
    assert fields["attempts"] == "1" and fields["key"] == OTHER_KEY and fields["status"] == "succeeded", fields
    assert fields["format"] == "srt" and fields["webhook"] == "–" and fields["error"] == "–", fields
    deliveries = details.find_element(By.CSS_SELECTOR, "#job-deliveries tbody").text
    assert deliveries == "No webhook for this job.", deliveries
    assert browser.switch_to.active_element.get_attribute("id") == "job-details-title"
    selected = browser.find_element(By.CSS_SELECTOR, "#jobs tr.selected")
    assert selected.get_attribute("data-job") == job_id
    screenshot(browser, shots, "21-console-job-details")

    # Closing the details gives the focus back to the job's id.
    browser.find_element(By.ID, "job-details-close").click()
    assert not details.is_displayed()
    assert browser.switch_to.active_element.text == job_id

    # An empty filter lists every key's jobs again.
    browser.find_element(By.ID, "jobs-key").clear()
    browser.find_element(By.ID, "jobs-filter").click()
    wait(browser, lambda d: table_ready(d) and len(job_rows(d)) == 2, 30, "every key's jobs")
    newest_first = [r["id"] for r in job_rows(browser)]

    # One job a page: "Older" follows `after` while `has_more`, "Newer" goes back.
    browser.execute_script("document.getElementById('jobs').dataset.pageSize = '1';")
    browser.find_element(By.ID, "jobs-refresh").click()
    wait(browser, lambda d: table_ready(d) and [r["id"] for r in job_rows(d)] == newest_first[:1], 30, "page 1")
    older, newer = browser.find_element(By.ID, "jobs-older"), browser.find_element(By.ID, "jobs-newer")
    assert older.is_enabled() and not newer.is_enabled()
    older.click()
    wait(browser, lambda d: table_ready(d) and [r["id"] for r in job_rows(d)] == newest_first[1:], 30, "page 2")
    assert not older.is_enabled() and newer.is_enabled()
    assert browser.find_element(By.ID, "jobs-state").text.startswith("page 2")
    newer.click()
    wait(browser, lambda d: table_ready(d) and [r["id"] for r in job_rows(d)] == newest_first[:1], 30, "page 1 again")
    assert older.is_enabled() and not newer.is_enabled()
    errors = page_errors(browser)
    assert errors == [], errors


def test_console_jobs_for_an_unknown_key(browser: Chrome, web_server: RunningServer) -> None:
    open_page(browser, web_server, "console")
    enter_key(browser, web_server.admin_key)
    wait(browser, table_ready, 30, "the jobs table")
    browser.find_element(By.ID, "jobs-key").send_keys("nobody", Keys.ENTER)
    wait(browser, lambda d: table_ready(d) and "nobody" in d.find_element(By.ID, "jobs-state").text, 30, "filter")
    assert job_rows(browser) == []
    assert browser.find_element(By.CSS_SELECTOR, "#jobs tbody").text == "No jobs for the key nobody."
    assert page_errors(browser) == []
