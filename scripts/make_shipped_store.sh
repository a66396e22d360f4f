#!/usr/bin/env bash
# Regenerate every sweep shipped in mlruns/ (issue 6) with our own trainer, on this machine.
# Resumable: rerunning skips finished configs, so it can be stopped and continued at any time.
#   ./scripts/make_shipped_store.sh                 # everything, into the default store (mlruns/mlflow.db)
#   ./scripts/make_shipped_store.sh width depth     # only some parts
# Extra flags for every sweep (e.g. an executor) go in $SWEEP_FLAGS; another store in $MLFLOW_TRACKING_URI.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=.venv/bin/python
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(coord width depth batch experts per-module readout mup-demo compact)
for part in "${parts[@]}"; do
  case "$part" in
    coord)
      $PY -m trainer coord-check sweeps/base.yaml --axis width --values 32,64,128,256,512 --param sp,mup,completep \
        --steps 10 --lr 0.01 --experiment coord-check
      $PY -m trainer coord-check sweeps/base.yaml --set model.width=64 --axis depth --values 2,4,8,16,32 \
        --param mup,completep --steps 10 --lr 0.01 --experiment coord-check ;;
    width) $PY -m trainer sweep sweeps/width.yaml ${SWEEP_FLAGS:-} ;;
    depth) $PY -m trainer sweep sweeps/depth_mup.yaml ${SWEEP_FLAGS:-}
           $PY -m trainer sweep sweeps/depth_completep.yaml ${SWEEP_FLAGS:-}
           $PY -m trainer sweep sweeps/depth_completep_alpha05.yaml ${SWEEP_FLAGS:-} ;;
    batch) $PY -m trainer sweep sweeps/batch_duration.yaml ${SWEEP_FLAGS:-} ;;
    experts) $PY -m trainer sweep sweeps/experts.yaml ${SWEEP_FLAGS:-} ;;
    per-module) $PY -m trainer sweep sweeps/per_module.yaml ${SWEEP_FLAGS:-} ;;
    readout) $PY -m trainer sweep sweeps/readout_init.yaml ${SWEEP_FLAGS:-} ;;
    mup-demo)
      $PY -m analysis import tests/data/mup_demo_mlp/mup_demo_mlp_cifar10_lr_sweep.csv \
        --mapping tests/data/mup_demo_mlp/mapping.yaml --experiment mup-demo-cifar10 --replace ;;
    compact) $PY -m trainer compact-store --max-points 20 ;;  # thinned histories: the store stays ~50 MB
    *) echo "unknown part $part (coord width depth batch experts per-module readout mup-demo compact)" >&2; exit 2 ;;
  esac
done
