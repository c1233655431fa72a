"""Who speaks when on a mono recording, from what chunking already has: its 30 ms frames and speech runs.

Stereo calls need none of this (each party has a channel). On a mono call the speech runs
that the VAD found are cut into units of at most ``unit_s`` (a pause always ends a unit),
each unit gets a voice print, the units are clustered into at most ``max_speakers``
voices, and a Viterbi pass over the units in time order smooths the labels: a speaker
change costs more inside unbroken speech than at a pause.

The voice print is deliberately cheap, so that it costs a few percent of chunking (the
budget, measured in docs/benchmarks.md): the loudest speech frame of every ``block`` is analysed, at
8 kHz whatever the source rate, with one 256-point FFT for the spectrum (12 mel cepstral
coefficients: vocal tract, spectral tilt) and one inverse FFT of the same power spectrum
for the pitch (autocorrelation, corrected for the window); a unit's print is the mean
cepstrum and the median log pitch of its voiced frames.

Whether there is a second voice at all is decided on the clusters: their centres must lie
``min_distance`` apart (Mahalanobis, pooled within-cluster spread) and the smaller one
must hold at least ``min_speaker_s`` of speech; otherwise the recording has one speaker.
Speakers are numbered by when they first speak (0 speaks first).

This is not a neural speaker embedding: it separates voices that differ in pitch or
timbre (a man and a woman, two different voices on one line) and will confuse two similar
voices. The production option with a neural model is described in docs/diarization.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANALYSIS_RATE = 8000
FFT = 256
N_MELS = 20
N_CEPS = 12
F0_RANGE = (70.0, 400.0)  # Hz: the lags searched for a pitch period
VOICED = 0.45  # normalised autocorrelation peak above which a frame is voiced


@dataclass(frozen=True)
class DiarizationParams:
    max_speakers: int = 2  # the hint: a call has two parties
    unit_s: float = 1.5  # longest unit of speech given one label
    join_s: float = 0.3  # speech runs at most this far apart form one stretch of unbroken speech
    block: int = 12  # the loudest frame of each this many speech frames is analysed (one per 0.36 s)
    min_speaker_s: float = 1.5  # a voice with less speech than this is not a speaker
    min_distance: float = 5.0  # cluster centres at least this far apart (pooled spread) to count as two voices
    change_at_pause: float = 4.0  # cost of a speaker change at a pause (a log-likelihood, per unit of evidence)
    change_in_speech: float = 20.0  # cost of a change between two units of unbroken speech
    pitch_weight: float = 4.0  # the pitch counts as this many cepstral coefficients


DEFAULT_DIARIZATION = DiarizationParams()


@dataclass(frozen=True)
class Diarization:
    n_speakers: int  # 0 when there is no speech
    turns: tuple[tuple[int, int, int], ...]  # (first frame, end frame, speaker), in time order, no overlap

    def speaker_regions(self, speaker: int) -> list[tuple[int, int]]:
        return [(a, b) for a, b, s in self.turns if s == speaker]


# ---------------------------------------------------------------- the voice print


def _mel_filterbank() -> np.ndarray:
    """(FFT//2+1, N_MELS) triangular filters from 100 Hz to 3.8 kHz, evenly spaced on the mel scale."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(100.0), mel(3800.0), N_MELS + 2))
    bins = np.arange(FFT // 2 + 1) * ANALYSIS_RATE / FFT
    fb = np.zeros((len(bins), N_MELS), dtype=np.float32)
    for j in range(N_MELS):
        lo, mid, hi = edges[j : j + 3]
        fb[:, j] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0.0, None)
    return fb


def _dct_matrix() -> np.ndarray:
    """(N_MELS, N_CEPS) DCT-II basis without the 0th (loudness) coefficient."""
    k = np.arange(1, N_CEPS + 1)
    n = np.arange(N_MELS) + 0.5
    return np.cos(np.pi * np.outer(n, k) / N_MELS).astype(np.float32)


def _sparse(fb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filterbank as (bins, weights, first index per filter), filter by filter: each filter
    touches a few bins, and a dense product would be a BLAS call whose idle threads spin on
    the CPU for longer than the arithmetic takes (the chunk stage is single-threaded)."""
    cols, vals, starts = [], [], []
    for j in range(fb.shape[1]):
        nz = np.flatnonzero(fb[:, j])
        starts.append(len(cols))
        cols.extend(nz.tolist())
        vals.extend(fb[nz, j].tolist())
    return np.array(cols), np.array(vals, dtype=np.float32), np.array(starts)


_WINDOW_LEN = ANALYSIS_RATE * 30 // 1000
_WINDOW = np.hanning(_WINDOW_LEN).astype(np.float32)
_FB = _mel_filterbank()
_FB_BINS, _FB_WEIGHTS, _FB_STARTS = _sparse(_FB)
_DCT = _dct_matrix()
# The Hann window's own autocorrelation: dividing by it undoes the window's taper, so a
# long pitch period (a low voice) is not penalised against its octave (Boersma, 1993).
_WIN_AC = np.fft.irfft(np.abs(np.fft.rfft(_WINDOW, FFT)) ** 2, FFT)
_LAGS = np.arange(int(ANALYSIS_RATE / F0_RANGE[1]), int(ANALYSIS_RATE / F0_RANGE[0]) + 1)
_WIN_AC_LAGS = (_WIN_AC[_LAGS] / _WIN_AC[0]).astype(np.float32)


def frame_features(frames: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per int16 frame (one per row, 30 ms at ``rate``): N_CEPS cepstral coefficients, and the
    log pitch (NaN where the frame is not voiced)."""
    if len(frames) == 0:
        return np.zeros((0, N_CEPS), np.float32), np.zeros(0, np.float32)
    step = max(1, rate // ANALYSIS_RATE)
    x = frames.astype(np.float32)
    if step > 1:  # the mean of each group of samples: a crude low-pass, enough for a print
        x = x[:, : _WINDOW_LEN * step].reshape(len(x), _WINDOW_LEN, step).mean(axis=2)
    x = x[:, :_WINDOW_LEN]
    x -= x.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(x * _WINDOW, FFT)
    power = (spec.real * spec.real + spec.imag * spec.imag).astype(np.float32)
    mel = np.add.reduceat(power[:, _FB_BINS] * _FB_WEIGHTS, _FB_STARTS, axis=1)
    ceps = np.einsum("fm,mc->fc", np.log(mel + 1.0), _DCT)  # einsum's own loop: no BLAS threads
    ac = np.fft.irfft(power, FFT)
    norm = ac[:, _LAGS] / np.maximum(ac[:, :1], 1e-9) / _WIN_AC_LAGS
    best = np.argmax(norm, axis=1)
    voiced = norm[np.arange(len(norm)), best] > VOICED
    logf0 = np.where(voiced, np.log(ANALYSIS_RATE / _LAGS[best]), np.nan).astype(np.float32)
    return ceps.astype(np.float32), logf0


# ---------------------------------------------------------------- units


def units_of(regions: list[tuple[int, int]], join: int, max_len: int) -> np.ndarray:
    """Speech runs (frames) joined across gaps up to ``join`` frames, then cut evenly into units
    of at most max_len frames: rows of (start, end, follows_pause), follows_pause 0 when the
    unit continues the previous one's speech."""
    r = np.asarray(regions, dtype=np.int64).reshape(-1, 2)
    keep = np.concatenate(([True], r[1:, 0] - r[:-1, 1] > join))
    starts = r[keep, 0]
    ends = np.concatenate((r[np.flatnonzero(keep)[1:] - 1, 1], r[-1:, 1]))
    pieces = -(-(ends - starts) // max_len)
    owner = np.repeat(np.arange(len(starts)), pieces)
    k = np.arange(len(owner)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    length = (ends - starts)[owner]
    a = starts[owner] + (k * length) // pieces[owner]
    b = starts[owner] + ((k + 1) * length) // pieces[owner]
    return np.column_stack([a, b, k == 0])


def unit_prints(frames: np.ndarray, rate: int, units: np.ndarray, energy: np.ndarray, block: int,
                pitch_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's print (mean cepstrum, mean log pitch of its voiced analysed frames), standardised,
    and its weight (frames analysed; 0: no print). The frames analysed are the loudest of each
    ``block`` consecutive speech frames: vowels, where pitch and timbre show best."""
    lengths = units[:, 1] - units[:, 0]
    idx = np.repeat(units[:, 0] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    owner = np.repeat(np.arange(len(units)), lengths)
    n = len(idx) // block * block
    e = energy[idx[:n]].reshape(-1, block)
    pick = np.arange(0, n, block) + np.argmax(e, axis=1)
    if n < len(idx):  # the tail, shorter than a block
        pick = np.append(pick, n + int(np.argmax(energy[idx[n:]])))
    sel, who = idx[pick], owner[pick]
    ceps, logf0 = frame_features(frames[sel], rate)
    bounds = np.flatnonzero(np.diff(np.concatenate(([-1], who))))  # who is sorted: runs per unit
    units_hit = who[bounds]
    counts = np.zeros(len(units))
    counts[units_hit] = np.diff(np.append(bounds, len(who)))
    feats = np.zeros((len(units), N_CEPS + 1))
    feats[units_hit, :N_CEPS] = np.add.reduceat(ceps, bounds, axis=0) / counts[units_hit, None]
    voiced = ~np.isnan(logf0)
    f0_sum = np.add.reduceat(np.where(voiced, logf0, 0.0), bounds)
    f0_n = np.add.reduceat(voiced.astype(np.float64), bounds)
    pitch = np.full(len(units), np.nan)
    pitch[units_hit] = np.where(f0_n > 0, f0_sum / np.maximum(f0_n, 1), np.nan)
    fill = np.nanmedian(pitch) if np.isfinite(pitch).any() else 0.0
    feats[:, N_CEPS] = np.where(np.isnan(pitch), fill, pitch)
    weights = counts
    # Standardise each dimension over the units that have a print (weighted), pitch weighted up.
    w = weights / max(weights.sum(), 1e-9)
    mu = w @ feats
    sd = np.sqrt(w @ (feats - mu) ** 2) + 1e-6
    feats = (feats - mu) / sd
    feats[:, -1] *= np.sqrt(pitch_weight)
    return feats, weights


# ---------------------------------------------------------------- clustering


def _kmeans(x: np.ndarray, w: np.ndarray, k: int, iters: int = 25) -> np.ndarray:
    """Weighted k-means, deterministic: it starts from the split of the units at the weighted mean
    along their main axis (a lone outlier cannot take a cluster of its own), then each next
    centre is the unit farthest from the centres so far."""
    mu = w @ x / w.sum()
    xc = x - mu
    # The main axis from the small (dims x dims) weighted scatter matrix, not an SVD of all units.
    axis = np.linalg.eigh((xc * w[:, None]).T @ xc)[1][:, -1]
    side = (x - mu) @ axis > 0
    c = [w[m] @ x[m] / max(w[m].sum(), 1e-9) for m in (side, ~side)]
    for _ in range(2, k):
        d = np.min([((x - ci) ** 2).sum(axis=1) for ci in c], axis=0)
        d[w == 0] = -1
        c.append(x[int(np.argmax(d))])
    c = np.array(c)
    labels = np.full(len(x), -1)
    for _ in range(iters):
        new = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(axis=2), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            m = (labels == j) & (w > 0)
            if m.any():
                c[j] = w[m] @ x[m] / w[m].sum()
    return labels


def _centres(x: np.ndarray, w: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted centres and the pooled within-cluster variance per dimension."""
    c = np.zeros((k, x.shape[1]))
    for j in range(k):
        m = labels == j
        if w[m].sum() > 0:
            c[j] = w[m] @ x[m] / w[m].sum()
    resid = x - c[labels]
    var = (w @ resid**2) / max(w.sum(), 1e-9) + 1e-3
    return c, var


def _viterbi(cost: np.ndarray, switch: np.ndarray) -> np.ndarray:
    """Labels minimising emission costs (units x states) plus switch[u] for a change before unit u.

    Plain Python over the units: with two or three states a numpy call per unit costs more
    than the arithmetic.
    """
    n, k = cost.shape
    rows, sw = cost.tolist(), switch.tolist()
    acc = rows[0]
    back: list[list[int]] = [[]]
    states = range(k)
    for u in range(1, n):
        best = min(states, key=acc.__getitem__)
        leave = acc[best] + sw[u]
        ptr = [j if acc[j] <= leave else best for j in states]
        acc = [min(acc[j], leave) + rows[u][j] for j in states]
        back.append(ptr)
    out = [min(states, key=acc.__getitem__)]
    for u in range(n - 1, 0, -1):
        out.append(back[u][out[-1]])
    return np.array(out[::-1], dtype=int)


def _cluster(x: np.ndarray, w: np.ndarray, follows_pause: np.ndarray, k: int,
             params: DiarizationParams) -> tuple[np.ndarray, float]:
    """k voices: labels per unit (k-means, then one Viterbi pass in time order) and the smallest
    distance between two centres in units of the pooled within-cluster spread."""
    labels = _kmeans(x, w, k)
    switch = np.where(follows_pause, params.change_at_pause, params.change_in_speech)
    c, var = _centres(x, w, labels, k)
    # A unit's evidence counts by its frames analysed, relative to the average unit's, so the
    # change costs mean the same whatever the analysis density.
    rel = w / max(float(w[w > 0].mean()), 1e-9)
    cost = 0.5 * rel[:, None] * (((x[:, None, :] - c[None]) ** 2) / var).sum(axis=2)
    labels = _viterbi(cost, switch)
    c, var = _centres(x, w, labels, k)
    dist = min(float(np.sqrt((((c[i] - c[j]) ** 2) / var).sum()))
               for i in range(k) for j in range(i + 1, k))
    return labels, dist


def diarize(frames: np.ndarray, rate: int, regions: list[tuple[int, int]], frame_s: float = 0.03,
            params: DiarizationParams = DEFAULT_DIARIZATION, energy: np.ndarray | None = None) -> Diarization:
    """Speaker turns of one channel: ``frames`` its 30 ms int16 frames (one per row), ``regions``
    its speech runs (first frame, end frame) in time order, ``energy`` a loudness per frame
    (at least over the speech runs; chunking has it already), computed here when not given."""
    regions = [(a, b) for a, b in regions if b > a]
    if not regions:
        return Diarization(0, ())
    one = Diarization(1, tuple((a, b, 0) for a, b in regions))
    units = units_of(regions, int(round(params.join_s / frame_s)), max(1, int(round(params.unit_s / frame_s))))
    if energy is None:
        energy = np.zeros(len(frames), dtype=np.float32)
        for a, b in regions:
            f = frames[a:b].astype(np.float32)
            energy[a:b] = np.sqrt(np.mean(f * f, axis=1))
    x, w = unit_prints(frames, rate, units, energy, max(1, params.block), params.pitch_weight)
    lengths = (units[:, 1] - units[:, 0]) * frame_s
    usable = w > 0
    if params.max_speakers < 2 or usable.sum() < 4 or lengths.sum() < 2 * params.min_speaker_s:
        return one
    follows_pause = units[:, 2].astype(bool)
    for k in range(min(params.max_speakers, int(usable.sum()) // 2), 1, -1):
        labels, dist = _cluster(x, w, follows_pause, k, params)
        speech = np.bincount(labels, weights=lengths, minlength=k)
        if dist >= params.min_distance and speech.min() >= params.min_speaker_s:
            return _turns(units, labels, regions)
    return one


def _turns(units: np.ndarray, labels: np.ndarray, regions: list[tuple[int, int]]) -> Diarization:
    """Units with their labels -> turns: each speech run takes the label of the unit it lies in
    (a run a unit edge falls in is cut there); touching pieces of one speaker are joined and
    speakers renumbered by first appearance."""
    r = np.asarray(regions, dtype=np.int64)
    first = np.searchsorted(units[:, 1], r[:, 0], side="right")  # the unit each run starts in
    last = np.searchsorted(units[:, 0], r[:, 1], side="left") - 1  # ... and ends in
    count = last - first + 1
    run = np.repeat(np.arange(len(r)), count)
    u = np.repeat(first, count) + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    a = np.maximum(r[run, 0], units[u, 0])
    b = np.minimum(r[run, 1], units[u, 1])
    lab = labels[u]
    _, first_seen = np.unique(lab, return_index=True)
    rank = np.empty(labels.max() + 1, dtype=np.int64)
    rank[lab[np.sort(first_seen)]] = np.arange(len(first_seen))
    lab = rank[lab]
    new = np.concatenate(([True], (lab[1:] != lab[:-1]) | (a[1:] != b[:-1])))
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(a)) - 1
    turns = tuple(zip(a[starts].tolist(), b[ends].tolist(), lab[starts].tolist(), strict=True))
    return Diarization(len(first_seen), turns)
