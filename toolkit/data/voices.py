"""The synthetic speakers of the default corpus: TTS voices from Debian, each with its own pitch and rate.

A speaker is a frozen :class:`Voice`: engine (espeak-ng, flite, festival), the engine's voice, and the
perturbation that makes it a distinct person (engine pitch/rate for espeak-ng; sox pitch shift and tempo for
flite and festival, whose voices have no pitch knob). The catalog is drawn from a seed, so it is the same
on every machine with the same Debian packages.
"""
from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from toolkit.errors import VeilError

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                  "en-029", "en-us-nyc")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "adam", "Alex", "Alicia",
                   "Andy", "Annie", "anika", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb",
                   "david", "ed", "edward", "grandma", "grandpa", "gustave", "iven", "iven2", "iven3", "john",
                   "linda", "max", "michel", "norbert", "paul", "pedro", "quincy", "rob", "robert", "steph",
                   "steph2", "steph3", "travis", "victor", "zac")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
SOX_PERTURBATIONS = 4  # distinct (pitch, tempo) speakers per flite/festival voice


@dataclass(frozen=True)
class Voice:
    engine: str          # "espeak-ng" | "flite" | "festival"
    name: str            # engine voice, e.g. "en-gb-scotland+klatt3", "slt", "kal_diphone"
    pitch: int = 50      # espeak-ng -p (0..99)
    rate: int = 165      # espeak-ng -s (words per minute)
    shift_cents: int = 0  # sox pitch shift, flite/festival
    tempo: float = 1.0   # sox tempo factor, flite/festival

    def to_dict(self) -> dict:
        return asdict(self)


REQUIRED_TOOLS = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival", "sox": "sox"}


def check_tools() -> None:
    missing = [pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None]
    if missing:
        raise VeilError(f"corpus build needs the Debian packages {', '.join(missing)} (run `make setup`)")


def catalog(n_speakers: int, seed: int) -> list[Voice]:
    """``n_speakers`` distinct voices: all flite/festival speakers that fit, the rest from espeak-ng."""
    rng = random.Random(seed)
    sox_voices = []
    for engine, names in (("flite", FLITE_VOICES), ("festival", FESTIVAL_VOICES)):
        for name in names:
            for _ in range(SOX_PERTURBATIONS):
                sox_voices.append(Voice(engine, name, shift_cents=rng.randrange(-300, 301, 25),
                                        tempo=round(rng.uniform(0.85, 1.15), 2)))
    pairs = [(a, v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    rng.shuffle(pairs)
    n_sox = min(len(sox_voices), n_speakers // 5)
    rng.shuffle(sox_voices)
    espeak = [Voice("espeak-ng", f"{a}+{v}", pitch=rng.randrange(20, 81), rate=rng.randrange(140, 196))
              for a, v in pairs[: n_speakers - n_sox]]
    if len(espeak) + n_sox < n_speakers:
        raise VeilError(f"at most {len(pairs) + len(sox_voices)} synthetic speakers are available")
    voices = espeak + sox_voices[:n_sox]
    rng.shuffle(voices)
    return voices


def synthesize(voice: Voice, texts: list[str], wav_dir: Path) -> list[Path]:
    """Render each text to ``wav_dir/<i>.wav`` at the engine's native rate; returns the paths."""
    wav_dir.mkdir(parents=True, exist_ok=True)
    paths = [wav_dir / f"{i}.wav" for i in range(len(texts))]
    if voice.engine == "espeak-ng":
        for text, path in zip(texts, paths):
            _run(["espeak-ng", "-v", voice.name, "-p", str(voice.pitch), "-s", str(voice.rate), "-w", str(path),
                  text])
    elif voice.engine == "flite":
        for text, path in zip(texts, paths):
            _run(["flite", "-voice", voice.name, "-t", text, "-o", str(path)])
    elif voice.engine == "festival":
        script = wav_dir / "synth.scm"
        lines = [f"(voice_{voice.name})"]
        for text, path in zip(texts, paths):
            lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{path}")')
        script.write_text("\n".join(lines) + "\n")
        _run(["festival", "-b", str(script)])
    else:
        raise ValueError(f"unknown TTS engine {voice.engine!r}")
    return paths


def to_flac_16k(voice: Voice, wav: Path, flac: Path) -> None:
    """Resample to 16 kHz mono 16-bit FLAC with the voice's sox perturbation; no dither (deterministic)."""
    effects = []
    if voice.shift_cents:
        effects += ["pitch", str(voice.shift_cents)]
    if voice.tempo != 1.0:
        effects += ["tempo", "-s", str(voice.tempo)]
    effects += ["rate", "-h", "16000"]
    _run(["sox", "-D", "-R", "-V1", str(wav), "-c", "1", "-b", "16", str(flac), *effects])


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")


def tool_versions() -> dict:
    out = {}
    for pkg in ("espeak-ng", "flite", "festival", "sox", "fortunes", "fortunes-min"):
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        out[pkg] = proc.stdout.strip() if proc.returncode == 0 else None
    return out
