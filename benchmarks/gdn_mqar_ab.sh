#!/usr/bin/env bash
# Which piece of the GPU path loses zoo-gated-deltanet's MQAR learning? (issue 21: d 128 scored
# 0.000 on an H200 in the mqar cut; on the CPU, fp32 torch path, it learns.) Trains the spec at
# d_model 128 on the cut's task (seq_len 128, 8 kv pairs, vocab 8192, 20k examples, 16 epochs,
# lr 2.15e-3 and 1e-2) four ways -- engine ensemble | plain x precision auto (bf16) | fp32 --
# each with the layer's impl triton and torch, and prints each bench's score table.
#   bash benchmarks/gdn_mqar_ab.sh            # on the GPU; rows and logs under $OUT/gdn-ab
# Env overrides shrink it for a CPU dry run: EPOCHS BS D V L KV N DEV T (seconds per bench).
set -u
R=${OUT:-.}/gdn-ab; G=$(mktemp -d); mkdir -p "$R"
for i in triton torch; do
  sed -e "s/^  - gated-deltanet\$/  - {type: gated-deltanet, impl: $i}/" -e "s/^name: .*/name: gdn-$i/" \
    architectures/zoology/gated-deltanet.yaml > "$G/gdn-$i.yaml"
done
for p in auto fp32; do cat > "$G/cut-$p.yaml" <<Y
name: gdn-cut-$p
training: {epochs: ${EPOCHS:-16}, batch_size: ${BS:-256}, betas: [0.9, 0.999], min_lr: 0.0, warmup_steps: 0,
           grad_clip: null, stop_at_accuracy: 0.99, eval_select: last, seed: 12345, precision: $p}
grid: {lr: [2.1544e-3, 1.0e-2], weight_decay: [0.1], d_model: [${D:-128}]}
tasks:
  mqar:
    baseline: {vocab_size: ${V:-8192}, seq_len: ${L:-128}, num_kv_pairs: ${KV:-8}, num_train_examples: ${N:-20000},
               num_test_examples: 1000, power_a: 0.01, random_non_queries: false}
Y
done
for e in ensemble plain; do for p in auto fp32; do
  timeout -k 5 "${T:-130}" python -m mad_bench.cli bench "$G"/gdn-*.yaml --suite "$G/cut-$p.yaml" --device "${DEV:-cuda}" \
    --engine $e --workers 4 --results "$R/$e-$p" > "$R/$e-$p.log" 2>&1
  echo "== engine $e, precision $p: rc $?"; grep "│" "$R/$e-$p.log"
done; done
