"""Feedback efficiency: labels-to-threshold and normalised return."""

from rrm import report


def _m(it, labels, ret=None):
  m = {"iteration": it, "oracle/labels": labels}
  if ret is not None:
    m["eval/true_return"] = ret
  return m


def test_labels_to_threshold_is_the_first_evaluation_over_the_bar():
  metrics = [_m(1, 60), _m(2, 70, 500.0), _m(3, 80), _m(4, 90, 905.0),
             _m(5, 100), _m(6, 110, 880.0)]
  r = report.feedback_efficiency(metrics, 1000.0, 0.9)
  assert r["labels_to_threshold"] == 90 and r["iteration_to_threshold"] == 4
  assert r["final_return"] == 880.0
  assert r["normalised_return"] == 0.88
  assert r["labels_spent"] == 110
  # Any iterable of metrics, e.g. a generator over a metrics file.
  assert report.feedback_efficiency(iter(metrics), 1000.0, 0.9) == r


def test_not_reached_unknown_baseline_and_true_reward_runs():
  metrics = [_m(1, 60, 100.0), _m(2, 70, 200.0)]
  assert report.feedback_efficiency(metrics, 1000.0, 0.9)[
      "labels_to_threshold"] is None
  r = report.feedback_efficiency(metrics, None, 0.9)
  assert r["normalised_return"] is None and r["final_return"] == 200.0
  true_run = [{"iteration": 1, "eval/true_return": 950.0}]
  r = report.feedback_efficiency(true_run, 1000.0, 0.9)
  assert r["labels_to_threshold"] == 0 and r["labels_spent"] == 0
