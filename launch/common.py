"""Flag parsing shared by the launchers: config errors without tracebacks."""

import os
import sys

from absl import flags


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with config-file errors reported without traceback.

  The config file is executed while flags are parsed; a syntax error in it,
  a missing file or an override of a field that does not exist would
  otherwise end in a traceback.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"FATAL Flags parsing error: {e}\n"
          "Pass --helpshort or --helpfull to see help on flags.",
          file=sys.stderr)
    sys.exit(2)
  except Exception as e:  # pylint: disable=broad-except
    config_unparsable(e, argv)


def _unknown_field(e: BaseException, argv: list[str]) -> str:
  """"no config field 'x' ..." from ml_collections' (nested) KeyError, whose
  text is the field's repr, a newline and its suggestion."""
  while e.args and isinstance(e.args[0], BaseException):
    e = e.args[0]
  text = str(e.args[0]) if e.args else str(e)
  name, _, hint = text.partition("\n")
  name = name.strip("'\"")
  where = next((a.split("=", 1)[0] for a in argv
                if a.startswith("--config.") and a.split("=", 1)[0].rsplit(
                    ".", 1)[-1] == name), "a --config.<field>=<value> override")
  hint = hint.strip()
  if hint.startswith("Did you mean"):
    hint = "did you mean" + hint[len("Did you mean"):]
  return f"no config field {name!r} (in {where})" + (f"; {hint}" if hint
                                                      else "")


def config_unparsable(e: Exception, argv: list[str]) -> None:
  config = next((a for a in argv if a.startswith("--config=")), "--config")
  if isinstance(e, SyntaxError):
    what = f"SyntaxError in {e.filename}, line {e.lineno}: {e.msg}"
  elif isinstance(e, (AttributeError, KeyError)):
    what = _unknown_field(e, argv)
  else:
    what = f"{type(e).__name__}: {e}"
  print(f"error: could not parse the config ({config} and its overrides): "
        f"{what}", file=sys.stderr)
  sys.exit(2)


def enable_compilation_cache() -> None:
  """JAX's persistent compilation cache, on by default for launches.

  Location: $RRM_COMPILATION_CACHE, else ~/.cache/rrm/jax; "off" disables
  it. A relaunch, a resumed run and every work unit of a sweep with the same
  program then load the compiled program instead of compiling it again.
  """
  path = os.environ.get("RRM_COMPILATION_CACHE",
                        os.path.expanduser("~/.cache/rrm/jax"))
  if path.lower() == "off":
    return
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def start(argv: list[str]) -> None:
  """What every launcher's main does first: no stray arguments, the
  compilation cache on, and library INFO logs (orbax's save threads, jax's
  backend probing) off unless --verbosity asks: progress lines are the
  output."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  enable_compilation_cache()
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
