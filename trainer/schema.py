"""The run schema: every param, tag and metric name a run carries, in one place.

Trainer, importers, analysis and app all import names from here, so that renaming a field is a one-line change
and a reader can never disagree with a writer. This module is pure Python (no torch, no mlflow) so the analysis
layer and the dashboard can import it cheaply. The human-readable version is docs/run-schema.md; a test checks
that both list the same names.

Conventions
-----------
* **Params** are the run's flattened, fully resolved config: dotted keys ``section.field`` exactly as in the YAML
  config (``model.width``, ``hp.lr``, ``mult.lr.token_emb`` …). Every field of the config is logged, so a run's
  config can be rebuilt from its params alone (``trainer.config.RunConfig.from_flat``). Multipliers that are absent
  mean 1.0.
* **Tags** describe provenance and state (sweep id, config hash, status, git commit, device, command).
* **Metrics**: histories are logged against the optimizer step; summary metrics (prefix ``summary.``) are logged once
  at the end of a run so that one bulk query builds the analysis table without touching histories.
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 1

# --- scale axes: the config fields a transfer study varies, keyed by the axis name used in analysis and app ---
AXES: Final[dict[str, str]] = {
    "width": "model.width",
    "depth": "model.depth",
    "batch": "train.batch_size",
    "tokens": "train.tokens",
    "experts": "model.n_experts",
    "expert_width": "model.expert_mlp_ratio",
}

# --- params that are derived (not config fields) but logged for convenience ---
P_N_PARAMS: Final = "derived.n_params"  # all trainable parameters
P_N_PARAMS_NON_EMB: Final = "derived.n_params_non_emb"  # without token/position embeddings (scaling-law N)
P_STEPS: Final = "derived.steps"  # optimizer steps = tokens / (batch_size * seq_len)
P_HEAD_DIM: Final = "derived.head_dim"
P_N_HEADS: Final = "derived.n_heads"
P_D_FF: Final = "derived.d_ff"
P_WIDTH_RATIO: Final = "derived.m_width"  # m_N = width / base_width
P_DEPTH_RATIO: Final = "derived.m_depth"  # m_L = depth / base_depth
P_BATCH_RATIO: Final = "derived.m_batch"  # m_B = batch / base_batch
P_TOKENS_RATIO: Final = "derived.m_tokens"  # m_D = tokens / base_tokens
P_N_PARAMS_ACTIVE: Final = "derived.n_params_active"  # non-embedding params a token uses (MoE: k of E experts)
P_TOP_K: Final = "derived.top_k"  # active experts per token (MoE)
P_D_EXPERT: Final = "derived.d_expert"  # expert hidden width (MoE)
DERIVED_PARAMS: Final = (
    P_N_PARAMS, P_N_PARAMS_NON_EMB, P_STEPS, P_HEAD_DIM, P_N_HEADS, P_D_FF,
    P_WIDTH_RATIO, P_DEPTH_RATIO, P_BATCH_RATIO, P_TOKENS_RATIO, P_N_PARAMS_ACTIVE, P_TOP_K, P_D_EXPERT,
)

# --- frequently used config params (full list: trainer.config field names, flattened) ---
P_PARAMETERIZATION: Final = "param.name"
P_ALPHA: Final = "param.alpha"
P_LR: Final = "hp.lr"
P_INIT_STD: Final = "hp.init_std"
P_WEIGHT_DECAY: Final = "hp.weight_decay"
P_SEED: Final = "train.seed"
# Base hyperparameters that analysis optimises when a sweep varies them (besides every mult.*): positive and
# multiplicative, so log2 is their axis, and μTransferable (TP5 Table 1: learning rate, init scale,
# input/output/attention multipliers).
TUNABLE_HPS: Final = (P_LR, P_INIT_STD, "hp.emb_mult", "hp.out_mult", "hp.attn_mult")
MULT_PREFIX: Final = "mult."  # mult.<kind>.<module>, kind in MULT_KINDS
MULT_KINDS: Final = ("lr", "init", "wd", "eps", "beta1", "beta2")
RESID_PREFIX: Final = "mult.resid."  # mult.resid.attn, mult.resid.mlp

# --- sweep parent runs ---
P_SWEEP_N_CONFIGS: Final = "sweep.n_configs"
P_SWEEP_DIMS: Final = "sweep.dims"  # JSON {dotted key: [values]} of the varied fields
A_SWEEP_SPEC: Final = "sweep_spec.yaml"  # the spec as written
A_SWEEP_PLAN: Final = "sweep_plan.json"  # base config, dimensions and every point with its config hash

# --- tags ---
T_SWEEP_ID: Final = "sweep.id"  # the sweep this run belongs to (children and the parent sweep run)
T_SWEEP_NAME: Final = "sweep.name"
T_RUN_KIND: Final = "run.kind"  # one of RUN_KINDS
T_CONFIG_HASH: Final = "config.hash"  # sha256 of the canonical resolved config (trainer.config.config_hash)
T_STATUS: Final = "run.status"  # trainer's own verdict, one of STATUSES
T_STATUS_REASON: Final = "run.status_reason"  # human-readable why (NaN at step 41, exception text, …)
T_GIT_COMMIT: Final = "git.commit"
T_GIT_DIRTY: Final = "git.dirty"  # "true" when the working tree had uncommitted changes
T_DEVICE: Final = "device"  # e.g. "cpu (2 threads)" or "cuda: NVIDIA H100 80GB HBM3"
T_HOST: Final = "host"
T_COMMAND: Final = "command"  # the command line that produced the run
T_SOURCE: Final = "source"  # "trainer" for our runs, "import:<name>" for imported external data
T_TRAINER_VERSION: Final = "trainer.schema_version"
T_PARENT_RUN_ID: Final = "mlflow.parentRunId"  # MLflow's own tag for nested runs
T_BATCH_SIZE: Final = "batched.size"  # trained in a batched group of this many configs (trainer.batched)
T_BATCH_INDEX: Final = "batched.index"  # this run's index in its batched group
T_SUPERSEDED_BY: Final = "run.superseded_by"  # set on an interrupted run when a resumed sweep re-ran its config

RUN_KIND_TRAIN: Final = "train"  # a training run (the only kind analysis fits)
RUN_KIND_SWEEP: Final = "sweep"  # the parent run of a sweep
RUN_KIND_COORD: Final = "coord_check"  # one (parameterization, scale) of a coordinate check
RUN_KINDS: Final = (RUN_KIND_TRAIN, RUN_KIND_SWEEP, RUN_KIND_COORD)

# run.status values written by the trainer. Analysis refines these (truncated, duplicate, late blow-up …).
STATUS_RUNNING: Final = "running"
STATUS_OK: Final = "ok"
STATUS_DIVERGED: Final = "diverged"
STATUS_FAILED: Final = "failed"
STATUS_INTERRUPTED: Final = "interrupted"  # found still "running" by a resumed sweep; its config was re-run
STATUSES: Final = (STATUS_RUNNING, STATUS_OK, STATUS_DIVERGED, STATUS_FAILED, STATUS_INTERRUPTED)
FINISHED_STATUSES: Final = (STATUS_OK, STATUS_DIVERGED)  # a resumed sweep never re-trains these

# --- history metrics (step = optimizer step) ---
M_TRAIN_LOSS: Final = "train.loss"
M_VAL_LOSS: Final = "val.loss"
M_LR_SCALE: Final = "train.lr_scale"  # schedule factor sched(t) in [0, 1]; group LR = sched(t) * group base LR
M_GRAD_NORM: Final = "train.grad_norm"  # before clipping
M_TOKENS_PER_S: Final = "perf.tokens_per_s"
M_MFU: Final = "perf.mfu"  # only on CUDA devices with a known peak
M_MOE_LOAD_CV: Final = "moe.load_cv"  # coefficient of variation of the tokens-per-expert fractions (mean over layers)
M_MOE_ENTROPY: Final = "moe.router_entropy"  # mean router entropy / log(E): 1 = uniform, 0 = one-hot
M_MOE_DROPPED: Final = "moe.dropped_frac"  # fraction of token-expert assignments dropped by the capacity limit
HISTORY_METRICS: Final = (M_TRAIN_LOSS, M_VAL_LOSS, M_LR_SCALE, M_GRAD_NORM, M_TOKENS_PER_S, M_MFU,
                          M_MOE_LOAD_CV, M_MOE_ENTROPY, M_MOE_DROPPED)

# --- summary metrics (logged once, at the end of a run, also for diverged runs) ---
S_INITIAL_LOSS: Final = "summary.initial_loss"  # train loss of the first step
S_FINAL_TRAIN_LOSS: Final = "summary.final_train_loss"  # mean train loss over the last 10% of logged steps
S_FINAL_VAL_LOSS: Final = "summary.final_val_loss"  # val loss after the last step (the default objective)
S_BEST_VAL_LOSS: Final = "summary.best_val_loss"
S_MAX_TRAIN_LOSS: Final = "summary.max_train_loss"
S_MIN_TRAIN_LOSS: Final = "summary.min_train_loss"  # lowest logged train-loss point (late blow-up detection)
S_STEPS_DONE: Final = "summary.steps_done"
S_TOKENS_SEEN: Final = "summary.tokens_seen"
S_TOKENS_PER_S: Final = "summary.tokens_per_s"
S_MFU: Final = "summary.mfu"
S_WALL_S: Final = "summary.wall_s"
S_DIVERGED_STEP: Final = "summary.diverged_step"  # only for diverged runs
S_MOE_LOAD_CV: Final = "summary.moe_load_cv"  # MoE: last logged load CV
S_MOE_ENTROPY: Final = "summary.moe_router_entropy"  # MoE: last logged normalised router entropy
SUMMARY_METRICS: Final = (
    S_INITIAL_LOSS, S_FINAL_TRAIN_LOSS, S_FINAL_VAL_LOSS, S_BEST_VAL_LOSS, S_MAX_TRAIN_LOSS, S_MIN_TRAIN_LOSS,
    S_STEPS_DONE,
    S_TOKENS_SEEN, S_TOKENS_PER_S, S_MFU, S_WALL_S, S_DIVERGED_STEP, S_MOE_LOAD_CV, S_MOE_ENTROPY,
)

# --- artifacts ---
A_CONFIG: Final = "config.json"  # the resolved config (same content as the params, nested)
A_EFFECTIVE_GROUPS: Final = "effective_groups.json"  # the `trainer explain` table: per-group init/fwd/lr/eps/wd/betas
A_COORD_CHECK: Final = "coord_check.json"
A_MOE_LOAD: Final = "moe_load.json"  # MoE: final fraction of tokens per expert, per layer

# --- coordinate-check metric names (``python -m trainer coord-check``) ---
COORD_PREFIX: Final = "coord."  # coord.<module>.act and coord.<module>.delta, step = training step
