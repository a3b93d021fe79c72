#!/usr/bin/env bash
# The prepared GPU check: on one lent GPU, within 10 minutes, everything divekit has to show there.
#
#   bash benchmarks/gpu_check.sh --prepare   # here, once, in the checkout the device tool sends (the lead's):
#                                            # wheels, Fashion-MNIST and tv_shim into .gpu-check/ (git-ignored)
#   bash benchmarks/gpu_check.sh             # there: run(command="bash benchmarks/gpu_check.sh",
#                                            #            carry=[".gpu-check"], timeout_s=600)
#   bash benchmarks/gpu_check.sh --tiny      # anywhere, on the CPU: every step with tiny settings (a check of this script)
#
# A second call, for chapters 10 and 14 (fra-eng and WikiText-2 instead of Fashion-MNIST in .gpu-check/):
#   bash benchmarks/gpu_check.sh --prepare-attention   # here
#   bash benchmarks/gpu_check.sh attention             # there: transformer.md (bench_transformer.py --device cuda:
#                                                      # the book's settings against d2l on the GPU, the larger
#                                                      # preset with bf16 and torch.compile, the GPU profile) and
#                                                      # bert.md (bench_bert.py --device cuda, model FLOP utilisation
#                                                      # against PEAK_TFLOPS, default 989: an H100's dense bf16)
#   bash benchmarks/gpu_check.sh --tiny-attention      # on the CPU, with tiny settings
#
# A third call, for chapter 13's detection (issue 13: IoU and NMS against torchvision.ops, which has no CPU build
# here; the generated banana set of 256 training images and pytest's wheels in .gpu-check/):
#   bash benchmarks/gpu_check.sh --prepare-detection   # here
#   bash benchmarks/gpu_check.sh detection             # there: tv-tests.txt (the tests held against torchvision.ops,
#                                                      # which skip here), detection-gpu.md (bench_detection.py
#                                                      # --device cuda: TinySSD training and the box functions against
#                                                      # d2l and torchvision on the GPU), detection-cpu.md (the box
#                                                      # functions on that machine's CPU, torchvision's beside ours)
#   bash benchmarks/gpu_check.sh --tiny-detection      # on the CPU, with tiny settings
#
# Steps, each with its share of the 10 minutes (a step cut short keeps what it wrote):
#   1. machine.txt: nvidia-smi, torch, the GPUs;
#   2. reproductions.{md,json}: the 10-epoch alexnet, vgg, nin, googlenet, resnet and densenet runs with the book's recipe,
#      bf16 autocast and channels-last (benchmarks/gpu_reproduce.py);
#   3. cnn-gpu.md: the CNN benchmark against d2l's own code on the same GPU (benchmarks/bench_cnn.py --device cuda:
#      NCHW fp32, channels-last, bf16, both, both + torch.compile);
#   4. ddp.md: with 2 GPUs, ResNet-18 for 2 epochs in 1 process and in 2 (divekit run --nproc 2), examples/s and metrics;
#      skipped with 1 GPU (--tiny: 2 gloo processes on the CPU).
# PYTHON: the Python that has torch (default python3); GPU_CHECK_BUDGET: seconds for all steps (600; --tiny: 3600,
# as a CPU compiles torch.compile's kernels slowly). Exit status 0 when every step finished.
# Everything goes to $OUT (the device tool's folder; default gpu-check-out/), at most 8 files: log.txt, machine.txt,
# reproductions.md, reproductions.json, cnn-gpu.md, ddp.md. Run folders and checkpoints stay in /tmp.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
here=$PWD
carried=$here/.gpu-check
D2L_WHEELS="d2l==0.17.6 ipython==9.18.1 ipython_pygments_lexers==1.1.1 decorator==5.2.1 jedi==0.20.1 parso==0.8.7
  matplotlib-inline==0.2.2 pexpect==4.9.0 ptyprocess==0.7.0 prompt_toolkit==3.0.53 wcwidth==0.9.4 stack-data==0.6.3
  asttokens==3.0.2 executing==2.3.0 pure_eval==0.2.4 traitlets==5.16.1"  # what d2l.torch imports that the GPU image lacks
