"""Small pieces: BPE token bytes, language names, audio decoding, settings loading."""

from __future__ import annotations

import io
import math
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from app.api.languages import LANGUAGE_NAMES, language_name, normalize_language
from app.settings import load_settings
from engines.audio import SAMPLE_RATE, decode_audio
from engines.errors import AudioDecodeError, AudioTooLongError
from engines.whisper.token_bytes import token_bytes

# --- token_bytes ----------------------------------------------------------------------------


def test_token_bytes_space_marker() -> None:
    assert token_bytes("Ġsee") == b" see"
    assert token_bytes("see") == b"see"
    assert token_bytes("Ċ") == b"\n"
    assert token_bytes("!") == b"!"


def test_token_bytes_multibyte_char_split_across_tokens() -> None:
    # 'é' is C3 A9 in UTF-8; GPT-2's alphabet shows C3 as 'Ã' and A9 as '©'.
    first, second = token_bytes("ĠcafÃ"), token_bytes("©")
    assert first == b" caf\xc3"
    assert second == b"\xa9"
    assert (first + second).decode("utf-8") == " café"
    # '世' is E4 B8 96: E4 -> 'ä', B8 -> '¸', 96 -> 'ĸ' (remapped non-printable byte 0x96).
    assert token_bytes("ä¸") + token_bytes("ĸ") == "世".encode()


def test_token_bytes_every_byte_round_trips() -> None:
    # Inverse of GPT-2's bytes_to_unicode, built independently here.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    alphabet: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in alphabet:
            alphabet[b] = chr(256 + extra)
            extra += 1
    encoded = "".join(alphabet[b] for b in range(256))
    assert token_bytes(encoded) == bytes(range(256))
    assert alphabet[32] == "Ġ"


# --- languages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("en", "en"),
        ("EN", "en"),
        (" en ", "en"),
        ("english", "en"),
        ("English", "en"),
        ("GERMAN", "de"),
        ("haitian creole", "ht"),
        ("Cantonese", "yue"),
        ("haw", "haw"),
        ("xx", None),
        ("", None),
        ("en-US", None),
    ],
)
def test_normalize_language(value: str, code: str | None) -> None:
    assert normalize_language(value) == code


def test_language_name() -> None:
    assert language_name("en") == "english"
    assert language_name("zh") == "chinese"
    assert language_name("jw") == "javanese"
    assert language_name("xx") == "xx"
    assert len(LANGUAGE_NAMES) == 100
    assert all(name == name.lower() for name in LANGUAGE_NAMES.values())


# --- decode_audio ---------------------------------------------------------------------------


def wav_bytes(seconds: float, rate: int = SAMPLE_RATE, channels: int = 1, freq: float = 440.0) -> bytes:
    frames = int(seconds * rate)
    samples = bytearray()
    for i in range(frames):
        value = int(16000 * math.sin(2 * math.pi * freq * i / rate))
        samples += struct.pack("<h", value) * channels
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(samples))
    return out.getvalue()


def test_decode_empty() -> None:
    with pytest.raises(AudioDecodeError, match="empty"):
        decode_audio(b"")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decode_random_bytes(seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, 256, size=4096, dtype=np.uint8).tobytes()
    with pytest.raises(AudioDecodeError):
        decode_audio(data)


def test_decode_text_file() -> None:
    with pytest.raises(AudioDecodeError):
        decode_audio(b"this is definitely not audio, just some text\n" * 20)


def test_decode_wav_16k_mono() -> None:
    samples = decode_audio(wav_bytes(1.0))
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert samples.size == SAMPLE_RATE
    assert float(np.max(np.abs(samples))) == pytest.approx(16000 / 32768, abs=0.01)


