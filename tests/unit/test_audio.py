import io

import numpy as np
import pytest
import soundfile as sf

from callscribe.audio import (
    PACK_FORMATS,
    TARGET_SR,
    WAV_MAX_BYTES,
    DecodeError,
    at_16k,
    decode,
    decode_pack,
    encode_pack,
    encode_wav,
    pack_format_for,
)
from callscribe.config import pack_format


def _wav(x: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_decoded_at_the_source_rate_and_resampled_to_16k_with_the_right_duration(rate):
    t = np.arange(rate * 2) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    d = decode(_wav(x, rate), "tone.wav")
    assert d.source_rate == rate and d.n_channels == 1
    assert d.channels[0].dtype == np.int16 and len(d.channels[0]) == 2 * rate
    assert d.duration_s == pytest.approx(2.0)
    (y,) = at_16k(d)
    assert y.dtype == np.float32 and abs(len(y) - 2 * TARGET_SR) <= 2
    # The same tone, not just the same length: compare with the ideal 16 kHz sine (edges aside).
    ideal = 0.3 * np.sin(2 * np.pi * 440 * np.arange(len(y)) / TARGET_SR)
    assert np.max(np.abs(y[800:-800] - ideal[800:-800])) < 0.01


def test_stereo_mulaw_keeps_channels_apart():
    rate = 8000
    left = np.zeros(rate, np.float32)
    right = (0.5 * np.sin(np.arange(rate) / 5)).astype(np.float32)
    d = decode(_wav(np.stack([left, right], axis=1), rate, "ULAW"), "call.wav")
    assert d.n_channels == 2 and d.codec == "ULAW"
    assert np.abs(d.channels[0]).max() < 0.01 * 32768 < np.abs(d.channels[1]).max()


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE", "PCM_24", "PCM_32", "PCM_U8"])
def test_every_wav_sample_format_decodes_at_its_level(subtype):
    """libsndfile reads float samples as integers without scaling them (0.5 -> 0): a float WAV
    must not come out as near-silence, which the chunker would find no speech in."""
    rate = 8000
    t = np.arange(rate) / rate
    x = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    x[100] = 1.5  # float files can go past full scale: clipped, not wrapped
    x[200] = -1.5
    d = decode(_wav(x, rate, subtype), f"call-{subtype}.wav")
    y = d.channels[0]
    tolerance = 300 if subtype == "PCM_U8" else 2  # 8-bit samples are coarse
    assert y.dtype == np.int16
    assert y[100] >= 32767 - tolerance and y[200] == -32768
    ok = np.ones(rate, bool)
    ok[[100, 200]] = False
    assert np.max(np.abs(y[ok].astype(np.int32) - np.round(x[ok] * 32768))) <= tolerance


def test_non_finite_samples_of_a_float_wav_decode_as_silence_not_garbage():
    x = np.full(8000, 0.25, np.float32)
    x[10], x[20], x[30] = np.nan, np.inf, -np.inf
    y = decode(_wav(x, 8000, "FLOAT"), "nan.wav").channels[0]
    assert y[10] == 0 and y[20] == 32767 and y[30] == -32768 and y[40] == 8192


def _declaring(wav: bytes, data_size: int) -> bytes:
    """The WAV as a recorder leaves it when it stops before finishing its header: the data chunk's
    and the RIFF sizes of the moment it last wrote them (0 at the start)."""
    import struct

    at = wav.find(b"data")
    riff = 0 if data_size == 0 else at + 8 + data_size - 8
    return wav[:4] + struct.pack("<I", riff) + wav[8 : at + 4] + struct.pack("<I", data_size) + wav[at + 8 :]


def _riff(fmt_tag: int, bits: int, payload: bytes, after: bytes = b"", pad: bool = True) -> bytes:
    """A finished mono 8 kHz RIFF WAVE file: its sizes agree with its length."""
    import struct

    block = bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, 1, 8000, 8000 * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload))
    body += payload + (b"\0" if pad and len(payload) % 2 else b"") + after
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("declared", [0, "tenth"])
def test_a_wav_whose_header_declares_less_audio_than_it_holds_is_decoded_whole_and_says_so(declared):
    rate = 8000
    x = (0.3 * np.sin(np.arange(rate * 12) / 7)).astype(np.float32)
    good = _wav(x, rate)
    whole = decode(good, "call.wav")
    size = 0 if declared == 0 else len(x) * 2 // 10
    d = decode(_declaring(good, size), "call.wav")
    assert d.duration_s == pytest.approx(whole.duration_s)
    assert np.array_equal(d.channels[0], whole.channels[0])
    assert d.warning and f"declares {size} bytes of audio" in d.warning and "decoded all" in d.warning


def test_chunks_after_the_audio_or_a_little_padding_are_not_taken_for_audio():
    import struct

    rate = 8000
    good = _wav((0.3 * np.sin(np.arange(rate * 3) / 7)).astype(np.float32), rate)
    info = b"LIST" + struct.pack("<I", 20) + b"INFOISFT" + struct.pack("<I", 7) + b"callsc\0" + b"\0"
    with_chunk = good[:4] + struct.pack("<I", len(good) - 8 + len(info)) + good[8:] + info
    padded = good + b"\0" * 100  # less than a second of whatever: left alone
    for data in (with_chunk, padded):
        d = decode(data, "call.wav")
        assert d.warning is None and d.duration_s == pytest.approx(3.0)


