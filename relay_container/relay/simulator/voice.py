"""The simulator's audio: a synthesized voice to answer with, and loudness for its VAD.

Both PCM16 24 kHz mono little-endian, OpenAI Realtime's ``audio/pcm``.
"""

from __future__ import annotations

import math
import sys
from array import array
from functools import lru_cache
from typing import Final

SAMPLE_RATE: Final = 24_000
BYTES_PER_MS: Final = SAMPLE_RATE * 2 // 1000

#: Formant frequencies (Hz) of a few vowels, for a voice that sounds like talking.
VOWELS: Final = ((730, 1090, 2440), (530, 1840, 2480), (570, 840, 2410), (300, 870, 2240))
WAVETABLE_SIZE: Final = 1024


@lru_cache(maxsize=len(VOWELS))
def _vowel_wavetable(vowel: int) -> tuple[float, ...]:
    """One period of a 120 Hz glottal-ish tone whose harmonics are shaped by formants."""
    formants = VOWELS[vowel]
    f0 = 120.0
    harmonics = [
        (h, sum(1.0 / (1.0 + ((h * f0 - f) / 90.0) ** 2) for f in formants) / h**0.5)
        for h in range(1, int(3500 / f0))
    ]
    table = [
        sum(a * math.sin(2 * math.pi * h * i / WAVETABLE_SIZE) for h, a in harmonics)
        for i in range(WAVETABLE_SIZE)
    ]
    peak = max(abs(v) for v in table)
    return tuple(v / peak for v in table)


@lru_cache(maxsize=8)
def synthesize_reply(duration_ms: int) -> bytes:
    """PCM16 24 kHz of a vowel-like voice: 250 ms syllables with pitch contour and gaps.

    Deterministic, so tests can compare what was played with what was sent.
    """
    samples = array("h")
    syllable = SAMPLE_RATE // 4
    phase = 0.0
    for n in range(SAMPLE_RATE * duration_ms // 1000):
        index, at = divmod(n, syllable)
        table = _vowel_wavetable(index % len(VOWELS))
        # Pitch falls across a phrase of 8 syllables and wobbles a little within each.
        f0 = 140.0 - 3.0 * (index % 8) + 8.0 * math.sin(2 * math.pi * at / syllable)
        phase = (phase + f0 * WAVETABLE_SIZE / SAMPLE_RATE) % WAVETABLE_SIZE
        # Raised-cosine syllable envelope over 80 % of the syllable, then a short gap.
        x = at / (0.8 * syllable)
        envelope = 0.5 - 0.5 * math.cos(2 * math.pi * x) if x < 1.0 else 0.0
        samples.append(int(9000 * envelope * table[int(phase)]))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def rms_dbfs(pcm: bytes) -> float:
    """Loudness of PCM16 little-endian audio in dB relative to full scale."""
    samples = array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return -math.inf
    mean_square = sum(s * s for s in samples) / len(samples)
    return 10 * math.log10(mean_square / 32768**2) if mean_square else -math.inf
