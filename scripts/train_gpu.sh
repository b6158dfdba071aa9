#!/usr/bin/env bash
# Train several recipes side by side on one lent GPU, from an Opus copy of the corpus
# (scripts/pack_corpus_opus.py), all given the same wall-clock budget. Results: fp16 checkpoints (one .tar
# per run, under the device tool's 16 MiB per file) + logs under $OUT.
#
#   RECIPE=sweep bash scripts/train_gpu.sh      # baseline, GRL k = 1..6, two TDNN variants (from the baseline)
#   RECIPE=anonymity bash scripts/train_gpu.sh  # split-norm + adversary variants (from the normalized model)
#   RECIPE=anonymity-continue bash scripts/train_gpu.sh  # the two split-4 winners, continued
#   RECIPE=frontier bash scripts/train_gpu.sh   # bottleneck points behind the normalized model's prefix (frozen)
#   RECIPE=private bash scripts/train_gpu.sh    # frontier v2: split 6, noisy 16-dim channel, cloud stack, trained end
#                                               # to end with distillation, split CTC and the statistics adversary
#   env: VEIL_DATA (/tmp/veil), BUDGET_MIN (6.5), LIMIT_MIN (7.3), LR, WARMUP
#
# The device machine has torch but not soundfile/jiwer: their wheels are installed from .whl/ if present.
set -u
export PYTHONUNBUFFERED=1
DATA=${VEIL_DATA:-/tmp/veil}
RUNS=${VEIL_RUNS:-/tmp/veil-runs}
OUT=${OUT:-/tmp/veil-out}
BUDGET=${BUDGET_MIN:-6.5}
LIMIT=${LIMIT_MIN:-7.3}
RECIPE=${RECIPE:-sweep}
PY=${PY:-python3}
EXTRA=${EXTRA:-}
mkdir -p "$DATA" "$RUNS" "$OUT"
if [ -d .whl ] && ! $PY -c "import soundfile, jiwer" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
for t in .gpu/part*.tar; do [ -f "$t" ] && tar -xf "$t" -C "$DATA"; done
echo "train speakers: $(ls "$DATA/corpus/train" | wc -l), utterances: $(find "$DATA/corpus/train" -name '*.ogg' | wc -l)"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null
# decode the corpus once (all cores), cached as one int16 .npy that every trainer memory-maps
$PY - "$DATA/corpus" <<'EOF' || exit 1
import os, sys, time
from toolkit.data.librispeech import read_librispeech
from toolkit.data.dataset import AudioSet
t = time.time()
utts = read_librispeech(os.path.join(sys.argv[1], "train"))
AudioSet.load(utts, progress=False, workers=os.cpu_count(), cache=True)
print(f"decoded {len(utts)} utterances in {time.time() - t:.1f} s", flush=True)
EOF
declare -A RUN
if [ "$RECIPE" = sweep ]; then
  INIT=${INIT:-models/baseline.safetensors}; LR=${LR:-1.5e-3}; WARMUP=${WARMUP:-300}
  RUN=(
    [baseline]="--no-grl"
    [grl-1]="--grl-layer 1" [grl-2]="--grl-layer 2" [grl-3]="--grl-layer 3"
    [grl-4]="--grl-layer 4" [grl-5]="--grl-layer 5" [grl-6]="--grl-layer 6"
    [tdnn-3]="--grl-layer 3 --speaker-head tdnn"
    [tdnn-123-l2]="--grl-layer 1 --grl-layer 2 --grl-layer 3 --speaker-head tdnn --lambda-max 2"
  )
elif [ "$RECIPE" = anonymity ]; then
  # every run: per-chunk instance norm of the split-layer output, x-vector-style (TDNN) adversaries
  INIT=${INIT:-models/normalized.safetensors}; LR=${LR:-1e-3}; WARMUP=${WARMUP:-200}
  a="--split-norm chunk --speaker-head tdnn"
  RUN=(
    [s3-l3]="$a --split-layer 3 --grl-layer 3 --lambda-max 3"
    [s3-l3-r]="$a --split-layer 3 --grl-layer 3 --lambda-max 3 --head-reset 250"
    [s3-l10-r]="$a --split-layer 3 --grl-layer 3 --lambda-max 10 --head-reset 250"
    [s3-m23-l3-r]="$a --split-layer 3 --grl-layer 2 --grl-layer 3 --lambda-max 3 --head-reset 250"
    [s4-l3]="$a --split-layer 4 --grl-layer 4 --lambda-max 3"
    [s4-l3-r]="$a --split-layer 4 --grl-layer 4 --lambda-max 3 --head-reset 250"
    [s4-l10-r]="$a --split-layer 4 --grl-layer 4 --lambda-max 10 --head-reset 250"
    [s5-l3-r]="$a --split-layer 5 --grl-layer 5 --lambda-max 3 --head-reset 250"
  )
