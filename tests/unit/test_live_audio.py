"""Live input audio: G.711 expansion, streaming resampling to 16 kHz, and the incremental Silero VAD."""

from __future__ import annotations

import io

import av
import ctranslate2
import numpy as np
import pytest
from faster_whisper.vad import get_vad_model

from app.serving.realtime.config import SessionConfig, TranscriptionConfig
from app.serving.realtime.decode_options import decode_options
from app.settings import RealtimeConfig
from engines.audio import SAMPLE_RATE
from engines.batching import Batcher
from engines.live.codecs import ALAW_TABLE, ULAW_TABLE, Denoise, StreamConverter, decode_g711
from engines.live.vad_stream import FRAME_SAMPLES, SileroScorer, StreamingVad
from engines.whisper import batch_ops
from engines.whisper.adapter import ModelCalls, trim_padding


@pytest.mark.parametrize(("law", "ffmpeg_format"), [("pcmu", "mulaw"), ("pcma", "alaw")])
def test_g711_tables_match_ffmpeg(law: str, ffmpeg_format: str) -> None:
    raw = bytes(range(256))
    container = av.open(io.BytesIO(raw), mode="r", format=ffmpeg_format, options={"sample_rate": "8000"})
    reference = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]).astype(np.int16)
    assert np.array_equal(decode_g711(raw, law), reference)  # type: ignore[arg-type]


def test_g711_tables_are_symmetric_and_16_bit() -> None:
    assert ULAW_TABLE.max() == 32124 and ULAW_TABLE.min() == -32124
    assert ALAW_TABLE.max() == 32256 and ALAW_TABLE.min() == -32256


def _tone(rate: int, seconds: float) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 0.5 * 32767).astype("<i2").tobytes()


def test_pcm16_stream_is_resampled_once_whatever_the_append_sizes() -> None:
    data = _tone(24_000, 1.0)
    whole = StreamConverter("pcm16").convert(data)
    converter = StreamConverter("pcm16")
    rng = np.random.default_rng(1)
    pieces, position = [], 0
    while position < len(data):
        size = int(rng.integers(1, 5000))  # odd sizes split samples across appends
        pieces.append(converter.convert(data[position : position + size]))
        position += size
    streamed = np.concatenate(pieces)
    assert streamed.size == whole.size
    assert np.allclose(streamed, whole, atol=1e-6)
    assert abs(whole.size - SAMPLE_RATE) <= 32  # the resampler holds back about 1 ms


