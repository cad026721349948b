"""A run's feedback-efficiency report, from its metrics.

  labels_to_threshold   labels spent (oracle/labels) at the first evaluation
                        whose true return reached threshold * baseline_return;
                        None if it never did (0 for a true-reward run that did)
  iteration_to_threshold  that evaluation's iteration
  final_return          the last evaluation's true return
  normalised_return     final_return / baseline_return
  labels_spent          labels paid for by the end

`baseline_return` is the evaluated true return of a true-reward run of the
same config (`report.baseline_return`), the reference the paper's question
"how many labels does it take?" is asked against.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping


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
      "labels_spent": None,
  }
  spent = [m["oracle/labels"] for m in metrics if "oracle/labels" in m]
  out["labels_spent"] = int(spent[-1]) if spent else 0
  if baseline_return is None:
    return out
  if last is not None and baseline_return != 0:
    out["normalised_return"] = last["eval/true_return"] / baseline_return
  target = threshold * baseline_return
  for m in evals:
    if m["eval/true_return"] >= target:
      out["labels_to_threshold"] = int(m.get("oracle/labels", 0))
      out["iteration_to_threshold"] = int(m["iteration"])
      break
  return out
