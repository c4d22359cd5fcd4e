"""The browser pages in real headless Chromium (Debian's chromium + chromedriver, driven by Selenium) against the
real server: file upload, srt download, diarized view, live captions from a fake microphone, errors, and the
admin console. Each state is saved as a screenshot (in $STT_TEST_SCREENSHOTS, or pytest's temporary folder)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from tests.audio import espeak, recording, reference, silence, sox, wer
from tests.server import RunningServer, run_server

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "Chromium and its driver are not installed (apt-get install chromium chromium-driver)", allow_module_level=True
    )
if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
    pytest.skip("espeak-ng and sox are needed to make test speech", allow_module_level=True)

CONFIG = {
    "models": {"base": {"source": "embedded:base"}, "tiny.en": {"source": "embedded:tiny.en"}},
    "aliases": {
        "whisper-1": {"model": "base", "usage": "duration"},
        "gpt-4o-transcribe-diarize": {"model": "base", "usage": "tokens", "diarize": True},
        "gpt-realtime-whisper": {"model": "tiny.en", "usage": "tokens"},
    },
    "preload_models": ["base", "tiny.en"],
    "diarization": {"preload": True},
}
LIVE_TEXT = (
    "the committee agreed that the new library building would open in the spring and that every student "
    "in the district would receive a free card to borrow books and music for the whole summer"
)
LIVE_LEAD_SECONDS, LIVE_TAIL_SECONDS = 0.5, 4.0
MALE, FEMALE = "en+m3", "en+f3"
DIALOGUE = [
    (MALE, "Good morning. I wanted to talk about the budget for the next quarter."),
    (FEMALE, "Sure. I looked at the numbers yesterday and they seem reasonable to me."),
    (MALE, "The travel costs went up quite a bit though."),
    (FEMALE, "That is true, but we also had two more conferences this year."),
]
KNOWN_SPEAKER_SAMPLE = "Could you please repeat the last number? I did not quite catch it."
T = TypeVar("T")


# --- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(tmp_path_factory.mktemp("playground"), CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def live_wav(media: Path) -> tuple[Path, float]:
    """The fake microphone: a short lead-in, one long sentence, then silence; 48 kHz 16-bit mono. Also the time
    at which the speech ends."""
    speech = media / "live-speech.wav"
    sox(str(espeak(media / "live-raw.wav", LIVE_TEXT)), "-r", "48000", "-c", "1", "-b", "16", str(speech))
    lead = silence(media / "lead.wav", LIVE_LEAD_SECONDS, rate=48000)
    tail = silence(media / "tail.wav", LIVE_TAIL_SECONDS, rate=48000)
    target = media / "live.wav"
    sox(str(lead), str(speech), str(tail), str(target))
    return target, LIVE_LEAD_SECONDS + _seconds(speech)


def prefix_wer(spoken: str, heard: str) -> float:
    """WER of ``heard`` against the start of ``spoken`` that fits it best (audio cut off at some point)."""
    words = spoken.split()
    return min(wer(" ".join(words[:n]), heard) for n in range(1, len(words) + 1))


def srt_text(srt: str) -> str:
    """The cues' text of an SRT file, without numbers and times."""
    return " ".join(line for line in srt.splitlines() if line.strip() and not line.isdigit() and "-->" not in line)


