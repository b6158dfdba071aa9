"""Reader for the LibriSpeech layout: ``<root>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` (or .wav/.ogg/.opus) plus
``<spk>-<chapter>.trans.txt`` (one ``<utt-id> <TRANSCRIPT>`` per line). Real LibriSpeech reads as it is."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from toolkit.errors import VeilError
from toolkit.text.tokenizer import normalize_text

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".opus")


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    speaker: str
    path: Path
    text: str
    num_samples: int = 0  # at the file's rate; 0 when not probed

    @property
    def seconds(self) -> float:
        return self.num_samples / 16000


def read_transcripts(trans: Path) -> dict[str, str]:
    out = {}
    for n, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise VeilError(f"{trans}:{n}: expected '<utterance-id> <transcript>'")
        out[parts[0]] = normalize_text(parts[1])
    return out


def read_librispeech(root: str | Path, probe_lengths: bool = True) -> list[Utterance]:
    """All utterances under ``root``, sorted by id. Every audio file needs a transcript line and vice versa."""
    root = Path(root)
    if not root.is_dir():
        raise VeilError(f"{root}: corpus directory does not exist")
    utts: list[Utterance] = []
    for chapter in sorted(p for p in root.glob("*/*") if p.is_dir()):
        spk, chap = chapter.parent.name, chapter.name
        audio = {p.stem: p for p in sorted(chapter.iterdir()) if p.suffix in AUDIO_EXTENSIONS}
        if not audio:
            continue
        trans = chapter / f"{spk}-{chap}.trans.txt"
        if not trans.is_file():
            raise VeilError(f"{trans}: transcript file missing for {len(audio)} audio files")
        texts = read_transcripts(trans)
        for utt_id, path in audio.items():
            if utt_id not in texts:
                raise VeilError(f"{trans}: no transcript for {path.name}")
            n = sf.info(str(path)).frames if probe_lengths else 0
            utts.append(Utterance(utt_id, spk, path, texts[utt_id], n))
    if not utts:
        raise VeilError(f"{root}: no LibriSpeech-layout audio found (<spk>/<chapter>/<spk>-<chapter>-<utt>.flac)")
    return utts
