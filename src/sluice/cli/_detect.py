"""The detector options shared by ``analyze``, ``policy test`` and ``gateway run``."""

from __future__ import annotations

__all__ = ["load_combiner", "model_options"]

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from sluice.cli._exit import UsageFailure
from sluice.detect.verdict import DEFAULT_FET_VETO
from sluice.errors import ConfigError

if TYPE_CHECKING:  # the detectors load when a command runs, not for its --help
    from sluice.detect.combiner import Combiner

F = TypeVar("F", bound=Callable[..., object])


def model_options(fn: F) -> F:
    """Add ``--model DIR``, ``--no-model`` and ``--fet-veto P`` (``model_dir``, ``no_model``, ``fet_veto``).

    ``--fet-veto`` defaults to the combiner's default, so the three commands and ``sluice model
    evaluate`` judge alike unless told otherwise.
    """
    fn = click.option(
        "--fet-veto",
        type=click.FloatRange(0, 1, min_open=True),
        default=DEFAULT_FET_VETO,
        show_default=True,
        help="The model's P(benign) at or above which it overrules a finding of the "
        "fully-encrypted test alone; 1: never.",
    )(fn)
    fn = click.option(
        "--no-model", is_flag=True, help="Judge with fingerprints and the FET only (layers 1-2)."
    )(fn)
    return click.option(
        "--model",
        "model_dir",
        type=click.Path(file_okay=False, path_type=str),
        help="Model directory for layer 3 (default: the model shipped with sluice).",
    )(fn)


def load_combiner(
    model_dir: str | None, no_model: bool, fet_veto: float | None = DEFAULT_FET_VETO
) -> Combiner:
    """The combiner the options ask for; a model that does not load ends the program (exit 2)."""
    from sluice.detect.combiner import Combiner
    from sluice.detect.model import DEFAULT_MODEL_DIR, ModelScorer, load_model

    if no_model and model_dir:
        raise click.UsageError("--model and --no-model exclude each other")
    if no_model:
        return Combiner(None, fet_veto=fet_veto)
    try:
        fitted, _manifest = load_model(model_dir or DEFAULT_MODEL_DIR)
    except ConfigError as exc:
        raise UsageFailure(f"cannot load the model: {exc}") from None
    return Combiner(ModelScorer(fitted), fet_veto=fet_veto)