def test_pcm16_resampled_level_and_pitch_are_kept() -> None:
    out = StreamConverter("pcm16").convert(_tone(24_000, 1.0))
    assert 0.45 < float(np.max(np.abs(out))) < 0.55
    spectrum = np.abs(np.fft.rfft(out[: SAMPLE_RATE // 2]))
    assert abs(np.argmax(spectrum) * 2 - 440) <= 4


def test_g711_is_upsampled_from_8_khz() -> None:
    converter = StreamConverter("pcmu")
    out = converter.convert(bytes([0xFF]) * 8000)  # one second of μ-law silence
    assert abs(out.size - SAMPLE_RATE) <= 32
    assert converter.samples_in(b"\x00" * 80) == 80


def test_streaming_vad_equals_the_batch_vad() -> None:
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(FRAME_SAMPLES * 40) * 0.1).astype(np.float32)
    audio[FRAME_SAMPLES * 10 : FRAME_SAMPLES * 20] += np.sin(np.arange(FRAME_SAMPLES * 10) / 7).astype(np.float32)
    batch = get_vad_model()(audio)
    vad = StreamingVad(SileroScorer())
    probs, position = [], 0
    for size in [100, 511, 513, 2000, 7, 4000, 9000] * 10:
        probs.append(vad.feed(audio[position : position + size]))
        position += size
        if position >= audio.size:
            break
    streamed = np.concatenate(probs)
    assert streamed.size == batch.size == vad.frames
    assert np.allclose(streamed, batch, atol=1e-6)


def test_trim_padding_keeps_the_audio_and_some_of_the_padding() -> None:
    features = np.zeros((1, 80, 3000), np.float32)
    features[:, :, :250] = -0.5
    trimmed = np.asarray(trim_padding(ctranslate2.StorageView.from_array(features), 1000))
    assert trimmed.shape == (1, 80, 1250)
    assert np.array_equal(trimmed, features[:, :, :1250])
    full = np.full((1, 80, 3000), 0.25, np.float32)
    assert np.asarray(trim_padding(ctranslate2.StorageView.from_array(full), 1000)).shape == (1, 80, 3000)


def test_the_denoiser_lowers_stationary_noise_and_keeps_the_stream_length() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(24_000 * 2) / 24_000
    tone = np.where((t > 0.8) & (t < 1.2), 0.5 * np.sin(2 * np.pi * 300 * t), 0.0)
    noisy = tone + rng.standard_normal(t.size) * 0.005  # about -46 dBFS of white noise
    data = (noisy * 32767).astype("<i2").tobytes()
    plain = StreamConverter("pcm16").convert(data)
    converter = StreamConverter("pcm16", Denoise())
    denoised = np.concatenate([converter.convert(data[i : i + 4800]) for i in range(0, len(data), 4800)])
    assert abs(denoised.size - plain.size) < 400  # about 12 ms of filter delay
    quiet = slice(int(0.2 * SAMPLE_RATE), int(0.7 * SAMPLE_RATE))
    assert np.std(denoised[quiet]) < 0.5 * np.std(plain[quiet])
    loud = slice(int(0.9 * SAMPLE_RATE), int(1.1 * SAMPLE_RATE))
    assert np.std(denoised[loud]) > 0.8 * np.std(plain[loud])


def test_trim_padding_rounds_up_to_the_next_window_length() -> None:
    features = np.zeros((1, 80, 3000), np.float32)
    features[:, :, :250] = -0.5
    rounded = trim_padding(ctranslate2.StorageView.from_array(features), 1000, (1000, 2000, 3000))
    assert np.asarray(rounded).shape == (1, 80, 2000)  # 1250 frames of audio and padding → 20 s
    features[:, :, :1500] = -0.5
    whole = trim_padding(ctranslate2.StorageView.from_array(features), 1000, (1000, 2000, 3000))
    assert np.asarray(whole).shape == (1, 80, 3000)


def test_realtime_turns_keep_their_exact_padding_and_live_decodes_skip_the_guard() -> None:
    config = SessionConfig(transcription=TranscriptionConfig(model="gpt-realtime-whisper"))
    limits = RealtimeConfig()
    final = decode_options(config, limits, seconds=4.0, final=True, beam_size=5, detected_language="en")
    live = decode_options(config, limits, seconds=4.0, final=False, beam_size=5, detected_language="en")
    assert not final.round_encoder_window and not live.round_encoder_window
    assert final.full_window_guard and not live.full_window_guard
    assert final.encoder_padding_seconds == limits.encoder_padding_seconds
    assert live.encoder_padding_seconds == limits.live_encoder_padding_seconds
    assert live.batch_window_step_seconds == limits.live_window_step_seconds and final.batch_window_step_seconds is None


def test_on_a_batching_model_live_windows_round_to_their_finer_steps() -> None:
    """Live decodes of several sessions share decoder batches only at one window length: on a model that
    batches they are rounded to multiples of the live step; without a batcher the step is ignored."""
    features = np.zeros((1, 80, 3000), np.float32)
    features[:, :, :250] = -0.5  # 2.5 s of audio, 5 s of padding kept: 7.5 s
    view = ctranslate2.StorageView.from_array(features)
    shapes: list[tuple[int, ...]] = []

    class Inner:
        def encode(self, features: object, to_cpu: bool = False) -> object:
            shapes.append(tuple(np.asarray(features).shape))
            return features

    batcher = Batcher(lambda op, key, payloads: [Inner().encode(p[0]) for p in payloads])
    try:
        for step, with_batcher, expected in ((250, True, 750), (400, True, 800), (250, False, 750), (None, True, 1000)):
            calls = ModelCalls(
                Inner(), None, padding_frames=500, round_windows=False, batcher=batcher if with_batcher else None
            )
            calls.batch_step_frames = step
            calls.encode(view)
            assert shapes[-1] == (1, 80, expected), (step, with_batcher)
    finally:
        batcher.close()


def test_greedy_decodes_with_different_token_limits_share_a_batch_key_and_beam_searches_do_not() -> None:
    encoded = np.zeros((1, 500, 512), np.float32)
    prompt = [50258, 50259, 50359]
    greedy: dict[str, object] = {"beam_size": 1, "patience": 1.0, "return_scores": True}
    beam: dict[str, object] = {"beam_size": 5, "patience": 1.0, "return_scores": True}

    def key(kwargs: dict[str, object], limit: int) -> object:
        return batch_ops.generate_key(encoded, prompt, 50258, kwargs | {"max_length": limit})

    assert key(greedy, 40) == key(greedy, 120)
    assert key(beam, 40) != key(beam, 120)
    assert key(greedy, 40) != key(greedy | {"suppress_blank": False}, 40)
    assert batch_ops.token_room(10, 3) <= 5 and batch_ops.token_room(448, 3) <= 224  # measured on CTranslate2 4.x
