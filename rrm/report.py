"""A run's feedback-efficiency report, from its metrics.

  labels_to_threshold   labels spent (oracle/labels) at the first evaluation
                        whose true return reached threshold * baseline_return;
                        None if it never did (0 for a true-reward run that did)
  iteration_to_threshold  that evaluation's iteration
  final_return          the last evaluation's true return
  normalised_return     final_return / baseline_return
  labels_spent          labels paid for by the end
  budget_to_threshold, budget_spent  the same in units of feedback.budget:
                        every kind of feedback at its cost (preferences,
                        flags, ratings; feedback/budget_spent), which is
                        labels_* for a run of preferences alone
  final_aspects         the last evaluation's true return per reward
                        component (eval/reward_*): a true-reward run's are
                        the baseline of `reward_result_gap`

`reward_epic` (report.json's "reward_epic"): the EPIC distance (Gleave et
al. 2021) of the learned and the true reward on the training rollouts'
transitions, first, last, least and most over the run, where the env
declares its reward as a function of transitions (point_hazard).

`unacceptable_outcomes` (report.json's "unacceptable_outcomes"): the
unsafe events (rrm.safety, `env.unsafe_event`) the training rollouts
caused over the whole run: total, per 1000 env steps, how many iterations
had any, and the last iteration's count; with the user's unacceptable flags
(rrm.flags) also "flags": how many the user gave and flagged, the
teacher's mistakes among them, and the budget units spent in all
(preference labels + flags x safety.flag_cost).

`baseline_return` is the evaluated true return of a true-reward run of the
same config (`report.baseline_return`), the reference the paper's question
"how many labels does it take?" is asked against.

`reward_hacking` (report.json's "reward_hacking"): the iterations at which
the training rollouts' learned episode return had kept rising over the
last `window` iterations while their true episode return kept falling
(rrm.hacking.hacking_flags): the signature of a policy exploiting its
reward model (Leike et al. 2018, section 4).
"""

from __future__ import annotations

import collections
import math
from typing import Any, Iterable, Mapping

import numpy as np

from rrm import hacking

UNSAFE = "safety/unsafe_events"
FLAGS = "safety/flags_spent"
EPIC = "reward/epic"
LEARNED = "rollout/learned_episode_return"
TRUE = "rollout/true_episode_return"
# What the detector compares (config.report.hacking_signal): the training
# rollouts' last completed episode returns, or the iteration's mean per-step
# rewards. "step" sees every iteration even when an episode spans many of
# them (inverted_pendulum's 1000 steps, 25 iterations); its learned series
# jumps where the reward model is refitted (rrm.reward renormalises it).
SIGNALS = {"episode": (LEARNED, TRUE),
           "step": ("rollout/learned_reward", "rollout/true_reward")}


def _effort(m: Mapping[str, Any]) -> float:
  """Budget units spent by a metrics row: feedback/budget_spent where the
  run has other kinds than preferences, else its preference labels."""
  return float(m.get("feedback/budget_spent", m.get("oracle/labels", 0)))


def feedback_efficiency(metrics: Iterable[Mapping[str, Any]],
                        baseline_return: float | None,
                        threshold: float) -> dict[str, Any]:
  metrics = list(metrics)
  evals = [m for m in metrics if m.get("eval/true_return") is not None
           and math.isfinite(m["eval/true_return"])]
  last = evals[-1] if evals else None
  out: dict[str, Any] = {
      "baseline_return": baseline_return, "threshold": threshold,
      "labels_to_threshold": None, "iteration_to_threshold": None,
      "final_return": last["eval/true_return"] if last else None,
      "normalised_return": None,
      "labels_spent": None, "budget_to_threshold": None,
      "budget_spent": None,
  }
  out["final_aspects"] = ({k[len("eval/"):]: v for k, v in sorted(
      last.items()) if k.startswith("eval/reward_")} if last else {})
  spent = [m["oracle/labels"] for m in metrics if "oracle/labels" in m]
  out["labels_spent"] = int(spent[-1]) if spent else 0
  effort = [_effort(m) for m in metrics if "oracle/labels" in m]
  out["budget_spent"] = effort[-1] if effort else 0.0
  if baseline_return is None:
    return out
  if last is not None and baseline_return != 0:
    out["normalised_return"] = last["eval/true_return"] / baseline_return
  target = threshold * baseline_return
  for m in evals:
    if m["eval/true_return"] >= target:
      out["labels_to_threshold"] = int(m.get("oracle/labels", 0))
      out["budget_to_threshold"] = _effort(m) if "oracle/labels" in m else 0.0
      out["iteration_to_threshold"] = int(m["iteration"])
      break
  return out


class HackingWatch:
  """The detector, one iteration at a time (the host loop's metrics rows).

  `observe(row)` takes an iteration's metrics and returns its
  `hacking/flag` (1 when the window ending there flags), `hacking/
  learned_trend` and `hacking/true_trend` once `window` iterations are in
  (nothing before, nothing when off); the same decisions as
  `reward_hacking` over the whole run. `past`: the rows a resumed run
  already wrote, so a resume flags as the uninterrupted run does.
  """

  def __init__(self, window: int, threshold: float,
               past: Iterable[Mapping[str, Any]] = (),
               signal: str = "episode"):
    self.window, self.threshold = window, threshold
    self.learned, self.true = SIGNALS[signal]
    self.recent = collections.deque(maxlen=max(window, 1))
    for m in past:
      self._add(m)

  def _add(self, m: Mapping[str, Any]) -> bool:
    if self.learned not in m:  # (None: a resumed run's nan, read back)
      return False
    value = lambda k: float("nan") if m.get(k) is None else float(m[k])
    self.recent.append((value(self.learned), value(self.true)))
    return True

  def observe(self, row: Mapping[str, Any]) -> dict[str, float]:
    if not self.window or not self._add(row) or (
        len(self.recent) < self.window):
      return {}
    learned, true = (np.array(x) for x in zip(*self.recent))
    flag = hacking.hacking_flags(learned, true, self.window,
                                 self.threshold)[-1]  # the one full window
    return {"hacking/flag": float(flag),
            "hacking/learned_trend": hacking.trend(learned),
            "hacking/true_trend": hacking.trend(true)}


