#!/usr/bin/env bash
# The main job on the embedded default model and corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
VEIL=.venv/bin/veil
mapfile -t files < <(find data/corpus/test -name '*.flac' | sort | head -n 5)
# the default model is the privacy point: its phone sends 16 noisy dims, and the cloud recognizes little of them
# (test WER ~73 %); normalized is the same phone without the bottleneck: it recognizes, and leaks the speaker
for m in anonymized normalized; do
  echo "== transcribing 5 test utterances with models/$m.safetensors"
  $VEIL transcribe --checkpoint models/$m.safetensors "${files[@]}"
done
for f in "${files[@]}"; do
  id=$(basename "$f" .flac); grep -h "^$id " "$(dirname "$f")"/*.trans.txt | sed 's/^/   reference: /'
done
echo "== CER/WER on the test and eval-speakers splits (200 utterances each)"
for m in baseline normalized anonymized; do
  echo "-- $m"
  $VEIL evaluate --checkpoint models/$m.safetensors --split test --split eval-speakers --limit 200
done
echo "== exporting the default (anonymized) prefix for Android and iOS (exports/anonymized-k4)"
# exit 1 = a parity gate failed, artifacts kept: the shipped int8 artifacts miss the loud-audio (stress) gates
# (README, "Loud input breaks the shipped int8 artifacts"); the demo says so and streams speech with them
rc=0
.venv/bin/export-prefix --checkpoint models/anonymized.safetensors --target all || rc=$?
if (( rc == 1 )); then
  echo "   parity gate failed (exports/anonymized-k4/parity.md); the artifacts are kept and the demo goes on with speech"
elif (( rc != 0 )); then
  exit "$rc"
fi
echo "== the split system: the exported prefix (ExecuTorch, as on a phone, adding its noise) streams to a local veil serve"
serve_log=$(mktemp)
$VEIL serve --port 0 >"$serve_log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$serve_log"' EXIT
for _ in $(seq 120); do grep -q "listening on" "$serve_log" && break; sleep 1; done
url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$serve_log")
token=$(sed -n 's/.*token for this run: \([^ ]*\).*/\1/p' "$serve_log")
[[ -n $url && -n $token ]] || { cat "$serve_log"; exit 1; }
VEIL_TOKEN=$token $VEIL stream "${files[@]:0:2}" --server "$url"
kill "$server"
wait "$server" || true
