"""Shared defaults of every reward-modeling run; env configs override them.

Not a launchable config by itself: see inverted_pendulum.py, hopper.py, ...
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # PRNG seed: same seed, same run (bit-exact on CPU)
  c.num_iterations = 100  # training iterations (one rollout + updates each)
  c.eval_every = 10  # iterations between deterministic evaluations
  c.checkpoint_every = 10  # iterations between checkpoints (0: none); also at the end
  c.keep_checkpoints = 3  # checkpoints kept in workdir/checkpoints

  c.env = ml_collections.ConfigDict()
  c.env.name = "inverted_pendulum"  # any Brax env name
  c.env.backend = "generalized"  # brax physics: generalized|positional|spring|mjx
  c.env.episode_length = 1000  # fixed training horizon (steps)
  c.env.eval_episode_length = 1000  # standard task's episode length for eval
  c.env.fixed_horizon = True  # no early termination; failure priced in reward
  c.env.on_failure = "reset"  # fixed horizon: reset | continue after a failure
  c.env.failure_reward = -10.0  # reward on steps the standard task would end on
  c.env.num_envs = 256  # parallel training envs (B)
  c.env.num_eval_envs = 16  # parallel evaluation episodes
  c.env.kwargs = ml_collections.ConfigDict()  # extra brax env constructor args
  # Unacceptable outcomes counted in training rollouts (rrm/safety.py):
  # auto (the env's own) | failure | hazard_entry (point_hazard) | none.
  c.env.unsafe_event = "auto"

  c.ppo = ml_collections.ConfigDict()  # names and meaning as brax's ppo.train
  c.ppo.unroll_length = 5  # steps per unroll (GAE window)
  c.ppo.batch_size = 256  # unrolls per minibatch
  c.ppo.num_minibatches = 8  # minibatches per epoch; rollout = batch * this
  c.ppo.num_updates_per_batch = 4  # epochs over each rollout
  c.ppo.learning_rate = 3e-4  # Adam step size
  c.ppo.entropy_cost = 1e-2  # entropy bonus weight
  c.ppo.discounting = 0.97  # gamma
  c.ppo.gae_lambda = 0.95  # GAE lambda
  c.ppo.clipping_epsilon = 0.3  # PPO ratio clip
  c.ppo.reward_scaling = 1.0  # multiplier on the (learned or true) reward
  c.ppo.normalize_observations = True  # running mean/std of observations
  c.ppo.max_grad_norm = None  # global-norm gradient clip (None: off)
  c.ppo.policy_hidden_layer_sizes = (32, 32, 32, 32)  # brax's default
  c.ppo.value_hidden_layer_sizes = (256, 256, 256, 256, 256)  # brax's default

  c.rl = ml_collections.ConfigDict()
  c.rl.algorithm = "ppo"  # ppo | sac (off-policy, PEBBLE-class: rrm/sac.py)

  # SAC (rl.algorithm = "sac"); names and meaning as brax's sac.train.
  c.sac = ml_collections.ConfigDict()
  c.sac.steps_per_iteration = 50  # actor steps of every env per iteration (T)
  c.sac.batch_size = 256  # transitions per SGD step
  c.sac.grad_updates_per_step = 1  # update-to-data ratio (SGD steps per actor step)
  c.sac.replay_capacity = 1_000_000  # FIFO replay (transitions)
  c.sac.min_replay_size = 8192  # initial-policy transitions before any SGD
  c.sac.learning_rate = 3e-4  # actor and critic Adam step size
  c.sac.alpha_learning_rate = 3e-4  # temperature Adam step size (brax's)
  c.sac.discounting = 0.99  # gamma
  c.sac.reward_scaling = 1.0  # multiplier on the (learned or true) reward
  c.sac.tau = 0.005  # target-network Polyak rate
  c.sac.normalize_observations = True  # running mean/std of observations
  c.sac.hidden_layer_sizes = (256, 256)  # actor and critic MLPs
  c.sac.q_network_layer_norm = False  # layer norm in the critics
  # PEBBLE: iterations of unsupervised pre-training on a k-NN state-entropy
  # reward before the first label (0: none); the initial batch is asked and
  # the critic reset when it ends.
  c.sac.pretrain_iterations = 0
  c.sac.entropy_k = 5  # k of the k-NN entropy estimate (PEBBLE's)

  c.reward = ml_collections.ConfigDict()
  c.reward.source = "learned"  # learned: from labels | true: baseline
  c.reward.input = "next_obs"  # obs | obs_action | next_obs (the step's outcome)
  c.reward.ensemble_size = 3  # members, each on its own bootstrap
  c.reward.hidden_layer_sizes = (64, 64)  # MLP widths
  c.reward.learning_rate = 1e-3  # AdamW step size
  c.reward.weight_decay = 1e-4  # AdamW decoupled weight decay
  c.reward.batch_size = 64  # label pairs per member per step
  c.reward.num_steps = 50  # SGD steps after each round of labels
  c.reward.initial_num_steps = 500  # SGD steps on the initial batch
  c.reward.heldout_every = 10  # every k-th label held out (0: none)
  c.reward.uncertainty_penalty = 0.0  # reward = mean - this * std over members

  c.feedback = ml_collections.ConfigDict()
  c.feedback.segment_length = 25  # L, steps per segment
  c.feedback.pool_size = 1024  # recent segments queries draw from
  c.feedback.segments_per_iteration = 256  # segments added to the pool per iteration
  c.feedback.budget = 200  # total labels (label dataset capacity)
  c.feedback.initial_labels = 50  # labels on random-policy segments, before RL
  c.feedback.labels_per_round = 10  # labels per round
  c.feedback.round_every = 1  # iterations between rounds
  # constant: labels_per_round per round until the budget is spent;
  # annealed | hyperbolic | inverse_quadratic: the budget after the initial
  # batch spread over schedule_horizon iterations (None: num_iterations).
  c.feedback.schedule = "constant"
  c.feedback.schedule_horizon = placeholder(int)
  # uniform | disagreement | entropy | recent (QPA: pairs from the
  # recent_segments most recently added segments; 0: segments_per_iteration)
  c.feedback.query_selector = "uniform"
  c.feedback.recent_segments = 0
  c.feedback.oversample = 10  # disagreement/entropy: candidates per query (K)
  # labels.npz of an earlier run to start from ('' = none; launch.train's
  # --labels=FILE sets it); extra=False counts them against the budget.
  c.feedback.warm_start_labels = ""
  c.feedback.warm_start_extra = False

  c.oracle = ml_collections.ConfigDict()
  # B-Pref teacher (rrm/oracle.py): oracle | stoch | mistake | skip | equal |
  # myopic. The fields below override the preset's values (None: preset).
  c.oracle.teacher = "oracle"
  c.oracle.beta = placeholder(float)  # rationality; inf = argmax
  c.oracle.gamma = placeholder(float)  # myopic discount (latest step weight 1)
  c.oracle.mistake = placeholder(float)  # probability of flipping a label
  c.oracle.skip = placeholder(float)  # skip if max(R1, R2) < skip * R_ref
  c.oracle.equal = placeholder(float)  # 0.5 if |R1 - R2| < equal * R_ref
  c.oracle.forward_discount = False  # imitation's gamma^k weights instead

  c.log = ml_collections.ConfigDict()
  c.log.tensorboard = False  # also write TensorBoard events
  c.log.print_every = 1  # iterations between progress lines
  # Weights & Biases: "off", "offline" (no server; `wandb sync` later) or
  # "online"; the [wandb] extra. One W&B run per workdir (rrm.logging).
  c.log.wandb = "off"
  c.log.wandb_project = "rrm"
  # Evaluation videos (GIF) in <workdir>/videos every this many iterations
  # and at the end; 0: none (rrm.video).
  c.log.videos_every = 0
  c.log.video_format = "gif"  # or "mp4", "webm" (the [video] extra)

  # Feedback efficiency (report.json, the launcher's summary): labels spent
  # when the evaluated true return first reaches threshold * baseline_return,
  # the eval return of a true-reward run of the same config (None: unknown).
  c.report = ml_collections.ConfigDict()
  c.report.baseline_return = placeholder(float)
  c.report.threshold = 0.9
  # Reward hacking (report.json's reward_hacking): iterations whose window
  # of the last `hacking_window` training rollouts saw the learned episode
  # return rise (Mann-Kendall trend >= hacking_threshold) while the true one
  # fell (<= -hacking_threshold). None: 10 (a shorter run never fills it);
  # 0: off; an explicit window must fit the run.
  c.report.hacking_window = placeholder(int)
  c.report.hacking_threshold = 0.6
  # What it reads: "episode" (the rollouts' last completed episode returns)
  # or "step" (the iteration's mean per-step rewards: for episodes that span
  # many iterations; the learned series jumps where the model is refitted).
  c.report.hacking_signal = "episode"
  # Reward-result gap (report.json's reward_result_gap): the true-reward
  # baseline's final eval return per reward component, e.g.
  # {"reward_forward": 950.0, "reward_ctrl": -40.0} (a true-reward run's
  # report.json lists them as final_aspects); JSON on the command line.
  c.report.baseline_aspects = placeholder(object)
  # The run certificate: report.md with PNG figures and provenance beside
  # report.json, for every run and sweep member (rrm/certificate.py).
  c.report.certificate = True
  # EPIC distance (Gleave et al. 2021) of the learned and the true reward on
  # each iteration's training rollout, `reward/epic` (rrm/diagnostics.py),
  # where the env declares its reward as a function of transitions
  # (point_hazard): transitions compared (0: off) and the samples of the
  # canonicalisation's state (visited outcomes) and action (uniform over
  # the action box) distributions.
  c.report.epic_transitions = 256
  c.report.epic_states = 16
  c.report.epic_actions = 8

  # The unacceptable flag (rrm/flags.py): the user flags segments of the
  # training rollouts that hold an unsafe event (env.unsafe_event), each flag
  # costing flag_cost units of feedback.budget (the preference labels get the
  # rest); a classifier of unsafe steps learns from them and RL maximises
  # r - penalty * P(unsafe). flags=0: off (and penalty must be 0).
  c.safety = ml_collections.ConfigDict()
  c.safety.flags = 0  # flags over the run
  c.safety.flag_cost = 0.5  # budget units per flag (a comparison costs 1)
  c.safety.flags_per_round = 16  # flags asked every feedback.round_every
  c.safety.mistake = 0.0  # probability the teacher's flag is wrong
  c.safety.penalty = 0.0  # per step, in learned-reward standard deviations
  c.safety.hidden_layer_sizes = (64, 64)
  c.safety.learning_rate = 1e-3
  c.safety.batch_size = 64
  c.safety.num_steps = 50

  # Scalar ratings (rrm/ratings.py): the user rates single pool segments on
  # 1..levels, each rating costing rating_cost units of feedback.budget (the
  # preference labels get the rest); the reward model learns them by ordinal
  # regression beside the comparisons. ratings=0: off. A ratings-only run
  # sets feedback.initial_labels=0 and budget = ratings x rating_cost.
  c.ratings = ml_collections.ConfigDict()
  c.ratings.ratings = 0  # ratings over the run
  c.ratings.rating_cost = 0.5  # budget units per rating (a comparison: 1)
  c.ratings.initial = 0  # asked before the first iteration
  c.ratings.per_round = 16  # asked every feedback.round_every after that
  c.ratings.levels = 10  # the scale 1..levels
  c.ratings.noise = 0.5  # the synthetic teacher's noise (rating units, std)
  c.ratings.headroom = 2.0  # its scale: headroom x the random pool's spread
  c.ratings.weight = 1.0  # ordinal loss beside the Bradley-Terry loss
  c.ratings.learning_rate = 1e-2  # the learner's thresholds and slope
  c.ratings.batch_size = 64
  c.ratings.selector = "uniform"  # or "disagreement" (rrm/ratings.py)

  # Recursive reward modeling (rrm/recursive/). user: none (the plain
  # loop) | limited | assisted | full_view; the others need a task tree over
  # the env's reward components, e.g.
  #   {"name": "hopper", "children": [
  #       {"name": "forward", "aspect": "reward_forward"},
  #       {"name": "upright", "aspect": "reward_healthy"},
  #       {"name": "effort", "aspect": "reward_ctrl"}]}
  # On the command line: --config.recursive.tree='{"name": ...}' (a Python
  # dict literal or JSON).
  c.recursive = ml_collections.ConfigDict()
  c.recursive.user = "none"
  c.recursive.tree = placeholder(object)  # object: overridable by a literal
  c.recursive.visible = ()  # limited: the aspects the user perceives
  c.recursive.decay = 0.0  # limited: rationality beta / n^decay
  c.recursive.level_fractions = ()  # assisted: budget share per level, root first
  c.recursive.helpers = "learned"  # assisted: learned | perfect (ablation)
  return c


def shrink_sac_for_smoke(c: ml_collections.ConfigDict) -> None:
  """The SAC sizes of the envs' CPU-tiny "sac_smoke" variants (tests)."""
  c.sac.steps_per_iteration = 20
  c.sac.batch_size = 16
  c.sac.grad_updates_per_step = 1
  c.sac.replay_capacity = 256
  c.sac.min_replay_size = 16
  c.sac.hidden_layer_sizes = (16,)
  c.sac.pretrain_iterations = 1
  c.sac.entropy_k = 3
