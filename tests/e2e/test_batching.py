"""The batching engine through the real server and the openai SDK: concurrent clients get the text
they get alone, a cancelled request leaves the batch, and a short request is not stuck behind a long one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.serving.factory import model_specs
from app.settings import DEFAULT_CONFIG, load_settings
from bench.batching_check import BatchSizes, compare, synthetic_clips
from engines.spec import LoadContext
from engines.types import DecodeOptions
from engines.whisper import batch_ops
from engines.whisper.loading import load_whisper
from tests.audio import LONG_TEXT, espeak, repeat_audio, shared_audio_dir, wer
from tests.diarization_audio import pyannote_sample
from tests.e2e.test_realtime import INTENT, completed, pcm24, session, transcribe_live
from tests.server import MODEL_CACHE, RunningServer, run_server

# Real recordings when the shared folder is here (the French one exercises batched language detection).
RECORDINGS = (
    "en_jfk.flac",
    "en_librispeech_1272-128104-0000.wav",
    "fr_picovoice_leopard.wav",
    "en_osr_harvard72_8k.wav",
)
SENTENCES = (
    "Please remember to water the tomato plants twice a week while we are away.",
    "Our train left the station ten minutes behind schedule, but the driver made up the time.",
    "Twelve students volunteered to clean the river bank on Saturday.",
    "A thin layer of snow covered the garden, and the children built a crooked snowman.",
    "The pilot announced that we would land in twenty minutes.",
    "The bakery on the corner sells fresh bread every morning.",
    "She packed a warm jacket, two maps and a small torch.",
)
VOICES = ("en-us", "en+m3", "en+f3", "en-gb", "en-us+f2", "en-gb-scotland", "en-029")
CLIENTS = 8

BATCHED = {
    "models": {
        "base": {
            "source": "embedded:base",
            "batching": True,
            "max_concurrency": CLIENTS,
            "max_batch_size": CLIENTS,
            "batch_wait_ms": 10,
            "max_queue": 16,
        }
    },
    "aliases": {
        "whisper-1": {"model": "base", "usage": "duration"},
        "gpt-live-transcribe": {"model": "base", "usage": "tokens"},
    },
    "preload_models": ["base"],
    # Live decodes round their windows to 2.5-s steps on this batching model (the realtime test below)
    "realtime": {"live_window_step_seconds": 2.5},
}


@pytest.fixture(scope="module")
def batched_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(tmp_path_factory.mktemp("batched"), BATCHED) as running:
        yield running


@pytest.fixture(scope="module")
def eight_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Eight different clips: pyannote's own sample, the shared recordings present, then generated speech."""
    folder = tmp_path_factory.mktemp("eight")
    from tests.audio import sox

    samples, _ = pyannote_sample()
    sample = folder / "pyannote_sample.raw"
    sample.write_bytes((samples * 32767).astype("<i2").tobytes())
    clips = [folder / "pyannote_sample.wav"]
    sox("-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1", str(sample), str(clips[0]))
    directory = shared_audio_dir()
    if directory is not None:
        clips += [directory / name for name in RECORDINGS if (directory / name).is_file()]
    for i, text in enumerate(SENTENCES[: CLIENTS - len(clips)]):
        clips.append(espeak(folder / f"sentence{i}.wav", text, voice=VOICES[i]))
    assert len(clips) == CLIENTS
    return clips


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("long")
    passage = espeak(folder / "passage.wav", LONG_TEXT, speed=170)
    return repeat_audio(passage, folder / "long.wav", 4)  # about two minutes: several windows