def reward_hacking(metrics: Iterable[Mapping[str, Any]], window: int,
                   threshold: float, signal: str = "episode"
                   ) -> dict[str, Any]:
  """The detector over a run's iterations (see the module docstring).

  Returns {"window", "threshold", "flagged_iterations", "first_flagged",
  "learned_trend", "true_trend" (the trends of the last window), "score"
  (the highest `hacking.hacking_score` of any window: the run's detector
  score, which an AUROC over runs ranks)}, or with
  "off" naming why nothing was computed: window 0, a true-reward run (its
  learned return is the true one), or fewer iterations than the window.
  """
  rows = [m for m in metrics if "iteration" in m]
  out: dict[str, Any] = {"window": window, "threshold": threshold,
                         "signal": signal, "flagged_iterations": [], "first_flagged": None,
                         "learned_trend": None, "true_trend": None,
                         "score": None}
  if window == 0:
    return {**out, "off": "config.report.hacking_window=0"}
  learned = SIGNALS[signal][0]
  if not rows or any(learned not in m for m in rows):
    return {**out, "off": f"no {learned} (a true-reward run)"}
  if len(rows) < window:
    return {**out, "off": f"{len(rows)} iterations, fewer than the window"}
  watch = HackingWatch(window, threshold,
                       signal=signal)  # the rows' own decisions
  decided = [(m, watch.observe(m)) for m in rows]
  flagged = [int(m["iteration"]) for m, d in decided
             if d.get("hacking/flag")]
  last = decided[-1][1]  # full: every row has LEARNED, len(rows) >= window
  return {**out, "flagged_iterations": flagged,
          "first_flagged": flagged[0] if flagged else None,
          "learned_trend": last["hacking/learned_trend"],
          "true_trend": last["hacking/true_trend"],
          "score": max(hacking.hacking_score(d["hacking/learned_trend"],
                                             d["hacking/true_trend"])
                       for _, d in decided if d)}


def unsafe_total(metrics: Iterable[Mapping[str, Any]]) -> float:
  """Unsafe events counted in the rows' training rollouts (rrm.safety)."""
  return float(sum(m.get(UNSAFE) or 0.0 for m in metrics))


def unacceptable_outcomes(metrics: Iterable[Mapping[str, Any]],
                          event: str) -> dict[str, Any]:
  """Unsafe events in the training rollouts over a run: {"event",
  "total", "per_1k_env_steps", "iterations_with_events",
  "last_iteration_events"}; "off" naming why when the run counted none."""
  rows = [m for m in metrics if "iteration" in m]
  out: dict[str, Any] = {"event": event, "total": None,
                         "per_1k_env_steps": None,
                         "iterations_with_events": None,
                         "last_iteration_events": None}
  if event == "none":
    return {**out, "off": "config.env.unsafe_event='none'"}
  if not rows or any(UNSAFE not in m for m in rows):
    return {**out, "off": f"no {UNSAFE} in the metrics"}
  total = unsafe_total(rows)
  steps = rows[-1].get("env_steps")
  out = {**out, "total": int(total),
         "per_1k_env_steps": 1000.0 * total / steps if steps else None,
         "iterations_with_events": sum(1 for m in rows if m[UNSAFE] > 0),
         "last_iteration_events": int(rows[-1][UNSAFE])}
  last = rows[-1]
  if FLAGS in last:
    out["flags"] = {"spent": int(last[FLAGS]),
                    "flagged": int(last["safety/flags_positive"]),
                    "teacher_errors": int(last["safety/flag_errors"]),
                    "budget_spent": float(last["feedback/budget_spent"])}
  return out


def reward_epic(metrics: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
  """EPIC distance of the learned and the true reward on the training
  rollouts (`reward/epic`, rrm.diagnostics.epic_metrics) over a run:
  {"first", "final", "min", "max"}, or "off" naming why it is absent."""
  values = [float(m[EPIC]) for m in metrics
            if m.get(EPIC) is not None and math.isfinite(m[EPIC])]
  if not values:
    return {"off": "no reward/epic: a true-reward run, report."
                   "epic_transitions=0, or an env without a declared "
                   "transition reward (rrm.envs.transition_reward)"}
  return {"first": values[0], "final": values[-1], "min": min(values),
          "max": max(values)}


def reward_result_gap(metrics: Iterable[Mapping[str, Any]],
                      baseline_aspects: Iterable[tuple[str, float]]
                      ) -> dict[str, dict[str, float | None]]:
  """Per reward component, the share of the true-reward baseline's final
  eval return that this run's last evaluation reached (Leike et al. 2018's
  reward-result gap, per aspect): {component: {"final", "baseline",
  "share"}}, share = final / baseline (for a cost, a negative component,
  share > 1 is more cost than the baseline's). Components the run never
  evaluated have final and share None.
  """
  evals = [m for m in metrics if m.get("eval/true_return") is not None]
  last = evals[-1] if evals else {}
  out = {}
  for name, baseline in baseline_aspects:
    final = last.get(f"eval/{name}")
    ok = final is not None and math.isfinite(final)
    out[name] = {"final": final if ok else None, "baseline": baseline,
                 "share": final / baseline if ok else None}
  return out
