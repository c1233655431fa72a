"""Decoding and resampling: any supported file in, int16 channels at the source rate out.

Channels stay at the source rate (8 kHz for most calls) until chunking has found the
speech: only the speech is resampled to 16 kHz, about half of a two-party channel.
"""

from __future__ import annotations

import io
import re
import wave
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from callscribe.errors import plain

TARGET_SR = 16_000
# Extensions the pipeline treats as recordings; anything else is quarantined at discovery.
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".opus")


class DecodeError(ValueError):
    """The bytes are not audio we can decode; retrying will not help."""


@dataclass(frozen=True)
class Decoded:
    channels: list[np.ndarray]  # one int16 array per channel, at source_rate
    source_rate: int
    duration_s: float
    codec: str
    warning: str | None = None  # set when only part of the file could be decoded

    @property
    def n_channels(self) -> int:
        return len(self.channels)


def decode(data: bytes, name: str = "<bytes>") -> Decoded:
    """Decode a whole recording into int16 channels at its own sample rate."""
    if not data:
        raise DecodeError(f"{name}: empty object (0 bytes)")
    blocks: list[np.ndarray] = []
    warning = None
    undeclared = _undeclared_audio(data)
    if undeclared is not None:
        data, warning = undeclared
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, codec = f.samplerate, f.subtype
            short = _truncation(f.extra_info)
            # libsndfile reads float samples as integers unscaled (0.5 -> 0): read those as floats.
            read = _read_float_as_int16 if codec in FLOAT_SUBTYPES else _read_int16
            # Block by block, so a file damaged part-way still yields what comes before.
            while True:
                try:
                    block = read(f, rate * 10)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    blocks += _salvage(data, read, sum(len(b) for b in blocks), rate)
                    if not blocks:
                        raise
                    warning = f"decoded the first {sum(len(b) for b in blocks) / rate:.1f} s only ({plain(str(exc))})"
                    break
                if len(block) == 0:
                    break
                blocks.append(block)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        reason = re.sub(r"^Error opening the file: ", "", plain(str(exc)))
        # libsndfile's words when a probe (MPEG, usually) gives up on bytes that only looked like audio.
        reason = reason.replace("File does not exist or is not a regular file (possibly a pipe?).",
                                "Format not recognised (no decoder could read it).")
        raise DecodeError(f"{name}: cannot decode audio ({reason})") from exc
    if rate <= 0 or not blocks or blocks[0].shape[1] == 0:
        raise DecodeError(f"{name}: no audio in the file")
    frames = np.concatenate(blocks)
    duration = frames.shape[0] / rate
    if short and warning is None:
        warning = f"file is truncated: {short}; decoded the {duration:.1f} s present"
    channels = [np.ascontiguousarray(frames[:, c]) for c in range(frames.shape[1])]
    return Decoded(channels, rate, duration, codec, warning)


FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


def _read_int16(f: sf.SoundFile, frames: int) -> np.ndarray:
    return f.read(frames, dtype="int16", always_2d=True)


def _read_float_as_int16(f: sf.SoundFile, frames: int) -> np.ndarray:
    """Float samples scaled to int16; past full scale clipped, NaN as silence."""
    x = f.read(frames, dtype="float32", always_2d=True)
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0) * 32768.0
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def _salvage(data: bytes, read, good: int, rate: int) -> list[np.ndarray]:
    """The whole seconds between the last good read (``good`` frames in) and the damage that failed
    the read after it: decoded again from the start, so they are exactly what an undamaged file
    gives (a seek into an MP3 can land a few frames off), then a second at a time."""
    out: list[np.ndarray] = []
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            while good > 0:
                block = read(f, min(good, rate * 10))
                if len(block) == 0:
                    return []
                good -= len(block)
            while len(block := read(f, rate)):
                out.append(block)
    except (sf.LibsndfileError, RuntimeError):
        pass
    return out