elif [ "$RECIPE" = anonymity-continue ]; then
  # continue the two split-4 winners of RECIPE=anonymity from their checkpoints (put in $CONT_DIR)
  INIT=""; LR=${LR:-5e-4}; WARMUP=${WARMUP:-100}; CONT=${CONT_DIR:-/tmp/veil-init}
  a="--split-norm chunk --speaker-head tdnn --split-layer 4 --grl-layer 4 --head-reset 250"
  RUN=(
    [s4-l10-r-c]="$a --lambda-max 10 --init-from $CONT/s4-l10-r.safetensors"
    [s4-l3-r-c]="$a --lambda-max 3 --init-from $CONT/s4-l3-r.safetensors"
  )
elif [ "$RECIPE" = frontier ]; then
  # the points of `veil frontier` (same run names): the normalized model's own architecture and adversary,
  # its phone blocks frozen, a bottleneck after them; evaluate here with `veil frontier --skip-train --out RUNS`
  INIT=${INIT:-models/normalized.safetensors}; LR=${LR:-1e-3}; WARMUP=${WARMUP:-200}
  a="--config ${INIT%.safetensors}.json --freeze-prefix --bottleneck-dim"
  RUN=(
    [bn-d32-2x256]="$a 32 --vq-codes 256 --vq-groups 2" [bn-d32-1x256]="$a 32 --vq-codes 256 --vq-groups 1"
    [bn-d32-1x64]="$a 32 --vq-codes 64 --vq-groups 1" [bn-d32-1x32]="$a 32 --vq-codes 32 --vq-groups 1"
    [bn-d32-1x16]="$a 32 --vq-codes 16 --vq-groups 1" [bn-d32-1x8]="$a 32 --vq-codes 8 --vq-groups 1"
    [bn-d16]="$a 16" [bn-d8]="$a 8"
  )
elif [ "$RECIPE" = private ]; then
  # the frontier v2 points (docs/privacy.md): the normalized model's blocks 1-4 frozen, blocks 5-6 on the phone,
  # 16 dims at unit RMS + noise, a cloud stack; distilled from the normalized model
  INIT=${INIT:-models/normalized.safetensors}; LR=${LR:-1e-3}; WARMUP=${WARMUP:-200}
  a="--config ${INIT%.safetensors}.json --blocks 6 --split-layer 6 --norm-layer 4 --split-norm chunk \
 --split-norm-floor 0.01 --grl-layer 6 --bottleneck-dim 16 --split-ctc --freeze-blocks 4 --distill-from $INIT \
 --distill-weight 1.0 --fisher-weight 0.1"
  RUN=(
    [k6-d16-n0.5]="$a --suffix-blocks 2 --bottleneck-noise 0.5" [k6-d16-n1]="$a --suffix-blocks 2 --bottleneck-noise 1"
    [k6-d16-n1.5]="$a --suffix-blocks 2 --bottleneck-noise 1.5"
    [k6-d16-n1-s6x256]="$a --suffix-blocks 6 --suffix-dim 256 --bottleneck-noise 1"
    [k6-d16-n1-f1]="${a/--fisher-weight 0.1/--fisher-weight 1} --suffix-blocks 2 --bottleneck-noise 1"
  )
else
  echo "RECIPE must be sweep, anonymity, anonymity-continue, frontier or private" >&2; exit 2
fi
common="--corpus $DATA/corpus ${INIT:+--init-from $INIT} --steps 4000 --time-budget $BUDGET --time-limit $LIMIT \
 --batch-seconds 320 --batch-utts 160 --lr $LR --warmup $WARMUP --eval-every 1000 --load-workers 4 $EXTRA"
export OMP_NUM_THREADS=1
for name in "${!RUN[@]}"; do
  $PY -m toolkit.cli train --out "$RUNS/$name" ${RUN[$name]} $common > "$RUNS/$name.log" 2>&1 &
done
wait
grep -h "steps/s\|dev CER" "$RUNS"/*.log | tail -40
# fp16 copies, speaker heads kept only where a later fine-tune continues the adversarial training
$PY - "$RUNS" "$OUT" <<'EOF'
import sys, tarfile, json
from pathlib import Path
from toolkit.model.checkpoint import load_checkpoint, save_checkpoint, tokenizer_from
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
packed = []
for src in sorted(runs.glob("*/last.safetensors")):
    n = src.parent.name
    model, cfg = load_checkpoint(src)
    dst = runs / "fp16" / f"{n}.safetensors"
    save_checkpoint(dst, model, tokenizer_from(cfg), cfg["speakers"], cfg["provenance"], "float16")
    packed.append((dst, n))
for i in range(0, len(packed), 2):  # two checkpoints per tar: the device returns at most 8 files
    with tarfile.open(out / f"models-{i // 2}.tar", "w") as tar:
        for dst, n in packed[i:i + 2]:
            tar.add(dst, arcname=dst.name); tar.add(dst.with_suffix(".json"), arcname=f"{n}.json")
with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
    for p in sorted(runs.glob("*.log")) + sorted(runs.glob("*/log.jsonl")):
        tar.add(p, arcname=str(p.relative_to(runs)))
for p in sorted(out.iterdir()):
    print(p.name, p.stat().st_size)
EOF
