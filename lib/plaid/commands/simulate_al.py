"""`plaid simulate-al`: replay the annotation loop on films with known masks and compare strategies."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from plaid.activelearning.curve import write_outputs
from plaid.activelearning.pool import split_test_women
from plaid.activelearning.simulation import Plan, Simulation
from plaid.activelearning.strategies import STRATEGIES, check_strategy
from plaid.commands.train import add_config_options, config_from_args
from plaid.errors import PlaidInputError
from plaid.infer.predictor import InferConfig
from plaid.io.datalist import load_records
from plaid.model.backends import AUTO, RUNTIME_CHOICES, RUNTIME_ENV


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `simulate-al` sub-command."""
    parser = subparsers.add_parser(
        "simulate-al", help="learning curves of active-learning strategies on films with known masks",
        description="Start from the films of N0 random women, then each round let a strategy pick K films, reveal "
                    "their masks, retrain as the app does and score held-out test women; writes "
                    "learning_curve.json/.png and summary.md. Rerun the same command to continue after the last "
                    "finished round.",
    )
    parser.add_argument("data", type=Path, help="folder (images + masks/, metadata.csv) or datalist JSON/CSV")
    parser.add_argument("--out", type=Path, required=True, help="folder for the rounds' models and the outputs")
    parser.add_argument("--test", type=Path, help="films to test on instead of holding out women of DATA")
    parser.add_argument("--test-fraction", type=float, default=0.3,
                        help="share of DATA's women held out for testing, never picked (default 0.3)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of that held-out part (default 0)")
    parser.add_argument("--strategies", default="random,film_score",
                        help=f"comma-separated, of {', '.join(STRATEGIES)} (default random,film_score)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds after the first model (default 4)")
    parser.add_argument("--per-round", type=int, default=10, help="films picked per round, K (default 10)")
    parser.add_argument("--initial-women", type=int, default=10,
                        help="women whose films are labelled at the start, N0 (default 10)")
    parser.add_argument("--no-finetune", dest="finetune", action="store_false",
                        help="train every round from scratch instead of fine-tuning the current model")
    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default=os.environ.get(RUNTIME_ENV, AUTO),
                        help="inference runtime (default auto, or $PLAID_RUNTIME)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def plan_from_args(args: argparse.Namespace, device: str) -> Plan:
    """The simulation plan of the command line; `PlaidInputError` names a bad option."""
    try:
        strategies = tuple(check_strategy(name) for name in _names(args.strategies))
        seeds = tuple(int(seed) for seed in _names(args.seeds))
    except ValueError as exc:
        raise PlaidInputError(f"--strategies / --seeds: {exc}") from None
    for flag, value, low in (("--rounds", args.rounds, 0), ("--per-round", args.per_round, 1),
                             ("--initial-women", args.initial_women, 1)):
        if value < low:
            raise PlaidInputError(f"{flag} must be at least {low}, got {value}")
    if not strategies or not seeds:
        raise PlaidInputError("--strategies and --seeds need at least one value each")
    return Plan(strategies=strategies, seeds=seeds, rounds=args.rounds, per_round=args.per_round,
                initial_women=args.initial_women, finetune=args.finetune,
                infer=InferConfig(device=device, runtime=args.runtime))


def run(args: argparse.Namespace) -> int:
    """Run (or continue) the simulation and print where its outputs are."""
    config = config_from_args(args)
    plan = plan_from_args(args, config.device)
    records = load_records(args.data)
    if args.test is not None:
        pool, test = records, load_records(args.test)
    else:
        pool, test = split_test_women(records, args.test_fraction, args.split_seed)
    if not test:
        raise PlaidInputError("no test film: give --test or a --test-fraction above 0")
    command = shlex.join(["plaid", *sys.argv[1:]]) if sys.argv[1:2] == ["simulate-al"] else "plaid simulate-al"
    rows = Simulation(pool, test, config, plan, args.out).run(
        progress=args.progress, on_round=lambda done: write_outputs(done, args.out, command))
    paths = write_outputs(rows, args.out, command)
    print(f"{len(pool)} pool films, {len(test)} test films; {len(rows)} rounds")
    print(paths["summary"].read_text())
    for path in paths.values():
        print(path)
    return 0
