"""Shared settings of the Brax locomotion configs (hopper, halfcheetah, ant).

Sizes follow brax's published PPO settings for these tasks (2048 envs,
unroll 20, 32 minibatches); the reward model and label budget are larger
than inverted_pendulum's. Each env file adds only its name.

Variant "sac": the policy trained by SAC (rrm/sac.py) at the sizes of
MuJoCo Playground's tuned brax SAC for DM Control (128 envs, batch 512, 8
gradient updates per step, discount 0.99, min replay 8192; the installed
brax ships no tuned SAC settings for these tasks, so they are not tuned
here either) with learning rate 6e-4, 5M env steps, and PEBBLE's
pre-training and label schedule. "sac_smoke" is its CPU-sized twin.
"""

from experiments.configs import base


def get_locomotion_config(name: str, arg: str = ""):
  c = base.get_base_config()
  c.env.name = name
  c.env.backend = "positional"
  c.num_iterations = 600  # ~12M env steps at 2048 envs
  c.eval_every = 20
  c.env.num_envs = 2048
  c.env.num_eval_envs = 64
  c.ppo.batch_size = 512
  c.ppo.num_minibatches = 32
  c.ppo.num_updates_per_batch = 8
  c.ppo.unroll_length = 20
  c.ppo.discounting = 0.97
  c.ppo.entropy_cost = 1e-3
  c.ppo.reward_scaling = 1.0
  c.feedback.segment_length = 50
  c.feedback.pool_size = 4096
  c.feedback.segments_per_iteration = 1024
  c.feedback.budget = 2000  # labels
  c.feedback.initial_labels = 200
  c.feedback.labels_per_round = 20
  c.feedback.round_every = 5
  c.reward.hidden_layer_sizes = (256, 256)
  if arg in ("sac", "sac_smoke"):
    c.rl.algorithm = "sac"
    c.env.num_envs = 128
    c.sac.steps_per_iteration = 200
    c.sac.batch_size = 512
    c.sac.grad_updates_per_step = 8
    c.sac.learning_rate = 6e-4
    c.sac.discounting = 0.99
    c.sac.replay_capacity = 1_048_576
    c.sac.min_replay_size = 8192
    c.sac.pretrain_iterations = 2
    c.num_iterations = 195  # ~5M env steps
    c.eval_every = 10
    c.feedback.segments_per_iteration = 512
    c.feedback.round_every = 2
  if arg in ("smoke", "sac_smoke"):
    c.num_iterations = 2
    c.eval_every = 2
    c.env.num_envs = 8
    c.env.num_eval_envs = 2
    c.env.episode_length = 50
    c.env.eval_episode_length = 50
    c.ppo.batch_size = 8
    c.ppo.num_minibatches = 2
    c.ppo.num_updates_per_batch = 1
    c.ppo.unroll_length = 10
    c.ppo.policy_hidden_layer_sizes = (16,)
    c.ppo.value_hidden_layer_sizes = (16,)
    c.feedback.segment_length = 10
    c.feedback.pool_size = 16
    c.feedback.segments_per_iteration = 8
    c.feedback.budget = 20
    c.feedback.initial_labels = 10
    c.feedback.labels_per_round = 5
    c.feedback.round_every = 1
    c.reward.hidden_layer_sizes = (16,)
    c.reward.initial_num_steps = 10
    c.reward.num_steps = 5
  if arg == "sac_smoke":
    base.shrink_sac_for_smoke(c)
  if arg not in ("", "smoke", "sac", "sac_smoke"):
    raise ValueError(f"unknown variant {arg!r}; known: '' (default), "
                     "'smoke', 'sac', 'sac_smoke'")
  return c