def _undeclared_audio(data: bytes) -> tuple[bytes, str] | None:
    """A RIFF WAVE file with a second or more after its declared audio that no chunk accounts for.

    Its header unfinished (the RIFF size does not match the length, or the data chunk declares 0:
    a recorder that crashed or streamed, having written the sizes of an earlier moment or none),
    the rest is audio: returns the file with the data chunk declaring all of it (whole sample
    frames; libsndfile reads only what is declared, so 0 would quarantine a whole call) and a
    warning. Its header finished, the bytes were written on purpose (a raw tag, a chunk that
    miscounts itself): returns the file as it is and a warning that they were not decoded.
    None for any other file."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    finished = int.from_bytes(data[4:8], "little") + 8 in (len(data), len(data) - 1)
    at, block, rate = 12, 0, 0
    while at + 8 <= len(data):
        cid, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        if cid == b"fmt " and size >= 16:
            rate = int.from_bytes(data[at + 12 : at + 16], "little")
            block = int.from_bytes(data[at + 20 : at + 22], "little")
        if cid == b"data":
            start = at + 8
            held = len(data) - start
            if (size >= held or block <= 0 or rate <= 0 or held - size < rate * block
                    or _chunk_at(data, start + size + (size & 1)) or _chunk_at(data, start + size)):
                return None
            if finished and size:
                return data, f"{held - size} bytes after the declared audio belong to no chunk: not decoded"
            held -= held % block
            patched = bytearray(data[: start + held])
            patched[4:8] = min(len(patched) - 8, 0xFFFF_FFFF).to_bytes(4, "little")
            patched[at + 4 : at + 8] = min(held, 0xFFFF_FFFF).to_bytes(4, "little")
            return bytes(patched), (f"the header declares {size} bytes of audio, the file holds {held}: decoded "
                                    f"all of it (a recorder that did not finish its header)")
        if size > len(data):
            return None
        at += 8 + size + (size & 1)
    return None


def _chunk_at(data: bytes, at: int) -> bool:
    """Whether a RIFF chunk (a printable four-letter id and a size that fits) starts at ``at``."""
    if at + 8 > len(data):
        return False
    cid, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
    return all(32 <= b < 127 for b in cid) and at + 8 + size <= len(data)


def _truncation(info: str) -> str | None:
    """What libsndfile's header log says is missing ("data : 683696 (should be 341819)"), if anything."""
    m = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", info, re.MULTILINE)
    if m and int(m.group(2)) < int(m.group(1)):
        return f"the header declares {int(m.group(1))} bytes of audio, {int(m.group(2))} are there"
    return None


def resample(x: np.ndarray, rate: int, target: int = TARGET_SR) -> np.ndarray:
    """Resample one channel; int16 in gives int16 out (no float copy of the whole channel)."""
    if rate == target:
        return x
    # Medium quality: its passband reaches past a telephone channel's 3.4 kHz, at 60% of
    # the cost of "HQ" (measured by `make bench`).
    return soxr.resample(x, rate, target, quality="MQ")


def as_float(x: np.ndarray) -> np.ndarray:
    """Chunks travel as int16 (half the memory); engines take float32 in [-1, 1]."""
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    return x.astype(np.float32, copy=False)


def at_16k(decoded: Decoded) -> list[np.ndarray]:
    """Every channel of a recording, whole, as float32 in [-1, 1] at 16 kHz."""
    return [as_float(resample(x, decoded.source_rate)) for x in decoded.channels]


# Speech packs (one per recording, read once by the worker, swept after retention) are
# written as plain 16-bit WAV by default: FLAC's fastest level costs about 0.3 CPU s per hour
# of 8 kHz speech, a quarter of the chunk task on an MP3 call, to save 40-50 % of the bytes
# of a short-lived file (docs/benchmarks.md, "Speech packs"). CALLSCRIBE_PACK_FORMAT=flac
# trades that CPU back for bytes.
PACK_FORMATS = ("wav", "flac")
# A RIFF file counts its bytes in 32 bits: a longer pack goes to FLAC, which has no such limit.
WAV_MAX_BYTES = 0xFFFF_FFFF - 36


def pack_format_for(samples: np.ndarray, wanted: str) -> str:
    """The format a pack of ``samples`` (int16, one channel) is written in: ``wanted`` (one of
    PACK_FORMATS, checked by config.pack_format), unless a WAV could not hold it."""
    return "flac" if wanted == "wav" and samples.nbytes > WAV_MAX_BYTES else wanted


def encode_pack(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """One channel of int16 samples as a pack file: ``wav`` or ``flac`` (see pack_format_for)."""
    return encode_wav(samples, rate) if fmt == "wav" else encode_flac(samples, rate)


def encode_wav(samples: np.ndarray, rate: int = TARGET_SR) -> bytes:
    """16-bit mono WAV. The stdlib writer takes the samples as one buffer: no per-block
    callbacks, as libsndfile makes through a Python file object."""
    if samples.nbytes > WAV_MAX_BYTES:
        raise ValueError(f"{samples.nbytes} bytes of samples do not fit in a WAV file")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(samples, dtype="<i2"))
    return buf.getvalue()


def encode_flac(samples: np.ndarray, rate: int = TARGET_SR) -> bytes:
    buf = io.BytesIO()
    # Fastest FLAC level: packs are short-lived and CPU, not bytes, limits chunking.
    sf.write(buf, samples, rate, format="FLAC", subtype="PCM_16", compression_level=0.0)
    return buf.getvalue()


def decode_pack(data: bytes, dtype: str = "float32") -> np.ndarray:
    """A pack's samples, whichever of PACK_FORMATS it was written in (told by its content)."""
    x, _ = sf.read(io.BytesIO(data), dtype=dtype)
    return x