def dominant_frequency(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def test_decode_wav_44k_stereo_resampled() -> None:
    seconds = 1.5
    samples = decode_audio(wav_bytes(seconds, rate=44_100, channels=2))
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert abs(samples.size - seconds * SAMPLE_RATE) <= 64
    # Resampled, not merely relabelled: the 440 Hz tone is still at 440 Hz at 16 kHz.
    assert dominant_frequency(samples) == pytest.approx(440.0, abs=2.0)
    assert float(np.sqrt(np.mean(samples**2))) > 0.2


def test_decode_wav_44k_mono_keeps_level() -> None:
    samples = decode_audio(wav_bytes(1.0, rate=44_100))
    assert abs(samples.size - SAMPLE_RATE) <= 64
    assert dominant_frequency(samples) == pytest.approx(440.0, abs=2.0)
    rms = float(np.sqrt(np.mean(samples[1000:-1000] ** 2)))
    assert rms == pytest.approx(16000 / 32768 / math.sqrt(2), rel=0.05)


def test_decode_stereo_downmix_same_level_as_mono() -> None:
    stereo = decode_audio(wav_bytes(1.0, channels=2, freq=440.0))
    mono = decode_audio(wav_bytes(1.0, channels=1, freq=440.0))
    assert float(np.max(np.abs(stereo))) == pytest.approx(float(np.max(np.abs(mono))), rel=0.01)


def test_decode_wav_header_only() -> None:
    with pytest.raises(AudioDecodeError):
        decode_audio(wav_bytes(0.0))


def test_decode_too_long_from_header() -> None:
    with pytest.raises(AudioTooLongError) as caught:
        decode_audio(wav_bytes(3.0), max_duration=1.0)
    assert caught.value.limit == 1.0
    assert caught.value.duration == pytest.approx(3.0, abs=0.1)


def test_decode_too_long_while_decoding() -> None:
    # Within the header check's 0.5 s grace, so the sample count has to catch it.
    with pytest.raises(AudioTooLongError) as caught:
        decode_audio(wav_bytes(1.3), max_duration=1.0)
    assert caught.value.duration > 1.0


def test_decode_within_limit() -> None:
    assert decode_audio(wav_bytes(1.0), max_duration=1.0).size == SAMPLE_RATE


# --- settings -------------------------------------------------------------------------------

BASE_YAML = """
max_upload_bytes: 1000
models:
  base:
    source: embedded:base
aliases:
  whisper-1:
    model: base
    usage: duration
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("STT_CONFIG", "STT_MAX_UPLOAD_BYTES", "STT_PORT", "STT_MODELS", "STT_ALIASES", "STT_PRELOAD_MODELS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_settings_from_yaml(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(write(tmp_path, BASE_YAML))
    assert settings.max_upload_bytes == 1000
    assert settings.models["base"].source == "embedded:base"
    assert settings.models["base"].beam_size == 5
    assert settings.aliases["whisper-1"].model == "base"
    assert settings.aliases["whisper-1"].usage == "duration"
    assert settings.port == 8000


def test_settings_alias_to_unknown_model(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, BASE_YAML + "  gpt-4o-transcribe:\n    model: large\n")
    with pytest.raises(ValidationError, match="unknown model 'large'"):
        load_settings(path)


def test_settings_preload_unknown(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="preload_models"):
        load_settings(write(tmp_path, BASE_YAML + "preload_models: [huge]\n"))
    settings = load_settings(write(tmp_path, BASE_YAML + "preload_models: [base, whisper-1]\n"))
    assert settings.preload_models == ["base", "whisper-1"]


def test_settings_unknown_key_refused(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError):
        load_settings(write(tmp_path, BASE_YAML + "no_such_setting: 1\n"))


def test_env_overrides_yaml(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STT_MAX_UPLOAD_BYTES", "2048")
    clean_env.setenv("STT_PORT", "9123")
    settings = load_settings(write(tmp_path, BASE_YAML))
    assert settings.max_upload_bytes == 2048
    assert settings.port == 9123


def test_init_kwargs_override_env(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STT_MAX_UPLOAD_BYTES", "2048")
    settings = load_settings(write(tmp_path, BASE_YAML), max_upload_bytes=4096)
    assert settings.max_upload_bytes == 4096


def test_stt_config_env_names_the_file(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STT_CONFIG", str(write(tmp_path, BASE_YAML)))
    assert load_settings().max_upload_bytes == 1000


def test_missing_config_file(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "absent.yaml")


def test_invalid_env_value(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STT_MAX_UPLOAD_BYTES", "0")
    with pytest.raises(ValidationError):
        load_settings(write(tmp_path, BASE_YAML))


def test_an_upload_is_opened_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its length is known from demuxing, and decoding reuses the same container."""
    import av

    from engines import audio as audio_module

    opened: list[object] = []
    real_open = av.open

    def counting_open(*args: object, **kwargs: object) -> object:
        opened.append(args)
        return real_open(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(av, "open", counting_open)
    upload = audio_module.AudioFile(wav_bytes(3.0), max_duration=10)
    assert upload.duration == pytest.approx(3.0, abs=0.01)
    blocks = list(upload.blocks(1.0))
    upload.close()
    assert [b.size for b in blocks] == [SAMPLE_RATE] * 3
    assert len(opened) == 1