def _seconds(wav: Path) -> float:
    with wave.open(str(wav), "rb") as reader:
        return reader.getnframes() / reader.getframerate()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("STT_TEST_SCREENSHOTS")
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True)
        return Path(configured)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(live_wav: tuple[Path, float], downloads: Path) -> Iterator[Chrome]:
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options = Options()
    options.binary_location = CHROMIUM
    for argument in [
        "--headless=new",
        "--no-sandbox",  # we run as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,1000",
        "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={live_wav[0]}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]:
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()


# --- helpers -------------------------------------------------------------------------------------------------------


def wait(driver: Chrome, condition: Callable[[Chrome], T], timeout: float = 60, what: str = "") -> T:
    def check(d: Chrome) -> T:
        error = d.find_elements(By.CSS_SELECTOR, "#error:not([hidden])")
        if error and error[0].text and what != "error":
            raise AssertionError(f"the page shows an error while waiting for {what}: {error[0].text}")
        return condition(d)

    result: T = WebDriverWait(driver, timeout, poll_frequency=0.1).until(check, f"timed out waiting for {what}")
    return result


def screenshot(driver: Chrome, directory: Path, name: str) -> Path:
    """The whole page (not only the viewport) as a PNG."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path = directory / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def open_page(driver: Chrome, server: RunningServer, page: str) -> None:
    """The page in a fresh state: no key left in session storage by an earlier test."""
    driver.get(f"{server.base_url}/{page}")
    driver.execute_script("sessionStorage.clear();")
    driver.refresh()
    wait(driver, lambda d: d.find_element(By.ID, "api-key").is_displayed(), 30, "the page")
    browser_log(driver)  # start each page with an empty console log


def enter_key(driver: Chrome, key: str) -> None:
    """Types the key and presses Enter, as a keyboard user would."""
    field = driver.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key, Keys.ENTER)


def use_key(driver: Chrome, key: str) -> None:
    enter_key(driver, key)
    wait(driver, lambda d: d.find_element(By.ID, "model").get_attribute("data-loaded") == "true", 30, "the models")


def browser_log(driver: Chrome) -> list[dict[str, Any]]:
    """The console messages since the last call (chromedriver hands each one out once)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return entries


def page_errors(driver: Chrome) -> list[str]:
    """Console messages that are the page's own fault: script errors and policy violations (not HTTP statuses)."""
    entries = browser_log(driver)
    return [
        str(e["message"])
        for e in entries
        if e.get("level") == "SEVERE" and "Failed to load resource" not in str(e["message"])
    ]


def select(driver: Chrome, element_id: str, value: str) -> None:
    Select(driver.find_element(By.ID, element_id)).select_by_value(value)


def transcribe(driver: Chrome, audio: Path, *, response_format: str = "verbose_json", timeout: float = 180) -> None:
    driver.find_element(By.ID, "file").send_keys(str(audio))
    select(driver, "model", "whisper-1")
    select(driver, "response-format", response_format)
    driver.find_element(By.ID, "transcribe").click()
    wait(driver, lambda d: d.find_element(By.ID, "result").get_attribute("data-state") == "done", timeout, "transcript")


def segments(driver: Chrome) -> list[dict[str, Any]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#segments .segment")
    return [
        {
            "start": float(row.get_attribute("data-start") or 0),
            "end": float(row.get_attribute("data-end") or 0),
            "speaker": row.find_element(By.CSS_SELECTOR, ".speaker").text,
            "text": row.find_element(By.CSS_SELECTOR, ".text").text,
            "element": row,
        }
        for row in rows
    ]


def downloaded(directory: Path, name: str, timeout: float = 20) -> str:
    path = directory / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size and not list(directory.glob("*.crdownload")):
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded; the folder has {sorted(p.name for p in directory.iterdir())}")


def player_state(driver: Chrome) -> tuple[float, bool]:
    current, paused = driver.execute_script(
        "const p = document.getElementById('player'); return [p.currentTime, p.paused];"
    )
    return float(current), bool(paused)


# --- the playground ------------------------------------------------------------------------------------------------


def test_a_wrong_key_gives_a_readable_error(browser: Chrome, web_server: RunningServer, shots: Path) -> None:
    open_page(browser, web_server, "playground")
    enter_key(browser, "sk-gateway-not-a-real-key")
    error = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#error:not([hidden])"), 20, "error")
    assert "Incorrect API key provided" in error.text and "401" in error.text, error.text
    assert "sk-gateway-not-a-real-key" not in error.text
    screenshot(browser, shots, "01-playground-wrong-key")

    # Live mode: the client secret cannot be minted with a wrong key, and the page says why.
    browser.find_element(By.ID, "tab-live").click()
    browser.find_element(By.ID, "live-start").click()

    def start_error(d: Chrome) -> str:
        text = str(d.find_element(By.ID, "error").text)
        return text if "could not start" in text else ""

    message = wait(browser, start_error, 20, "error")
    assert "Incorrect API key provided" in message and "401" in message, message
    assert browser.find_element(By.ID, "live-start").is_enabled()
    assert page_errors(browser) == []


def test_the_pages_fit_a_narrow_screen(browser: Chrome, web_server: RunningServer, shots: Path) -> None:
    browser.set_window_size(380, 900)
    try:
        for page in ("playground", "console"):
            open_page(browser, web_server, page)
            overflow = browser.execute_script(
                "const e = document.documentElement; return e.scrollWidth - e.clientWidth;"
            )
            assert overflow <= 0, f"/{page} scrolls sideways by {overflow} px at 380 px"
            screenshot(browser, shots, f"02-{page}-narrow")
    finally:
        browser.set_window_size(1100, 1000)


def test_upload_of_a_real_recording(browser: Chrome, web_server: RunningServer, shots: Path) -> None:
    audio = recording("en_jfk.flac")
    open_page(browser, web_server, "playground")
    use_key(browser, web_server.api_key)
    browser.find_element(By.ID, "words").click()
    transcribe(browser, audio)
    found = segments(browser)
    assert found, "no segments shown"
    text = " ".join(s["text"] for s in found)
    assert wer(reference("en_jfk.flac"), text) < 0.15, text
    words = browser.find_elements(By.CSS_SELECTOR, "#segments .word")
    assert len(words) == len(text.split()), [w.text for w in words]
    assert re.fullmatch(r"\d:\d\d\.\d–\d:\d\d\.\d", words[0].get_attribute("title") or ""), words[0].get_attribute(
        "title"
    )
    assert all(s["end"] >= s["start"] for s in found)
    status = browser.find_element(By.ID, "file-status").text
    assert status.startswith("Done in"), status

    # A click on a segment plays the audio from there.
    last = found[-1]
    last["element"].click()
    wait(browser, lambda d: player_state(d)[0] >= last["start"] + 0.3, 20, "playback of the last segment")
    assert "playing" in (last["element"].get_attribute("class") or "")
    screenshot(browser, shots, "03-playground-transcript")
    assert page_errors(browser) == []


def test_srt_download_is_the_servers_srt(
    browser: Chrome, web_server: RunningServer, media: Path, downloads: Path
) -> None:
    said = "The quick brown fox jumps over the lazy dog. Please call me back before noon."
    audio = espeak(media / "fox.wav", said)
    open_page(browser, web_server, "playground")
    use_key(browser, web_server.api_key)
    transcribe(browser, audio)
    browser.find_element(By.CSS_SELECTOR, '[data-download="srt"]').click()
    srt = downloaded(downloads, "fox.srt")
    assert re.match(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n\S", srt), srt
    assert wer(said, srt_text(srt)) <= 0.25, srt
    server_srt = httpx.post(
        f"{web_server.v1}/audio/transcriptions",
        headers={"Authorization": f"Bearer {web_server.api_key}"},
        files={"file": ("fox.wav", audio.read_bytes())},
        data={"model": "whisper-1", "response_format": "srt"},
        timeout=120,
    )
    assert srt == server_srt.text
    browser.find_element(By.CSS_SELECTOR, '[data-download="vtt"]').click()
    assert downloaded(downloads, "fox.vtt").startswith("WEBVTT\n\n00:00:0")


def test_streaming_with_vad_chunking_shows_the_text(browser: Chrome, web_server: RunningServer, media: Path) -> None:
    said = "Seven green apples fell from the tall tree."
    audio = espeak(media / "stream.wav", said)
    open_page(browser, web_server, "playground")
    use_key(browser, web_server.api_key)
    browser.find_element(By.ID, "stream").click()
    select(browser, "chunking", "auto")
    transcribe(browser, audio, response_format="json")
    text = browser.find_element(By.ID, "streamed").text
    plain = httpx.post(
        f"{web_server.v1}/audio/transcriptions",
        headers={"Authorization": f"Bearer {web_server.api_key}"},
        files={"file": ("stream.wav", audio.read_bytes())},
        data={"model": "whisper-1", "response_format": "text", "chunking_strategy": "auto"},
        timeout=120,
    )
    assert text == plain.text.strip(), (text, plain.text)
    assert wer(said, text) <= 0.4, text  # 8 words: base hears "green apples" as "preapples" (2 errors)
    assert '"transcript.text.done"' in (browser.find_element(By.ID, "raw").get_attribute("textContent") or "")


def test_record_from_the_microphone(browser: Chrome, web_server: RunningServer) -> None:
    # The fake microphone plays the live test's file (LIVE_TEXT) from its start for each new capture.
    open_page(browser, web_server, "playground")
    use_key(browser, web_server.api_key)
    browser.find_element(By.ID, "record").click()
    wait(browser, lambda d: d.find_element(By.ID, "record-state").text == "recording…", 20, "the recording")
    time.sleep(4.5)
    browser.find_element(By.ID, "record").click()
    wait(browser, lambda d: d.find_element(By.ID, "record-state").text.startswith("recorded"), 20, "the stop")
    select(browser, "model", "whisper-1")
    browser.find_element(By.ID, "transcribe").click()
    wait(browser, lambda d: d.find_element(By.ID, "result").get_attribute("data-state") == "done", 120, "transcript")
    text = " ".join(s["text"] for s in segments(browser))
    assert prefix_wer(LIVE_TEXT, text) <= 0.3, text  # 4.5 s of it, from its start
    assert page_errors(browser) == []


def _dialogue(media: Path) -> Path:
    parts = []
    for index, (voice, line) in enumerate(DIALOGUE):
        part = media / f"line{index}.wav"
        sox(str(espeak(media / f"line{index}-raw.wav", line, voice=voice)), "-r", "16000", "-c", "1", str(part))
        parts += [str(part), str(silence(media / f"pause{index}.wav", 0.6))]
    target = media / "dialogue.wav"
    sox(*parts, str(target))
    return target


def test_diarized_view_with_two_speakers(browser: Chrome, web_server: RunningServer, media: Path, shots: Path) -> None:
    dialogue = _dialogue(media)
    sample = media / "known-male.wav"
    sox(str(espeak(media / "known-raw.wav", KNOWN_SPEAKER_SAMPLE, voice=MALE)), "-r", "16000", str(sample))
    open_page(browser, web_server, "playground")
    use_key(browser, web_server.api_key)
    browser.find_element(By.ID, "diarize").click()
    assert Select(browser.find_element(By.ID, "response-format")).first_selected_option.text == "diarized_json"
    browser.find_element(By.ID, "add-speaker").click()
    browser.switch_to.active_element.send_keys("Morgan")  # the new row's name field has the focus
    browser.find_element(By.CSS_SELECTOR, ".speaker-row input[type=file]").send_keys(str(sample))
    transcribe(browser, dialogue, response_format="diarized_json", timeout=300)
    found = segments(browser)
    speakers = {s["speaker"] for s in found}
    assert len(speakers) >= 2, found
    assert "Morgan" in speakers, speakers
    colours = {
        s["speaker"]: s["element"].find_element(By.CSS_SELECTOR, ".speaker").value_of_css_property("background-color")
        for s in found
    }
    assert len(set(colours.values())) == len(colours), colours
    said = " ".join(line for _, line in DIALOGUE)
    assert wer(said, " ".join(s["text"] for s in found)) <= 0.2, found
    morgan = " ".join(s["text"] for s in found if s["speaker"] == "Morgan").lower()
    assert "budget" in morgan or "travel" in morgan, found

    # A click on a segment plays that part, and only that part, of the audio.
    third = found[2]
    third["element"].click()
    wait(browser, lambda d: not player_state(d)[1], 10, "playback")
    assert player_state(browser)[0] >= third["start"] - 0.05
    wait(browser, lambda d: player_state(d)[1], third["end"] - third["start"] + 10, "the end of the segment")
    assert third["end"] - 0.1 <= player_state(browser)[0] <= third["end"] + 0.6, (player_state(browser), third)
    screenshot(browser, shots, "04-playground-diarized")
    assert page_errors(browser) == []


def turns_text(browser: Chrome) -> str:
    """The completed turns' text, without their times (empty while the list is being redrawn)."""
    try:
        turns = browser.find_elements(By.CSS_SELECTOR, "#turns li")
        return " ".join(t.text[len(t.find_element(By.CSS_SELECTOR, ".time").text) :] for t in turns)
    except StaleElementReferenceException:
        return ""


def test_live_captions_from_the_microphone(
    browser: Chrome, web_server: RunningServer, live_wav: tuple[Path, float], shots: Path
) -> None:
    _, speech_ends = live_wav
    open_page(browser, web_server, "playground")
    use_key(browser, web_server.api_key)
    browser.find_element(By.ID, "tab-live").click()
    select(browser, "live-model", "gpt-realtime-whisper")
    browser.find_element(By.ID, "live-language").send_keys("en")
    browser.find_element(By.ID, "live-start").click()
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "listening", 60, "mic")
    listening = time.monotonic()

    seen_vad: set[str] = set()

    def caption(d: Chrome) -> str:
        seen_vad.add(d.find_element(By.ID, "vad-state").text)
        return str(d.find_element(By.ID, "captions").text)

    first = wait(browser, caption, 60, "the first caption")
    caption_seconds = time.monotonic() - listening
    screenshot(browser, shots, "05-playground-live-captions")
    in_page = float(browser.find_element(By.ID, "captions").get_attribute("data-first-delta-ms") or "nan") / 1000
    assert in_page < speech_ends, (
        f"first caption {in_page:.1f} s after the mic opened; the speech ends at {speech_ends:.1f} s"
    )
    assert caption_seconds < speech_ends + 1, caption_seconds
    assert prefix_wer(LIVE_TEXT, first) <= 0.5, first  # a first guess at the start of the sentence

    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#turns li"), 90, "a completed turn")
    caption(browser)
    assert "speech" in seen_vad, seen_vad
    # The utterance may take two turns (turns are cut at realtime.max_turn_seconds): wait for the
    # turns that cover it. Chromium's fake microphone loops the file, so take the first fit.
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline:
        text = turns_text(browser)
        if wer(LIVE_TEXT, text) < 0.35:
            break
        time.sleep(0.2)
    assert wer(LIVE_TEXT, text) < 0.35, text
    wait(browser, lambda d: d.find_element(By.ID, "vad-state").text == "silence", 30, "the end of speech")
    screenshot(browser, shots, "06-playground-live-turns")

    # The page used a minted client secret for the socket: the key is in no URL it requested.
    urls: list[str] = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert not [u for u in urls if web_server.api_key in u or "ek_" in u], urls
    browser.find_element(By.ID, "live-stop").click()
    wait(browser, lambda d: d.find_element(By.ID, "live-status").text == "Stopped.", 30, "the stop")
    assert page_errors(browser) == []


def test_live_translation_to_english(browser: Chrome, web_server: RunningServer) -> None:
    """ "Translate to English" opens a translation session (the fake microphone speaks English, which
    Whisper's translate task passes through): a running English caption, finished on Stop."""
    open_page(browser, web_server, "playground")
    use_key(browser, web_server.api_key)
    browser.find_element(By.ID, "tab-live").click()
    select(browser, "live-model", "base")
    browser.find_element(By.ID, "live-translate").click()
    browser.find_element(By.ID, "live-start").click()
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "listening", 60, "mic")
    wait(browser, lambda d: d.find_element(By.ID, "captions").text, 60, "the first translated words")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and wer(LIVE_TEXT, browser.find_element(By.ID, "captions").text) > 0.5:
        time.sleep(0.2)
    browser.find_element(By.ID, "live-stop").click()
    wait(browser, lambda d: d.find_element(By.ID, "live-status").text == "Stopped.", 30, "the stop")
    text = turns_text(browser)
    assert prefix_wer(LIVE_TEXT, text) <= 0.5, text
    assert page_errors(browser) == []


# --- the console -------------------------------------------------------------------------------------------------


def test_console_for_an_admin_key(browser: Chrome, web_server: RunningServer, shots: Path) -> None:
    # A refused request is a ledger row as well: usage for the plain key, without a transcription.
    refused = httpx.post(
        f"{web_server.v1}/audio/transcriptions",
        headers={"Authorization": f"Bearer {web_server.api_key}"},
        files={"file": ("x.wav", b"RIFF")},
        data={"model": "no-such-model"},
    )
    assert refused.status_code == 400
    open_page(browser, web_server, "console")
    enter_key(browser, web_server.admin_key)
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-console") == "ready", 30, "console")

    base = browser.find_element(By.CSS_SELECTOR, '#models tr[data-model="base"]')
    cells = [td.text for td in base.find_elements(By.TAG_NAME, "td")]
    assert cells[0] == "yes" and cells[2].endswith("MB"), cells
    usage = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#usage tr[data-key="test"]'), 10, "usage")
    numbers = [td.text for td in usage[0].find_elements(By.TAG_NAME, "td")]
    assert int(numbers[0]) >= 1 and int(numbers[3]) >= int(numbers[0]), numbers
    keys = [row.get_attribute("data-key") for row in browser.find_elements(By.CSS_SELECTOR, "#keys tbody tr")]
    assert keys == ["test", "test-admin"], keys
    assert browser.find_element(By.LINK_TEXT, "Prometheus metrics (/metrics)").get_attribute("href") == (
        f"{web_server.base_url}/metrics"
    )
    screenshot(browser, shots, "07-console")

    # Create a key with the keyboard: its secret is shown once, and it works; then revoke it.
    browser.find_element(By.ID, "new-name").send_keys("ci-bot", Keys.ENTER)
    secret = wait(browser, lambda d: d.find_element(By.ID, "new-secret").text, 20, "the new secret")
    assert secret.startswith("sk-gateway-")
    bearer = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{web_server.v1}/models", headers=bearer).status_code == 200
    screenshot(browser, shots, "08-console-new-key")
    browser.find_element(By.ID, "hide-secret").click()
    assert browser.find_element(By.ID, "new-secret").text == ""
    browser.find_element(By.CSS_SELECTOR, '#keys tr[data-key="ci-bot"] button.danger').click()
    browser.switch_to.active_element.click()  # the "Yes, revoke" button has the focus
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, '#keys tr[data-key="ci-bot"]'), 20, "the revocation")
    assert httpx.get(f"{web_server.v1}/models", headers=bearer).status_code == 401
    assert page_errors(browser) == []


def test_console_refused_for_a_normal_key(browser: Chrome, web_server: RunningServer, shots: Path) -> None:
    open_page(browser, web_server, "console")
    enter_key(browser, web_server.api_key)
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-console") == "refused", 30, "error")
    error = browser.find_element(By.ID, "error").text
    assert "This endpoint needs an admin key" in error and "403" in error, error
    assert not browser.find_element(By.ID, "panels").is_displayed()
    screenshot(browser, shots, "09-console-refused")


def test_no_key_in_the_server_log(web_server: RunningServer) -> None:
    log = web_server.log()
    assert web_server.api_key not in log and web_server.admin_key not in log
    assert not re.search(r"ek_[A-Za-z0-9_-]{20,}", log)
