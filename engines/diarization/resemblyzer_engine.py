"""The fallback offline diarizer: Silero VAD, resemblyzer voice embeddings, agglomerative clustering."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from resemblyzer import VoiceEncoder
from resemblyzer.audio import wav_to_mel_spectrogram

from engines.audio import SAMPLE_RATE
from engines.diarization.clustering import (
    Matrix,
    Window,
    build_turns,
    centroids,
    cluster,
    frame_scores,
    normalize_rows,
    region_turns,
    smooth,
)
from engines.diarization.types import (
    Diarization,
    DiarizationError,
    DiarizationOptions,
    Embedding,
    Samples,
    SpeakerTurn,
)
from engines.vad import VadParams, speech_regions

HOP_SAMPLES = 160  # resemblyzer's mel frames are 10 ms apart
FRAME_SECONDS = HOP_SAMPLES / SAMPLE_RATE
# resemblyzer was trained on utterances normalised to -30 dBFS and reads a power (not log) mel
# spectrogram, so loudness reaches the embedding: every speech region is brought to that level.
TARGET_RMS = 10 ** (-30 / 20)
MAX_GAIN = 100.0  # +40 dB at most, so near-silent regions are not blown up into noise
MAX_REGION_S = 30.0  # the VAD splits longer speech, which bounds the memory of one spectrogram
MAX_WINDOWS = 6000  # ≈ 75 min of speech at the default hop; the distance matrix stays under 150 MB


@dataclass(frozen=True)
class ResemblyzerSettings:
    """Tuning of the embedded diarizer, set on espeak dialogues and real recordings (see below).

    ``threshold`` is the mean cosine distance between two groups of windows (average linkage) at
    which clustering stops merging them. Measured top merge heights: one real voice (four
    recordings, 5–35 s) 0.22–0.27, one espeak voice ≤ 0.27; the two real speakers of pyannote's
    sample part at 0.31; espeak male/female 0.47, two LibriSpeech readers 0.42. 0.30 sits between
    them with ±0.01–0.03 to spare: close voices in one recording are this engine's weak spot (the
    pyannote engine is the better choice for them). A group of fewer than ``min_cluster_windows``
    windows must stand ``small_cluster_threshold`` apart to count as a speaker: most such groups
    are laughter, noise, or windows straddling two voices.

    ``match_threshold``: a 4–5 s reference against a speaker's clustered speech scores 0.89–0.96
    for the same espeak voice and 0.91–0.97 for the same real voice; different voices ≤ 0.83
    (0.80–0.83 only for near-identical espeak variants or the two close real speakers).
    """

    window_s: float = 1.5  # embedding window
    hop_s: float = 0.75  # between windows inside one speech region
    min_cluster_window_s: float = 1.0  # shorter windows are assigned to clusters, never form them
    threshold: float = 0.3
    min_cluster_windows: int = 3  # smaller clusters survive only when further than small_cluster_threshold
    small_cluster_threshold: float = 0.4
    min_turn_s: float = 0.5  # shorter label runs inside a speech region are smoothed away
    merge_gap_s: float = 0.5  # same-speaker turns closer than this are joined
    match_threshold: float = 0.85  # known-speaker matching; see the class docstring
    # The LSTM steps through time one frame after another on small matrices: more threads barely
    # help, and on a busy machine OpenMP threads spin waiting for a descheduled sibling (measured
    # 0.4 s with one thread against 0.6–6.7 s with two for the same 26 windows).
    threads: int = 1
    vad_threshold: float = 0.35
    vad_min_silence_ms: int = 300
    vad_pad_ms: int = 60


class ResemblyzerDiarizer:
    """Offline diarization from weights that ship in packages; CPU is plenty (≈ 50× real time on 2 cores)."""

    def __init__(self, settings: ResemblyzerSettings | None = None, *, device: str = "cpu") -> None:
        """``device``: ``cpu`` or ``cuda[:n]``; ``auto`` means CPU, where this small LSTM is fast enough."""
        self.settings = settings or ResemblyzerSettings()
        self._encoder = VoiceEncoder(device=torch.device("cpu" if device == "auto" else device), verbose=False)
        self._encoder.eval()

    @property
    def name(self) -> str:
        return "resemblyzer"

    @property
    def match_threshold(self) -> float:
        return self.settings.match_threshold

    def warm_up(self) -> float:
        """Run every stage once; the first mel spectrogram JIT-compiles librosa code (~20 s). Returns seconds."""
        began = time.perf_counter()
        rng = np.random.default_rng(0)
        clip = (0.1 * rng.standard_normal(3 * SAMPLE_RATE)).astype(np.float32)
        self._speech_regions(clip)
        self.embed(clip)
        return time.perf_counter() - began

    def diarize(self, audio: Samples, options: DiarizationOptions) -> Diarization:
        """One speaker at a time (no overlap detection): ``turns`` and ``exclusive`` are the same."""
        return Diarization.single(self._turns(audio, options))

    def _turns(self, audio: Samples, options: DiarizationOptions) -> list[SpeakerTurn]:
        s = self.settings
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        regions = self._speech_regions(audio)
        if not regions:
            return []
        windows = self._windows(regions)
        embeddings = self._embed_windows(audio, regions, windows)
        long_enough = np.array([w.length * FRAME_SECONDS >= s.min_cluster_window_s for w in windows])
        if not long_enough.any():
            long_enough[:] = True  # only short utterances: cluster what there is
        lo, hi = options.bounds()
        labels = cluster(
            embeddings[long_enough],
            threshold=s.threshold,
            min_clusters=lo,
            max_clusters=hi,
            min_cluster_size=s.min_cluster_windows,
            small_cluster_threshold=s.small_cluster_threshold,
        )
        centers = centroids(embeddings[long_enough], labels)
        num_frames = regions[-1].end
        scores = frame_scores(windows, embeddings, centers, num_frames)
        min_run = round(s.min_turn_s / FRAME_SECONDS)
        pieces = []
        for region in regions:
            frame_labels = np.argmax(scores[:, region.start : region.end], axis=0).astype(np.int64)
            pieces += region_turns(smooth(frame_labels, min_run), region, FRAME_SECONDS)
        return build_turns(pieces, merge_gap=s.merge_gap_s)

    def embed(self, audio: Samples) -> Embedding:
        """Mean of the window embeddings over the clip's speech (all of it when VAD finds none)."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            raise DiarizationError("Cannot embed an empty clip.")
        regions = self._speech_regions(audio) or [Window(0, max(1, len(audio) // HOP_SAMPLES))]
        windows = self._windows(regions)
        embeddings = self._embed_windows(audio, regions, windows)
        weights = np.array([w.length for w in windows], dtype=np.float32)
        mean: Matrix = (embeddings * weights[:, None]).sum(axis=0, keepdims=True)
        unit: Embedding = normalize_rows(mean)[0]
        return unit

    def _speech_regions(self, audio: Samples) -> list[Window]:
        """Speech regions in mel frames, from the Silero VAD model that ships in faster-whisper."""
        s = self.settings
        vad = VadParams(
            threshold=s.vad_threshold,
            silence_duration_ms=s.vad_min_silence_ms,
            prefix_padding_ms=s.vad_pad_ms,
            max_chunk_seconds=MAX_REGION_S,
            min_speech_duration_ms=250,
        )
        last = len(audio) // HOP_SAMPLES
        regions = [
            Window(span.start // HOP_SAMPLES, min(last, -(-span.end // HOP_SAMPLES)))
            for span in speech_regions(audio, vad)
        ]
        return [r for r in regions if r.length > 0]

    def _windows(self, regions: list[Window]) -> list[Window]:
        """Fixed-length windows at a fixed hop inside each region; the last one ends with the region.

        On very long audio the hop grows (up to the window length, so every frame stays covered)
        to keep at most ``MAX_WINDOWS`` windows: clustering memory grows with their square.
        """
        size = round(self.settings.window_s / FRAME_SECONDS)
        hop = round(self.settings.hop_s / FRAME_SECONDS)
        speech = sum(r.length for r in regions)
        if speech / hop > MAX_WINDOWS:
            hop = min(size, int(np.ceil(speech / MAX_WINDOWS)))
        windows = []
        for region in regions:
            if region.length <= size:
                windows.append(region)
                continue
            starts = list(range(region.start, region.end - size, hop))
            if starts[-1] + size < region.end:
                starts.append(region.end - size)
            windows += [Window(start, start + size) for start in starts]
        return windows

    def _embed_windows(self, audio: Samples, regions: list[Window], windows: list[Window]) -> Matrix:
        mel = self._mel(audio, regions)
        by_length: dict[int, list[int]] = {}
        for index, window in enumerate(windows):
            by_length.setdefault(window.length, []).append(index)
        out = np.zeros((len(windows), 256), dtype=np.float32)
        # One batch per window length (nearly all windows share one), so no padding reaches the LSTM.
        # torch's OpenMP thread count is per calling thread: set it for this call, then put it back.
        previous = torch.get_num_threads()
        torch.set_num_threads(self.settings.threads)
        try:
            # no_grad, not inference_mode: with inference tensors the CPU LSTM ran up to 10× slower.
            with torch.no_grad():
                for indices in by_length.values():
                    batch = np.stack([mel[windows[i].start : windows[i].end] for i in indices])
                    vectors = self._encoder(torch.from_numpy(batch).to(self._encoder.device))
                    out[indices] = vectors.cpu().numpy()
        finally:
            torch.set_num_threads(previous)
        return out

    @staticmethod
    def _mel(audio: Samples, regions: list[Window]) -> Matrix:
        """Power mel frames at the clip's frame positions, computed region by region at -30 dBFS.

        Region by region keeps the STFT's memory bounded by the longest region (the VAD splits
        speech at 30 s), not by the file: a whole hour at once would need ~600 MB.
        """
        frames = np.zeros((regions[-1].end, 40), dtype=np.float32)
        for region in regions:
            piece = audio[region.start * HOP_SAMPLES : region.end * HOP_SAMPLES]
            rms = float(np.sqrt(np.mean(np.square(piece, dtype=np.float64)))) if piece.size else 0.0
            gain = min(MAX_GAIN, TARGET_RMS / rms) if rms > 0 else 1.0
            mel: Matrix = wav_to_mel_spectrogram(piece * np.float32(gain))
            frames[region.start : region.end] = mel[: region.length]
        return frames
