#!/usr/bin/env bash
# The main job on the embedded default model and corpus: transcribe, score, export the phone's prefix for Android
# and iOS with parity, then stream through it to a local `veil serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
VEIL=.venv/bin/veil
DEFAULT=$(.venv/bin/python -c "from toolkit.paths import DEFAULT_MODEL; print(DEFAULT_MODEL.stem)")
mapfile -t files < <(find data/corpus/test -name '*.flac' | sort | head -n 5)
echo "== the shipped models (models/README.md): test WER and the strongest attacker of each"
sed -n '/<!-- veil:models -->/,/<!-- \/veil:models -->/p' models/README.md | grep '^|'
echo "== 5 test utterances, the default model ($DEFAULT) beside normalized (the same task without the private channel)"
$VEIL transcribe --checkpoint "models/$DEFAULT.safetensors" --checkpoint models/normalized.safetensors "${files[@]}"
for f in "${files[@]}"; do
  id=$(basename "$f" .flac); grep -h "^$id " "$(dirname "$f")"/*.trans.txt | sed 's/^/   reference: /'
done
echo "== CER/WER on the test and eval-speakers splits (200 utterances each)"
for m in "$DEFAULT" normalized baseline; do
  echo "-- $m"
  $VEIL evaluate --checkpoint "models/$m.safetensors" --split test --split eval-speakers --limit 200
done
echo "== exporting the default prefix for Android and iOS (exports/$DEFAULT-k*), with parity in the real runtimes"
# exit 1 = a parity gate failed, artifacts kept: the int8 artifacts still miss the loud-audio (stress) gates on a
# full-scale 7 kHz tone or full-scale noise (models/README.md); the demo says so and streams speech with them
rc=0
.venv/bin/export-prefix --checkpoint "models/$DEFAULT.safetensors" --target all || rc=$?
if (( rc == 1 )); then
  echo "   a parity gate failed (exports/$DEFAULT-k*/parity.md); the artifacts are kept and the demo goes on with speech"
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