def _samples(server: RunningServer, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{server.base_url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _reference(clip: Path) -> str | None:
    """What is said in one of the eight clips, where it is known."""
    if clip.name.startswith("sentence"):
        return SENTENCES[int(clip.stem.removeprefix("sentence"))]
    directory = shared_audio_dir()
    if clip.name == "pyannote_sample.wav":  # the copy inside pyannote.audio is the shared recording
        transcript = None if directory is None else directory / "diar_pyannote_sample.txt"
        return transcript.read_text().strip() if transcript is not None and transcript.is_file() else None
    return clip.with_suffix(".txt").read_text().strip()


# Whisper base hears this generated voice (en+f3, "Twelve students…") as Welsh: its text counts in the
# figure over all clips only.
MISHEARD = {"sentence2.wav"}


def _assert_transcripts(clips: list[Path], texts: list[str]) -> None:
    """Each clip's text is what is said in it (a WER bound), and so is all the text together."""
    references, hypotheses = [], []
    for clip, text in zip(clips, texts, strict=True):
        expected = _reference(clip)
        if expected is None:
            assert text.strip(), clip.name
            continue
        references.append(expected)
        hypotheses.append(text)
        if clip.name not in MISHEARD:
            # a real conversation, or a short generated sentence where one word is a tenth of it
            bound = 0.3 if clip.name == "pyannote_sample.wav" else 0.35 if clip.name.startswith("sentence") else 0.2
            assert wer(expected, text) <= bound, (clip.name, text)
    assert wer(" ".join(references), " ".join(hypotheses)) <= 0.2, list(zip(references, hypotheses, strict=True))


def _client(server: RunningServer, timeout: float = 600) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0, timeout=timeout)


def _transcribe(server: RunningServer, path: Path) -> str:
    return _client(server).audio.transcriptions.create(model="whisper-1", file=path).text


def test_concurrent_clients_get_the_text_they_get_alone(batched_server: RunningServer, eight_clips: list[Path]) -> None:
    alone = [_transcribe(batched_server, path) for path in eight_clips]
    batches_before = _samples(batched_server, "stt_batch_size_count", op="generate")
    items_before = _samples(batched_server, "stt_batch_size_sum", op="generate")
    start = threading.Barrier(CLIENTS)

    def together(path: Path) -> str:
        start.wait()
        return _transcribe(batched_server, path)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        concurrent = list(pool.map(together, eight_clips))
    for path, a, b in zip(eight_clips, alone, concurrent, strict=True):
        assert a == b, (path.name, a, b)
    _assert_transcripts(eight_clips, alone)
    batches = _samples(batched_server, "stt_batch_size_count", op="generate") - batches_before
    items = _samples(batched_server, "stt_batch_size_sum", op="generate") - items_before
    assert items > batches, "no decoder call was batched across requests"


def test_a_cancelled_request_leaves_the_batch(batched_server: RunningServer, long_speech: Path) -> None:
    impatient = _client(batched_server, timeout=3)
    with pytest.raises(openai.APITimeoutError):
        impatient.audio.transcriptions.create(model="whisper-1", file=long_speech)
    started = time.monotonic()
    while _samples(batched_server, "stt_in_flight") > 0:
        assert time.monotonic() - started < 60, "the cancelled request kept the model busy"
        time.sleep(0.1)
    freed_after = time.monotonic() - started
    items = _samples(batched_server, "stt_batch_size_sum")
    time.sleep(1.0)
    assert _samples(batched_server, "stt_batch_size_sum") == items, "model calls went on after the request left"
    assert "status=499" in batched_server.log()
    # The whole file takes several windows; the request left after at most the one in progress.
    whole = time.monotonic()
    _transcribe(batched_server, long_speech)
    assert freed_after < (time.monotonic() - whole) / 2, freed_after


def test_a_short_request_finishes_before_a_long_one_started_first(
    batched_server: RunningServer, long_speech: Path, eight_clips: list[Path]
) -> None:
    finished: list[str] = []
    lock = threading.Lock()

    def run(name: str, path: Path) -> None:
        _transcribe(batched_server, path)
        with lock:
            finished.append(name)

    long_thread = threading.Thread(target=run, args=("long", long_speech))
    long_thread.start()
    started = time.monotonic()
    while _samples(batched_server, "stt_in_flight") < 1:
        assert time.monotonic() - started < 60, "the long request never started"
        time.sleep(0.05)
    time.sleep(0.5)  # the long request is decoding its first window
    run("short", eight_clips[-1])
    long_thread.join(600)
    assert finished == ["short", "long"]


@pytest.mark.anyio
async def test_live_sessions_and_a_file_request_share_the_batches(
    batched_server: RunningServer, eight_clips: list[Path], tmp_path: Path
) -> None:
    """Realtime sessions' finals, speculative and live decodes (their windows in 2.5-s steps) go through the
    batcher beside a file request."""
    aclient = openai.AsyncOpenAI(base_url=batched_server.v1, api_key=batched_server.api_key, max_retries=0)
    expected = SENTENCES[-3:]
    spoken = [espeak(tmp_path / f"live{i}.wav", text, voice=VOICES[i]) for i, text in enumerate(expected)]
    calls_before = _samples(batched_server, "stt_batch_size_count")

    async def live(path: Path) -> str:
        async with aclient.realtime.connect(extra_query=INTENT) as conn:
            await conn.session.update(session=session(transcription={"model": "gpt-live-transcribe"}))
            events = await transcribe_live(conn, pcm24(path), 1, chunk_ms=50, speed=2.0)
            return " ".join(t.transcript for t in completed(events))

    async def file_request() -> str:
        return await asyncio.to_thread(_transcribe, batched_server, eight_clips[0])

    results = await asyncio.gather(file_request(), *(live(path) for path in spoken))
    _assert_transcripts(eight_clips[:1], results[:1])
    for text, got in zip(expected, results[1:], strict=True):
        assert wer(text, got) <= 0.25, (text, got)
    assert _samples(batched_server, "stt_batch_size_count") > calls_before


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_batched_equals_alone_with_words_and_logprobs(tmp_path: Path) -> None:
    """In process, tiny.en: generated clips decoded at once through the batcher give exactly what each
    gives alone, timestamps and the align calls behind word timings and log-probs included."""
    settings = load_settings(DEFAULT_CONFIG)
    spec = model_specs(settings)["tiny.en"]
    plain = load_whisper(replace(spec, batching=False), LoadContext(MODEL_CACHE, offline=True))
    batched = load_whisper(
        replace(spec, batching=True, max_encoder_batch_size=8, batch_wait_ms=50.0),
        LoadContext(MODEL_CACHE, offline=True),
    )
    try:
        clips = synthetic_clips(6, tmp_path)
        options = DecodeOptions(beam_size=spec.beam_size, word_timestamps=True, logprobs=True)
        rows = compare(plain, batched, clips, options)
    finally:
        batched.close()
    assert [name for name, same, _ in rows if not same] == []


def test_greedy_decodes_with_different_token_limits_share_batches_and_equal_alone(tmp_path: Path) -> None:
    """In process, tiny.en: live-style greedy decodes of clips of different lengths (so different token
    budgets, as each window's follows its audio) share decoder batches and still give what each gives alone."""
    settings = load_settings(DEFAULT_CONFIG)
    spec = model_specs(settings)["tiny.en"]
    plain = load_whisper(replace(spec, batching=False), LoadContext(MODEL_CACHE, offline=True))
    sizes = BatchSizes()
    batched = load_whisper(
        replace(spec, batching=True, batch_wait_ms=50.0), LoadContext(MODEL_CACHE, offline=True, observer=sizes)
    )
    try:
        clips = synthetic_clips(6, tmp_path)
        # 10-s steps: the same windows as the unbatched engine's 10/20/30-s rounding
        options = DecodeOptions(
            beam_size=1,
            temperatures=(0.0,),
            encoder_padding_seconds=5.0,
            batch_window_step_seconds=10.0,
            full_window_guard=False,
        )
        rows = compare(plain, batched, clips, options)
    finally:
        batched.close()
    assert [name for name, same, _ in rows if not same] == []
    assert any(op == "generate" and size > 1 for op, size in sizes.seen), sizes.seen


def test_a_greedy_item_cut_by_its_own_token_limit_gets_what_it_gets_alone(tmp_path: Path) -> None:
    """Real CTranslate2, tiny.en: one window decoded greedily beside a copy with room to spare, at every
    limit from a few tokens to past its natural end, equals the same window decoded alone at that limit
    (the batch runs to the larger limit; a result that may have been cut is decoded again)."""
    import ctranslate2
    import numpy as np

    settings = load_settings(DEFAULT_CONFIG)
    engine = load_whisper(
        replace(model_specs(settings)["tiny.en"], batching=False), LoadContext(MODEL_CACHE, offline=True)
    )
    ((_, audio),) = synthetic_clips(1, tmp_path)
    whisper = engine.model
    features = whisper.feature_extractor(audio)[None, :, :1000].astype(np.float32)  # a 6-s sentence, 10-s window
    encoded = whisper.model.encode(ctranslate2.StorageView.from_array(features))
    prompt = [whisper.hf_tokenizer.token_to_id(t) for t in ("<|startoftranscript|>", "<|notimestamps|>")]
    ops = batch_ops.WhisperBatchOps(whisper.model)
    kwargs = {"beam_size": 1, "max_length": 448, "return_scores": True}
    natural = len(whisper.model.generate(encoded, [prompt], **kwargs)[0].sequences_ids[0])
    # CTranslate2 stops a greedy decode at about half of max_length: every few limits while that cuts the
    # result, then each one around where it stops cutting
    for limit in [*range(len(prompt) + 2, 2 * natural - 12, 7), *range(2 * natural - 12, 2 * natural + 8)]:
        alone = whisper.model.generate(encoded, [prompt], **(kwargs | {"max_length": limit}))[0]
        key = batch_ops.generate_key(encoded, prompt, prompt[0], kwargs | {"max_length": limit})
        together = ops(batch_ops.GENERATE, key, [(encoded, prompt, limit), (encoded, prompt, 448)])
        assert together[0].sequences_ids == alone.sequences_ids, limit
        assert together[0].scores == pytest.approx(alone.scores), limit