TEST_WHEELS="pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 packaging==26.4 pygments==2.20.0 hypothesis==6.170.27 attrs==26.1.0
  sortedcontainers==2.4.0"  # the detection call's tests, should the GPU image lack them
DETECTION_SET=generated-bananas-256-100-256px-seed0-v1  # bench_detection.py --num-train 256's set, drawn here

if [ "$mode" = --prepare ] || [ "$mode" = --prepare-attention ] || [ "$mode" = --prepare-detection ]; then
  exclude=$(git rev-parse --git-path info/exclude)
  grep -qx '/.gpu-check/' "$exclude" 2>/dev/null || echo '/.gpu-check/' >> "$exclude"
  data=${DIVEKIT_DATA:-../shared/data}
  case $mode in --prepare) datasets="fashion-mnist";; --prepare-attention) datasets="fra-eng wikitext-2";;
    *) datasets="";; esac
  rm -rf "$carried/data" "$carried/cache" "$carried/test-whl"  # one call's data: the device tool carries at most 64 MiB
  mkdir -p "$carried/whl" "$carried/data"
  # the GPU image's Python is 3.12; these wheels are pure Python
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d "$carried/whl" $D2L_WHEELS || exit
  for name in $datasets; do cp -r "$data/$name" "$carried/data/$name" || exit; done
  if [ "$mode" = --prepare-detection ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d "$carried/test-whl" $TEST_WHEELS \
      || exit
    generated=${XDG_CACHE_HOME:-$HOME/.cache}/divekit/generated
    [ -d "$generated/$DETECTION_SET" ] || PYTHONPATH=src python3 -c "from divekit.data.detection import load_detection
load_detection('generated-bananas', num_train=256)" || exit
    mkdir -p "$carried/cache/divekit/generated" && cp -r "$generated/$DETECTION_SET" "$carried/cache/divekit/generated/" || exit
  fi
  cp "${TV_SHIM:-../shared/bench/tv_shim.py}" "$carried/tv_shim.py" || exit
  du -sh "$carried"
  call="bash benchmarks/gpu_check.sh${mode#--prepare}"; call=${call/.sh-/.sh }
  echo "ready: run(command=\"$call\", carry=[\".gpu-check\"], timeout_s=600)"
  exit 0
fi

tiny=0
{ [ "$mode" = --tiny ] || [ "$mode" = --tiny-attention ] || [ "$mode" = --tiny-detection ] \
  || [ "${GPU_CHECK_TINY:-0}" = 1 ]; } && tiny=1
OUT=${OUT:-$here/gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
PYTHON=${PYTHON:-python3}
export PYTHONPATH=$here/src PYTHONUNBUFFERED=1
if [ -d "$carried/data" ]; then export DIVEKIT_DATA=$carried/data; else export DIVEKIT_DATA=${DIVEKIT_DATA:-$here/../shared/data}; fi
shim=$carried/tv_shim.py; [ -f "$shim" ] || shim=${TV_SHIM:-$here/../shared/bench/tv_shim.py}
# d2l runs in its own Python path (bench_cnn.py clears PYTHONPATH for it): a wrapper that sets it
d2l_python=/tmp/gpu-check-d2l-python
if [ -d "$carried/whl" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu-check-site "$carried"/whl/*.whl
  printf '#!/bin/sh\nPYTHONPATH=/tmp/gpu-check-site exec %s "$@"\n' "$(command -v "$PYTHON")" > "$d2l_python"
elif [ -x "${D2L_PYTHON:-$here/.d2l-venv/bin/python}" ]; then
  printf '#!/bin/sh\nexec %s "$@"\n' "${D2L_PYTHON:-$here/.d2l-venv/bin/python}" > "$d2l_python"
fi
chmod +x "$d2l_python" 2>/dev/null
failed=0
budget=${GPU_CHECK_BUDGET:-$([ $tiny = 1 ] && echo 3600 || echo 600)}  # seconds for all steps (the device's 10 minutes)
left() { local s=$(( $1 * budget / 600 - SECONDS )); echo $(( s > 1 ? s : 1 )); }  # seconds until $1 (of 600) of it

echo "== 1. machine ($(date -u +%FT%TZ), tiny=$tiny)"
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
{
  nvidia-smi 2>&1 || echo "no nvidia-smi"
  "$PYTHON" -c "import torch, platform; print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda, [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])"
  echo "cores $(nproc); load $(cut -d' ' -f1-3 /proc/loadavg); gpus $gpus"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

if [ "$mode" = detection ] || [ "$mode" = --tiny-detection ]; then
  [ -d "$carried/cache" ] && export XDG_CACHE_HOME=$carried/cache  # the set drawn by --prepare-detection
  if [ $tiny = 1 ]; then
    gpu_args="--device cpu --num-train 256 --epochs 1 --repeats 1 --boxes 300,1000 --box-repeats 2 --box-rounds 1"
    cpu_args="--boxes 300,1000 --box-repeats 2 --box-rounds 1"
  else
    gpu_args="--device cuda --num-train 256 --epochs 2 --repeats 2 --boxes 1000,3000,10000 --box-repeats 5 --box-rounds 5"
    cpu_args="--boxes 1000,3000,10000 --box-repeats 5 --box-rounds 5"
  fi
  echo "== 2. the tests held against torchvision.ops (they skip where torchvision does not import)"
  tests_path=$here/src
  if ! "$PYTHON" -c "import pytest, hypothesis" 2>/dev/null && [ -d "$carried/test-whl" ]; then  # the image lacks them
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu-check-tests \
      "$carried"/test-whl/*.whl && tests_path=$tests_path:/tmp/gpu-check-tests
  fi
  PYTHONPATH=$tests_path timeout -s INT "$(left 150)" "$PYTHON" -m pytest -q -p no:cacheprovider -rs \
    tests/test_boxes.py tests/test_roi.py > "$OUT/tv-tests.txt" 2>&1 || { echo "the tests failed (status $?)"; failed=1; }
  tail -5 "$OUT/tv-tests.txt"
  echo "== 3. TinySSD and the box functions against d2l and torchvision on the GPU"
  timeout -s INT "$(left 480)" "$PYTHON" benchmarks/bench_detection.py $gpu_args --threads 4 --d2l-python "$d2l_python" \
    --tv-shim "$shim" --out "$OUT/detection-gpu.md" || { echo "the detection benchmark stopped early or failed (status $?)"; failed=1; }
  echo "== 4. the box functions on this machine's CPU, torchvision's beside ours"
  timeout -s INT "$(left 590)" "$PYTHON" benchmarks/bench_detection.py --skip-ssd $cpu_args --threads 1 \
    --d2l-python "$d2l_python" --tv-shim "$shim" --out "$OUT/detection-cpu.md" \
    || { echo "the CPU box benchmark stopped early or failed (status $?)"; failed=1; }
  echo "== done in ${SECONDS}s ($([ $failed = 0 ] && echo 'every step finished' || echo 'some steps did not finish'))"
  ls -la "$OUT"
  exit $failed
fi

if [ "$mode" = attention ] || [ "$mode" = --tiny-attention ]; then
  if [ $tiny = 1 ]; then
    tf_args="--device cpu --epochs 1 --repeats 1 --large-steps 1 --threads 2"
    bert_args="--device cpu --steps 2 --repeats 1 --variant-steps 1 --threads 2"
  else
    tf_args="--device cuda --epochs 50 --repeats 2 --large-steps 20 --threads 4"
    bert_args="--device cuda --steps 50 --repeats 2 --variant-steps 8 --threads 4 --peak-tflops ${PEAK_TFLOPS:-989}"
  fi
  echo "== 2. the Transformer against d2l, and the larger preset"
  timeout -s INT "$(left 300)" "$PYTHON" benchmarks/bench_transformer.py $tf_args --d2l-python "$d2l_python" \
    --out "$OUT/transformer.md" || { echo "the Transformer benchmark stopped early or failed (status $?)"; failed=1; }
  echo "== 3. BERT pretraining against d2l, and the fast twin's options"
  timeout -s INT "$(left 590)" "$PYTHON" benchmarks/bench_bert.py $bert_args --d2l-python "$d2l_python" \
    --out "$OUT/bert.md" || { echo "the BERT benchmark stopped early or failed (status $?)"; failed=1; }
  echo "== done in ${SECONDS}s ($([ $failed = 0 ] && echo 'every step finished' || echo 'some steps did not finish'))"
  ls -la "$OUT"
  exit $failed
fi

if [ $tiny = 1 ]; then
  device=cpu; repro_args="--tiny --device cpu"
  bench_args="--device cpu --variant-set cuda --epochs 1 --repeats 1 --limit 512 --resnet-batches 1 --resnet-batch-size 8 --threads 2"
else
  device=cuda; repro_args="--device cuda"
  bench_args="--device cuda --epochs 2 --repeats 1 --resnet-batches 20 --threads 4"
fi

echo "== 2. the 10-epoch chapter 7 reproductions"
timeout -s INT "$(left 330)" "$PYTHON" benchmarks/gpu_reproduce.py $repro_args --out "$OUT" \
  || { echo "reproductions stopped early (status $?); reproductions.md holds the finished ones"; failed=1; }

echo "== 3. the CNN benchmark against d2l on the same device"
timeout -s INT "$(left 520)" "$PYTHON" benchmarks/bench_cnn.py $bench_args --d2l-python "$d2l_python" \
  --tv-shim "$shim" --out "$OUT/cnn-gpu.md" || { echo "the CNN benchmark stopped early or failed (status $?)"; failed=1; }

echo "== 4. data-parallel training"
if [ $tiny = 1 ] || [ "$gpus" -ge 2 ]; then
  if [ $tiny = 1 ]; then ddp_args="lenet --limit 64 --batch-size 16 --epochs 2 --device cpu"
  else ddp_args="resnet --epochs 2 --precision bf16 --device cuda"; fi
  runs=/tmp/gpu-check-ddp; rm -rf "$runs"
  for n in 1 2; do
    timeout -s INT "$(left 585)" "$PYTHON" -m divekit run $ddp_args --nproc $n --no-progress --out "$runs/$n" \
      || { echo "the $n-process run stopped early or failed (status $?)"; failed=1; }
  done
  "$PYTHON" - "$runs" "$OUT/ddp.md" "$ddp_args" <<'EOF'
import json, sys
from pathlib import Path
runs, out, args = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
lines = [f"# Data-parallel check: `divekit run {args} --nproc N`", "",
         "| processes | examples/s (last epoch) | train loss | train acc | test acc | config.json distributed |",
         "|---:|---:|---:|---:|---:|---|"]
for n in (1, 2):
    for summary in sorted((runs / str(n)).glob("*/summary.json")):
        final = json.loads(summary.read_text())["final"]
        split = json.loads((summary.parent / "config.json").read_text()).get("distributed")
        lines.append(f"| {n} | {final.get('examples_per_s', 0):,.0f} | {final.get('train_loss', 0):.4f} | "
                     f"{final.get('train_acc', 0):.4f} | {final.get('test_acc', 0):.4f} | `{json.dumps(split)}` |")
out.write_text("\n".join(lines) + "\n")
print(out.read_text())
EOF
else
  echo "skipped: $gpus GPU(s); the data-parallel check needs 2" | tee "$OUT/ddp.md"
fi
echo "== done in ${SECONDS}s ($([ $failed = 0 ] && echo 'every step finished' || echo 'some steps did not finish')); files in $OUT:"
ls -la "$OUT"
exit $failed
