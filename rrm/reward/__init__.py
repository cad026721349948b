"""Reward models learned from feedback: ensemble, losses, update, normalisation."""

from rrm.reward.losses import bradley_terry_loss
from rrm.reward.model import INPUTS
from rrm.reward.model import SOURCES
from rrm.reward.model import RewardModel
from rrm.reward.model import fit_input_normalizer
from rrm.reward.model import init_ensemble
from rrm.reward.model import make_reward_model
from rrm.reward.model import member_returns
from rrm.reward.model import predict
from rrm.reward.update import RewardState
from rrm.reward.update import heldout_mask
from rrm.reward.update import init_reward_state
from rrm.reward.update import label_accuracy
from rrm.reward.update import learned_reward
from rrm.reward.update import make_optimizer
from rrm.reward.update import make_reward_update
from rrm.reward.update import refit_normalizer

__all__ = [
    "INPUTS", "SOURCES",
    "RewardModel", "RewardState", "bradley_terry_loss", "fit_input_normalizer",
    "heldout_mask",
    "init_ensemble", "init_reward_state", "label_accuracy", "learned_reward",
    "make_optimizer", "make_reward_model", "make_reward_update", "member_returns", "predict",
    "refit_normalizer",
]
