#!/usr/bin/env bash
# Runs the book's experiments with the book's hyperparameters (seed 0) and writes the report, ours
# beside d2l's published numbers, to reproduction/REPRODUCTION.md.
#   DIVEKIT_DATA=../shared/data bash reproduction/reproduce_book.sh [OUT_DIR] [quick|long|attention|all|vision]
# quick: the runs that take seconds to a few minutes on a CPU; long: the 10-epoch CNNs and MLPs
# and the 300-500-epoch sequence models (hours on a 2-core CPU); attention: chapter 10 and BERT's
# pretraining (minutes). vision: the demonstrations of chapters 13-15 on the data that is here (minutes;
# give it an OUT_DIR of its own, runs/vision by default; its report goes to reproduction/CHAPTERS_13_15.md).
# AlexNet, VGG, NiN, GoogLeNet, ResNet and DenseNet at 224/96 pixels need a GPU, and TinySSD's 20 epochs (`ssd`, 35 min here) and `detector` (67 min) are
# run on their own; neither is in any list.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${2:-quick}
if [ "$which" = vision ]; then
  out=${1:-runs/vision}  # a folder of its own: the report covers every run in it
else
  out=${1:-runs/book}
fi
quick="linear-regression:scratch linear-regression:fast linear-regression:fast:--loss=mse_loss
  softmax-regression:scratch softmax-regression:fast
  loss-functions:fast perceptron-xor: mlp-xor:fast activations:fast polynomial-fit:fast
  weight-decay:scratch weight-decay:fast weight-decay:fast:--loss=mse_loss gradient-stability:fast kaggle-house:fast conv-edge:fast
  sequence-sine:fast timemachine-stats: optimization-landscapes: gd-trajectories:fast
  momentum-trajectories:fast optimizers-airfoil:scratch"
long="mlp:scratch mlp:fast dropout:scratch dropout:fast lenet:fast lenet:scratch batch-norm:fast
  batch-norm:scratch rnn-scratch:scratch rnn-scratch:scratch:--random-sampling rnn:fast gru:scratch gru:fast lstm:scratch lstm:fast
  deep-rnn:fast bi-rnn:fast seq2seq:fast"
attention="nadaraya-watson:fast bahdanau:fast transformer:fast bert-pretrain:fast"
vision="augmentation:fast fine-tune:fast transposed-conv:fast anchors:fast fcn:fast style-transfer:fast
  bert-finetune:fast"
report=reproduction/REPRODUCTION.md
title="Reproduction of the book's experiments"
case $which in
  quick) runs=$quick ;;
  long) runs=$long ;;
  attention) runs=$attention ;;
  all) runs="$quick $long $attention" ;;
  vision) runs=$vision; report=reproduction/CHAPTERS_13_15.md
    title="Chapters 13-15 on the data that is here (not comparable with the book's numbers)" ;;
  *) echo "usage: $0 [OUT_DIR] [quick|long|attention|all|vision]" >&2; exit 2 ;;
esac
for run in $runs; do  # NAME:[IMPL][:EXTRA OPTION, as --flag=value]; no IMPL for a demo without --impl
  IFS=: read -r name impl extra <<< "$run"
  divekit run "$name" ${impl:+--impl "$impl"} ${extra/=/ } --out "$out" --no-progress
done
divekit report "$out" > /dev/null
{
  echo "# $title"
  echo
  echo "Produced by \`bash reproduction/reproduce_book.sh $out $which\` on $(date -u +%Y-%m-%d), $(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), torch $(python -c 'import torch; print(torch.__version__)'), seed 0."
  echo "\"builds\" is the spread of d2l's own published builds; \"reached\" means at least as good as the spread's worse end."
  echo
  tail -n +3 "$out/report.md"
} > "$report.tmp"
mv "$report.tmp" "$report"
echo "wrote $report"
