"""Per-channel transcription for the service: which mode a request gets, and the channel run it needs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from itertools import chain
from typing import Literal

from app.serving.errors import InvalidInput
from app.serving.protocol import AudioRequest, ResponseFormat
from app.settings import Settings
from engines.audio import AudioFile
from engines.channels import ChannelRun, channel_names, channel_voice, check_channels, split_blocks
from engines.diarization.types import Diarizer, Embedding
from engines.longform import LongFormConfig, LongFormRun
from engines.types import DecodeOptions, Transcriber

log = logging.getLogger(__name__)

ChannelMode = Literal["mix", "separate", "auto"]
# Blocks decoded ahead of the recogniser: small enough to keep memory flat, large enough to be cheap.
# With channels, the first block decides `auto`, and each channel's voice is taken from it for known speakers.
DECODE_BLOCK_SECONDS = 60.0


def channel_mode(request: AudioRequest, settings: Settings) -> ChannelMode:
    """The request's ``channels`` or the server's default; translations always mix."""
    if request.task != "transcribe":
        return "mix"
    mode: ChannelMode = request.channels or settings.default_channels
    return mode


def wants_separate(request: AudioRequest, settings: Settings, audio: AudioFile) -> bool:
    """Whether this upload is transcribed channel by channel (blocking: `auto` decodes the first block)."""
    mode = channel_mode(request, settings)
    if mode == "mix" or audio.channel_count < 2:
        return False
    if mode == "separate":
        return True
    if request.logprobs:  # auto never turns a request it cannot serve per channel into an error
        return False
    first = next(audio.channel_blocks(DECODE_BLOCK_SECONDS), None)
    if first is None:
        return False
    check = check_channels(first)
    log.info("channels=auto: %s (%s)", "one speaker per channel" if check.separate else "mixed down", check.reason)
    return check.separate


def build_channel_run(
    request: AudioRequest,
    audio: AudioFile,
    engine: Transcriber,
    options: DecodeOptions,
    config: LongFormConfig,
    cancel: threading.Event,
    *,
    diarizer: Callable[[], Diarizer] | None,
    references: Callable[[Diarizer], Mapping[str, Embedding]],
    threshold: float | None,
) -> ChannelRun:
    """One run per channel over a single decoding pass; channels named A, B, … or by known speakers' voices.

    ``diarizer`` is only called when the request names known speakers (their voices are matched
    against each channel's voice, from the channel's first block).
    """
    count = audio.channel_count
    blocks = audio.channel_blocks(DECODE_BLOCK_SECONDS)
    names = channel_names(channels=count, threshold=0.0)
    if request.known_speakers:
        if diarizer is None:
            raise InvalidInput("known_speaker_names", "Known speakers need the diarizer, which is not available.")
        model = diarizer()
        first = next(blocks, None)
        if first is not None:
            blocks = chain([first], blocks)
            voices = {c: v for c in range(count) if (v := channel_voice(model, first[c])) is not None}
            limit = model.match_threshold if threshold is None else threshold
            names = channel_names(voices, references(model), channels=count, threshold=limit)
    runs = [
        LongFormRun(engine, options, channel_blocks, config, cancel) for channel_blocks in split_blocks(blocks, count)
    ]
    speakers = request.response_format is not ResponseFormat.VERBOSE_JSON
    return ChannelRun(runs, names, speakers=speakers)
