"""Shared settings of the DM Control configs (walker_walk, cheetah_run).

The tasks come from MuJoCo Playground (`pip install -e '.[playground]'`) and
run on MJX. PPO sizes follow Playground's tuned brax PPO settings for the DM
Control Suite (`mujoco_playground.config.dm_control_suite_params`: 2048 envs,
unroll 30, 32 minibatches of 1024, 16 epochs, discount 0.995, reward scaling
10, ~60M steps); episodes, segments and label budgets follow B-Pref (Lee et
al. 2021): 1000-step episodes, 50-step segments. Each env file adds its name
and budget.

Variants: "sac" trains the policy with SAC (rrm/sac.py) at Playground's tuned
brax SAC settings for these tasks (`dm_control_suite_params.brax_sac_config`:
128 envs, batch 512, 8 gradient updates per step, learning rate 1e-3,
discount 0.99, layer-normed critics, min replay 8192; 5M steps for
walker_walk, 10M for cheetah_run) with PEBBLE's schedule (Lee et al. 2021):
unsupervised pre-training on the state-entropy reward first, then labels in
rounds, the replay relabelled after each reward-model update. "sac_smoke"
is its CPU-sized twin; "smoke" the PPO one.
"""

from experiments.configs import base


def get_dmc_config(name: str, arg: str = ""):
  c = base.get_base_config()
  c.env.name = name  # rrm's (B-Pref's) name of a Playground DM Control task
  c.env.backend = "mjx"  # Playground tasks run on MJX only
  # Playground config overrides; MJX implementation: jax | warp (NVIDIA GPU).
  c.env.kwargs.impl = "jax"
  c.env.episode_length = 1000  # the DM Control episode; tasks never terminate
  c.env.eval_episode_length = 1000
  # DM Control tasks have no failure states: only a diverged (nan) step counts
  # as one, and it pays the task's minimum reward, 0.
  c.env.failure_reward = 0.0
  c.num_iterations = 60  # ~59M env steps (983k per iteration)
  c.eval_every = 5
  c.env.num_envs = 2048
  c.env.num_eval_envs = 64
  c.ppo.unroll_length = 30
  c.ppo.batch_size = 1024
  c.ppo.num_minibatches = 32
  c.ppo.num_updates_per_batch = 16
  c.ppo.learning_rate = 1e-3
  c.ppo.entropy_cost = 1e-2
  c.ppo.discounting = 0.995
  c.ppo.reward_scaling = 10.0  # per-step rewards are in [0, 1]
  c.feedback.segment_length = 50  # B-Pref
  c.feedback.pool_size = 4096
  c.feedback.segments_per_iteration = 1024
  c.feedback.budget = 1000  # labels
  c.feedback.initial_labels = 100
  c.feedback.labels_per_round = 20  # 45 rounds of 20 after the initial 100
  c.feedback.round_every = 1
  c.reward.hidden_layer_sizes = (256, 256)
  # No true-reward run of these configs has been measured yet.
  c.report.baseline_return = None
  if arg in ("sac", "sac_smoke"):
    _sac(c, name)
  if arg in ("smoke", "sac_smoke"):
    # CPU-sized: MJX compiles slowly on CPU, and walker_walk takes 10 physics
    # substeps per env step, so everything is as small as still exercises the
    # whole loop (two iterations, a round of labels, an evaluation).
    c.num_iterations = 2
    c.eval_every = 2
    c.checkpoint_every = 2
    c.env.num_envs = 4
    c.env.num_eval_envs = 2
    c.env.episode_length = 20
    c.env.eval_episode_length = 20
    c.ppo.unroll_length = 10
    c.ppo.batch_size = 4
    c.ppo.num_minibatches = 2
    c.ppo.num_updates_per_batch = 1
    c.ppo.policy_hidden_layer_sizes = (16,)
    c.ppo.value_hidden_layer_sizes = (16,)
    c.feedback.segment_length = 10
    c.feedback.pool_size = 16
    c.feedback.segments_per_iteration = 8
    c.feedback.budget = 20
    c.feedback.initial_labels = 10
    c.feedback.labels_per_round = 5
    c.reward.ensemble_size = 2
    c.reward.hidden_layer_sizes = (16,)
    c.reward.initial_num_steps = 10
    c.reward.num_steps = 5
  if arg == "sac_smoke":
    base.shrink_sac_for_smoke(c)
  if arg not in ("", "smoke", "sac", "sac_smoke"):
    raise ValueError(f"unknown variant {arg!r}; known: '' (default), "
                     "'smoke', 'sac', 'sac_smoke'")
  return c


def _sac(c, name: str) -> None:
  """Playground's brax SAC settings and PEBBLE's label schedule."""
  c.rl.algorithm = "sac"
  c.env.num_envs = 128
  c.sac.steps_per_iteration = 200  # 25.6k env steps per iteration
  c.sac.batch_size = 512
  c.sac.grad_updates_per_step = 8
  c.sac.learning_rate = 1e-3
  c.sac.discounting = 0.99
  c.sac.replay_capacity = 1_048_576
  c.sac.min_replay_size = 8192
  c.sac.q_network_layer_norm = True
  c.sac.hidden_layer_sizes = (256, 256)
  c.sac.pretrain_iterations = 2  # ~51k steps on the entropy reward
  steps = {"walker_walk": 5_000_000, "cheetah_run": 10_000_000}.get(
      name, 5_000_000)
  c.num_iterations = steps // (128 * 200)  # 195 (walker) / 390 (cheetah)
  c.eval_every = 10
  c.feedback.pool_size = 2048
  c.feedback.segments_per_iteration = 512
  c.feedback.initial_labels = 100
  # The rest of the budget (900 of 1000) in rounds of 10 every 2 iterations:
  # spent by iteration ~180 of walker_walk's 195.
  c.feedback.labels_per_round = 10
  c.feedback.round_every = 2
