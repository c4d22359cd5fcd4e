"""Every container OpenAI lists decodes, detected from the bytes; any rate; stereo is down-mixed."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.audio import SYNTH_SENTENCE, convert, recording, reference, sox, wer

# extension -> extra ffmpeg arguments that make that container with a codec it usually holds
CONTAINERS: dict[str, tuple[str, ...]] = {
    "flac": (),
    "mp3": (),
    "mp4": ("-c:a", "aac", "-f", "mp4"),
    "mpeg": ("-c:a", "mp2", "-f", "mpeg"),
    "mpga": ("-c:a", "libmp3lame", "-f", "mp3"),
    "m4a": ("-c:a", "aac", "-f", "ipod"),
    "oga": ("-c:a", "flac", "-f", "ogg"),
    "ogg": ("-c:a", "libvorbis"),
    "wav": (),
    "webm": ("-c:a", "libopus"),
}


@pytest.fixture(scope="module")
def containers(tmp_path_factory: pytest.TempPathFactory, synth_wav: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("containers")
    return {ext: convert(synth_wav, folder / f"speech.{ext}", *args) for ext, args in CONTAINERS.items()}


@pytest.mark.parametrize("ext", list(CONTAINERS))
def test_container_as_raw_bytes(client: openai.OpenAI, containers: dict[str, Path], ext: str) -> None:
    # Raw bytes: the SDK names the part "upload" with no extension, so only the bytes tell.
    result = client.audio.transcriptions.create(model="whisper-1", file=containers[ext].read_bytes())
    assert wer(SYNTH_SENTENCE, result.text) <= 0.25, (ext, result.text)


def test_misleading_filename_is_ignored(client: openai.OpenAI, containers: dict[str, Path]) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", containers["ogg"].read_bytes(), "audio/wav")
    )
    assert wer(SYNTH_SENTENCE, result.text) <= 0.25


@pytest.mark.parametrize("rate", [8000, 22050, 48000])
def test_any_sample_rate(client: openai.OpenAI, synth_wav: Path, tmp_path: Path, rate: int) -> None:
    resampled = tmp_path / f"speech_{rate}.wav"
    sox(str(synth_wav), "-r", str(rate), str(resampled))
    result = client.audio.transcriptions.create(model="whisper-1", file=resampled)
    # Telephone band (8 kHz) costs synthetic speech its high formants; real 8 kHz speech is tested below.
    assert wer(SYNTH_SENTENCE, result.text) <= (0.4 if rate == 8000 else 0.25), result.text


def test_stereo_is_downmixed(client: openai.OpenAI, synth_wav: Path, tmp_path: Path) -> None:
    stereo = tmp_path / "stereo.flac"
    sox(str(synth_wav), "-c", "2", "-r", "44100", str(stereo))
    result = client.audio.transcriptions.create(model="whisper-1", file=stereo)
    assert wer(SYNTH_SENTENCE, result.text) <= 0.25


def test_real_44k_stereo_24bit_flac(client: openai.OpenAI) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=recording("en_jfk.flac"))
    assert wer(reference("en_jfk.flac"), result.text) <= 0.1


def test_real_two_channel_recording(client: openai.OpenAI) -> None:
    path = recording("en_stereo_2ch_librispeech.wav")
    text = client.audio.transcriptions.create(model="whisper-1", file=path).text.lower()
    # The channels overlap; Whisper follows the louder speaker of the down-mix.
    assert any(w in text for w in ("wizard", "curtain", "complain")), text


@pytest.mark.parametrize("speaking", ["left", "right"])
def test_either_channel_alone_is_heard(client: openai.OpenAI, synth_wav: Path, tmp_path: Path, speaking: str) -> None:
    """Speech on one channel and silence on the other: the down-mix keeps it, whichever side."""
    stereo = tmp_path / f"{speaking}.wav"
    mix = "c0=c0|c1=0*c0" if speaking == "left" else "c0=0*c0|c1=c0"
    convert(synth_wav, stereo, "-af", f"pan=stereo|{mix}")
    result = client.audio.transcriptions.create(model="whisper-1", file=stereo)
    assert wer(SYNTH_SENTENCE, result.text) <= 0.25, result.text


@pytest.mark.parametrize("name", ["en_librispeech_1272-128104-0000.wav", "en_osr_harvard72_8k.wav", "en_jfk.flac"])
def test_real_recordings_word_error_rate(client: openai.OpenAI, name: str) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=recording(name))
    assert wer(reference(name), result.text) <= 0.2, result.text
