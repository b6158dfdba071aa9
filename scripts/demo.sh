#!/usr/bin/env bash
# The main job on the embedded default model and corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
VEIL=.venv/bin/veil
echo "== transcribing 5 test utterances with the shipped anonymized model"
mapfile -t files < <(find data/corpus/test -name '*.flac' | sort | head -n 5)
$VEIL transcribe --checkpoint models/anonymized.safetensors "${files[@]}"
for f in "${files[@]}"; do
  id=$(basename "$f" .flac); grep -h "^$id " "$(dirname "$f")"/*.trans.txt | sed 's/^/   reference: /'
done
echo "== CER/WER on the test and eval-speakers splits (200 utterances each)"
for m in baseline anonymized; do
  echo "-- $m"
  $VEIL evaluate --checkpoint models/$m.safetensors --split test --split eval-speakers --limit 200
done
echo "== exporting the anonymized prefix for Android and iOS"
.venv/bin/export-prefix --checkpoint models/anonymized.safetensors --target all --out exports/anonymized
