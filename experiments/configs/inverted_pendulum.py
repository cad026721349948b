"""Reward modeling on Brax inverted_pendulum (the `make run` default).

  python -m launch.train --config=experiments/configs/inverted_pendulum.py \
      --workdir=/tmp/rrm/pendulum
  # true-reward baseline through the same code:
  python -m launch.train --config=experiments/configs/inverted_pendulum.py \
      --config.reward.source=true --workdir=/tmp/rrm/pendulum_true
  # tiny variant for tests:
  python -m launch.train --config=experiments/configs/inverted_pendulum.py:smoke
"""

from experiments.configs import base


def get_config(arg: str = ""):
  c = base.get_base_config()
  c.env.name = "inverted_pendulum"
  # `generalized` diverges (nan) once the pole spins freely, which the
  # fixed-horizon variant allows; positional stays finite and is as fast.
  c.env.backend = "positional"
  c.num_iterations = 40
  c.eval_every = 5
  # Measured here (seeds 0 and 2, 200 labels): uniform queries with 3 members
  # reach 1000 but do not hold it once the labels stop (final 180-700); with
  # 5 members and disagreement queries both reach 1000 by iteration 20-25 and
  # hold it to the end.
  c.reward.ensemble_size = 5
  c.feedback.query_selector = "disagreement"
  # `make run-true` (true reward, same config): eval return 1000 from
  # iteration 15 on (measured, 2-core CPU); the task's maximum.
  c.report.baseline_return = 1000.0
  if arg == "smoke":
    c.num_iterations = 6
    c.eval_every = 3
    c.env.num_envs = 32
    c.env.num_eval_envs = 4
    c.env.episode_length = 100
    c.env.eval_episode_length = 100
    c.ppo.batch_size = 32
    c.ppo.num_minibatches = 4
    c.ppo.policy_hidden_layer_sizes = (16, 16)
    c.ppo.value_hidden_layer_sizes = (32, 32)
    c.feedback.segment_length = 10
    c.feedback.pool_size = 128
    c.feedback.segments_per_iteration = 32
    c.feedback.budget = 120
    c.feedback.initial_labels = 80
    c.reward.ensemble_size = 3
    c.reward.hidden_layer_sizes = (32, 32)
    c.reward.initial_num_steps = 1000
    c.reward.num_steps = 50
  elif arg:
    raise ValueError(f"unknown variant {arg!r}; known: '' (default), 'smoke'")
  return c