def test_a_finished_wav_with_bytes_after_its_audio_is_not_repaired():
    """Whatever follows the audio of a file whose RIFF size agrees with its length (a raw ID3 tag, a
    chunk written without the pad byte, a chunk that miscounts its own size) was written on
    purpose, not audio a header failed to declare."""
    import struct

    rng = np.random.default_rng(0)
    pcm = np.zeros(8000 * 5, "<i2").tobytes()
    id3 = b"ID3\x03\x00\x00\x00\x02\x38\x40" + rng.integers(0, 256, 40000, dtype=np.uint8).tobytes()
    info = b"INFO" + b"ICMT" + struct.pack("<I", 12000) + b"A" * 12000
    miscounted = b"LIST" + struct.pack("<I", len(info) + 8) + info
    cases = {
        "raw ID3 tag": _riff(1, 16, pcm, id3),
        "chunk miscounting its size": _riff(1, 16, pcm, miscounted),
        "odd mu-law data without its pad byte": _riff(7, 8, b"\xff" * 40001, b"LIST" + struct.pack("<I", len(info))
                                                      + info, pad=False),
    }
    for name, data in cases.items():
        d = decode(data, f"{name}.wav")
        assert d.duration_s == pytest.approx(5.0, abs=0.01), name
        assert d.warning is None or d.warning.endswith("belong to no chunk: not decoded"), (name, d.warning)
    # A finished header that declares a tenth of what follows: the rest is not decoded, and it says so.
    lying = _riff(1, 16, pcm[: len(pcm) // 10], pcm[len(pcm) // 10 :])
    d = decode(lying, "lying.wav")
    assert d.duration_s == pytest.approx(0.5) and d.warning == "72000 bytes after the declared audio belong to no " \
        "chunk: not decoded"


@pytest.mark.parametrize("at", [0.33, 0.7])
def test_a_damaged_mp3_keeps_the_seconds_before_the_damage(at):
    """The decoder fails a whole read that reaches the damage: the seconds before it, in that read
    too, are kept (a call damaged 6 s in was quarantined whole), exactly as decoded undamaged."""
    from callscribe.samples import sample_dir

    mp3 = (sample_dir() / "call-0002.mp3").read_bytes()  # 20 s, mono
    cut = int(len(mp3) * at)
    damaged = mp3[:cut] + bytes(range(256)) * 20 + mp3[cut + 5120 :]
    whole = decode(mp3, "call.mp3").channels[0]
    d = decode(damaged, "call.mp3")
    assert d.warning and "decoded the first" in d.warning
    kept = d.channels[0]
    assert 0.6 * at * 19.6 <= d.duration_s <= at * 19.6 + 1
    assert np.array_equal(kept, whole[: len(kept)])


def test_random_bytes_are_refused_in_words_about_the_bytes_not_about_files():
    """Some random bytes start like an MPEG frame; libsndfile's probe then blames the file system."""
    reasons = set()
    for seed in range(300):
        data = np.random.default_rng(seed).integers(0, 256, 20000, dtype=np.uint8).tobytes()
        with pytest.raises(DecodeError) as info:
            decode(data, "bad.wav")
        reasons.add(str(info.value))
    assert reasons and all("Format not recognised" in r for r in reasons), reasons


@pytest.mark.parametrize("data", [b"", b"this is not audio at all" * 10, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_undecodable_bytes_raise_a_clear_error(data):
    with pytest.raises(DecodeError, match="bad.wav"):
        decode(data, "bad.wav")


@pytest.mark.parametrize("fmt", PACK_FORMATS)
@pytest.mark.parametrize("rate", [8000, 16000])
def test_a_pack_round_trips_16_bit_exact_in_either_format(fmt, rate):
    x = np.linspace(-32768, 32767, 5000).astype(np.int16)
    data = encode_pack(x, rate, fmt)
    assert data[:4] == {"wav": b"RIFF", "flac": b"fLaC"}[fmt]
    assert sf.info(io.BytesIO(data)).samplerate == rate
    assert np.array_equal(decode_pack(data, "int16"), x)
    assert np.max(np.abs(decode_pack(data) - x / 32768.0)) < 1e-6  # float32 reads scale by 1/32768


def test_a_wav_pack_is_the_samples_behind_a_44_byte_header():
    x = np.arange(-500, 500, dtype=np.int16)
    data = encode_wav(x, 8000)
    assert len(data) == 44 + x.nbytes and np.array_equal(np.frombuffer(data[44:], "<i2"), x)


def test_a_pack_too_long_for_a_riff_file_is_written_as_flac():
    huge = np.broadcast_to(np.int16(0), (WAV_MAX_BYTES // 2 + 1,))  # a view: no memory behind it
    assert pack_format_for(huge, "wav") == "flac" and pack_format_for(huge[:1000], "wav") == "wav"
    assert pack_format_for(huge, "flac") == "flac"
    with pytest.raises(ValueError, match="do not fit"):
        encode_wav(huge, 8000)


def test_the_pack_format_setting(monkeypatch):
    monkeypatch.delenv("CALLSCRIBE_PACK_FORMAT", raising=False)
    assert pack_format() == "wav"
    monkeypatch.setenv("CALLSCRIBE_PACK_FORMAT", " FLAC ")
    assert pack_format() == "flac"
    assert pack_format("wav") == "wav"  # asked for: the setting does not matter
    monkeypatch.setenv("CALLSCRIBE_PACK_FORMAT", "ogg")
    with pytest.raises(ValueError, match="CALLSCRIBE_PACK_FORMAT='ogg'"):
        pack_format()
    with pytest.raises(ValueError, match="'mp3'"):
        pack_format("mp3")
