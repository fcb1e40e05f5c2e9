"""promix train | eval | predict | issues | presets | config.

    promix train                         the demo: scikit-learn's digits, 50% noise, ProMix vs CE
    promix train --preset cifar10-sym50 --root data/
    promix train --data my_images/       an image folder (root/<class>/<image>) or a CSV
    promix train --epochs 30 --tau=0.95  any config field, by dotted path or unique leaf name
    promix issues RUN_DIR [--truth=F]    the wrong labels of a run, and its report.html
    promix predict RUN_DIR IMAGES_OR_FOLDER [--top_k=3] [--out=preds.csv]
    promix export RUN_DIR --to=DIR | --csv=FILE [--min_confidence=0.9]   a cleaned dataset
    promix review RUN_DIR [--serve]      review the flagged labels in a browser (docs/review.md)
    promix train ... --corrections=corrections.csv   train on the reviewed labels
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import (
    ConfigError,
    apply_overrides,
    leaves,
    load_preset,
    preset_names,
    validate,
)
from .data.base import DataError
from .fields import describe, hints

DEMO_PRESET = "demo"
USER_PRESET = "user"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and exit code 2."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="promix", description=__doc__, allow_abbrev=False,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    p_train = sub.add_parser(
        "train", help="train and write a run directory", allow_abbrev=False,
        epilog="Every config field is also an option: --field=value or --field value (e.g. "
               "--epochs=60, --augment graph) or --section.field=value. `promix config "
               "[--preset P]` lists them all with their values.")
    p_train.add_argument("--preset", help="a preset name (`promix presets`) or a .toml file")
    p_train.add_argument("--data", help="an image folder or a CSV manifest (path,label[,split])")
    p_train.add_argument("--resume", metavar="RUN_DIR",
                         help="continue a run from its last good checkpoint (docs/resume.md)")
    p_eval = sub.add_parser("eval", help="evaluate a run's final model on its test set")
    p_eval.add_argument("run_dir")
    p_pred = sub.add_parser("predict", help="classify image files with a run's model")
    p_pred.add_argument("run_dir")
    p_pred.add_argument("images", nargs="+", help="image files and/or folders (searched deeply)")
    p_pred.add_argument("--top_k", type=int, default=1, help="classes per image, most likely first")
    p_pred.add_argument("--out", help="write a CSV here instead of printing")
    p_iss = sub.add_parser("issues", help="write a run's label-issue table and report.html")
    p_iss.add_argument("run_dir")
    p_iss.add_argument("--top", type=int, default=20, help="suspicious rows to print")
    p_iss.add_argument("--truth", help="CSV path,label of verified labels: measure the flags")
    p_exp = sub.add_parser("export", help="your data with the accepted label fixes applied")
    p_exp.add_argument("run_dir")
    where = p_exp.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", help="a new folder: DIR/<class>/<file> (your files are copied)")
    where.add_argument("--csv", help="a CSV manifest path,label,... instead of a folder")
    p_exp.add_argument("--min_confidence", type=float, default=0.9,
                       help="relabel a flagged image only when the model gives its suggested "
                            "class at least this probability; other flags go to review.csv")
    p_exp.add_argument("--link", choices=("copy", "hardlink", "symlink"), default="copy",
                       help="how --to places the files (copy: never shares your files' data)")
    p_exp.add_argument("--corrections", help="a reviewer's corrections.csv (default: "
                       "RUN_DIR/corrections.csv when `promix review` saved one there)")
    p_exp.add_argument("--unsure", choices=("keep", "drop"), default="keep",
                       help="flagged-but-unsure images: keep under their given label, or leave "
                            "them out (they are listed in review.csv either way)")
    p_rev = sub.add_parser(
        "review", help="write review.html: decide on the flagged labels, export corrections.csv",
        epilog="Then: promix train <same options> --corrections=corrections.csv (docs/review.md)")
    p_rev.add_argument("run_dir")
    p_rev.add_argument("--top", type=int, help="review the N most suspicious images, flagged "
                       "or not (default: every flagged image)")
    p_rev.add_argument("--limit", type=int, default=2000, help="at most this many images")
    p_rev.add_argument("--serve", action="store_true", help="also serve the page on "
                       "http://127.0.0.1:PORT/ and save exports into the run directory")
    p_rev.add_argument("--port", type=int, default=8765)
    p_rev.add_argument("--to", choices=("labelstudio", "fiftyone"), help="also export the "
                       "reviewed images for Label Studio (import JSON) or FiftyOne (dataset dir)")
    p_rev.add_argument("--from-labelstudio", metavar="EXPORT_JSON", help="turn a Label Studio "
                       "JSON export into RUN_DIR/corrections.csv instead")
    p_rev.add_argument("--measure", metavar="CORRECTIONS_CSV", help="measure the run's flags "
                       "(precision, recall, AUROC) on the labels verified in this file instead")
    sub.add_parser("presets", help="list the presets")
    p_cfg = sub.add_parser("config", help="print every config field of a preset")
    p_cfg.add_argument("--preset", default=DEMO_PRESET)
    return parser


def main(argv: list[str] | None = None, *, callbacks=()) -> int:
    """The `promix` command. Every user error is one line on stderr and exit code 2.

    callbacks: trainer callbacks for `train` (tests install them; see api.train_config).
    """
    try:
        args, extra = build_parser().parse_known_args(argv)
        if args.command == "train":
            return cmd_train(args, extra, callbacks=callbacks)
        if extra:
            raise ConfigError(f"unrecognized arguments: {' '.join(extra)}")
        commands = {"eval": cmd_eval, "predict": cmd_predict, "presets": cmd_presets,
                    "config": cmd_config, "issues": cmd_issues, "export": cmd_export,
                    "review": cmd_review}
        return commands[args.command](args)
    except (ConfigError, DataError, OSError) as err:
        print(f"promix: error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: Exception) -> str:
    """An error message on one line (a list of bad files becomes '; '-separated)."""
    text = str(err) if not isinstance(err, OSError) or not err.filename else (
        f"{err.filename}: {err.strerror or err}")
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def cmd_train(args, overrides: list[str], *, callbacks=()) -> int:
    if args.resume:
        if args.preset or args.data:
            raise ConfigError("--resume continues a run with its own config: drop --preset/--data")
        from .checkpoint import resume_config

        return run_train(resume_config(args.resume, overrides), callbacks=callbacks)
    preset = args.preset or (USER_PRESET if args.data else DEMO_PRESET)
    cfg = load_preset(preset)
    if args.data:
        path = Path(args.data).expanduser()
        if not path.exists():
            raise DataError(f"--data {args.data}: no such folder or CSV file")
        cfg.data.dataset = "csv" if path.is_file() else "folder"
        cfg.data.root = str(path)
    apply_overrides(cfg, overrides)
    return run_train(validate(cfg), callbacks=callbacks)


def run_train(cfg, *, callbacks=()) -> int:
    """Train; under torchrun every process gets here and rank 0 prints."""
    from .api import train_config
    from .distributed import current, shutdown

    finished = False
    try:
        run = train_config(cfg, callbacks=callbacks)
        if current().is_main:
            print_result(run.result, run.config)  # as resolved: the model a fallback chose
        finished = True
    finally:
        shutdown(finished)
    return 0


def print_result(result, cfg) -> None:
    """The console summary. Selection precision/recall and test accuracy are shown as such
    only when the true labels are known; otherwise the label-issue estimates, marked so."""
    rows = [result] + ([result.baseline] if result.baseline else [])
    names = {"promix": "ProMix", "ce": "cross-entropy", "coteaching": "Co-teaching"}
    known = any(r.selection for r in rows)  # selection quality exists only against truth
    print(f"\n{cfg.data.dataset}, {noise_text(cfg.data)}, {cfg.model.name}, "
          f"{cfg.schedule.epochs} epochs")
    acc_name = "test acc" if known or cfg.data.noise not in ("none", "clean") else "acc*"
    sel_head = f"{'sel. precision':>16}{'sel. recall':>13}" if known else ""
    print(f"{'method':<16}{acc_name:>10}{'best':>8}{sel_head}{'time':>8}")
    for r in rows:
        sel = r.selection
        acc = "-" if r.test_accuracy is None else f"{r.test_accuracy:.1%}"
        best = "-" if r.best_test_accuracy is None else f"{r.best_test_accuracy:.1%}"
        quality = (f"{sel['precision']:>16.1%}{sel['recall']:>13.1%}" if sel else
                   f"{'-':>16}{'-':>13}") if known else ""
        print(f"{names.get(r.method, r.method):<16}{acc:>10}{best:>8}{quality}"
              f"{r.seconds:>7.0f}s")
    if acc_name == "acc*":
        print("* accuracy on the held-out images against their given labels, which may be "
              "wrong too")
    if cfg.paper_accuracy is not None and result.test_accuracy is not None:
        print(f"paper: {cfg.paper_accuracy:.2f}%, this run: {100 * result.test_accuracy:.2f}%")
    summary = Path(result.run_dir) / "issues_summary.json"
    if summary.is_file():
        from .report import summary_lines

        print(summary_lines(json.loads(summary.read_text())))
        print(f"the table and report: promix issues {result.run_dir}")
    print(f"run directory: {result.run_dir}")


def noise_text(data_cfg) -> str:
    if data_cfg.noise_file:
        return f"CIFAR-N {data_cfg.noise} labels"
    if data_cfg.noise in ("none", "clean"):
        return "labels as given (their noise is unknown)"
    return f"{data_cfg.noise} noise {data_cfg.noise_rate:.0%}"


def cmd_eval(args) -> int:
    from .evaluate import evaluate_run

    for key, value in evaluate_run(Path(args.run_dir)).items():
        print(f"{key:<20}{value:.6f}" if isinstance(value, float) else f"{key:<20}{value}")
    return 0


def cmd_predict(args) -> int:
    from .predict import predict_images

    return predict_images(Path(args.run_dir), args.images, top_k=args.top_k, out=args.out)


def cmd_issues(args) -> int:
    from .report import format_report, write_report

    print(format_report(write_report(Path(args.run_dir), truth=args.truth), top=args.top))
    return 0


def cmd_export(args) -> int:
    from .export import export_run

    print(export_run(Path(args.run_dir), to=args.to, csv_path=args.csv, link=args.link,
                     min_confidence=args.min_confidence, unsure=args.unsure,
                     corrections=args.corrections))
    return 0


def cmd_review(args) -> int:
    from .review.commands import review

    print(review(Path(args.run_dir), top=args.top, limit=args.limit, to=args.to,
                 from_labelstudio=args.from_labelstudio, measure=args.measure))
    if args.serve:
        from .review.serve import serve

        serve(Path(args.run_dir), port=args.port)
    return 0


# Measured on one NVIDIA H100 80GB (docs/speed.md, benchmarks/results/throughput-h100.json;
# batch 256, bf16, faithful passes): images/s of a warm-up epoch and of a ProMix epoch
# (its selection pass included).
H100_IMAGES_PER_S = {"resnet18": (8256.0, 1270.5), "small_cnn": (23342.0, 2756.1)}
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000}


def expected_h100_hours(cfg) -> float | None:
    """Training time of a preset on one H100 from the measured throughput; None when the
    model or the training-set size is unknown. Evaluation (a few seconds) is left out."""
    from .schedules import warmup_length

    rates = H100_IMAGES_PER_S.get(cfg.model.name)
    n = TRAIN_IMAGES.get(cfg.data.dataset)
    if rates is None or n is None or cfg.data.per_class is not None:
        return None
    warm = min(warmup_length(cfg.schedule), cfg.schedule.epochs)
    seconds = warm * n / rates[0] + (cfg.schedule.epochs - warm) * n / rates[1]
    return seconds / 3600


def cmd_presets(args) -> int:
    print(f"{'preset':<24}{'dataset':<11}{'noise':<12}{'epochs':>7}{'H100 h':>8}{'paper':>8}"
          "  description")
    for name in preset_names():
        cfg = load_preset(name)
        noise = f"{cfg.data.noise} {cfg.data.noise_rate:g}" if cfg.data.noise in (
            "sym", "asym", "sym_exact", "idn") else cfg.data.noise
        paper = f"{cfg.paper_accuracy:.2f}" if cfg.paper_accuracy else "-"
        hours = expected_h100_hours(cfg)
        hours = "-" if hours is None else f"{hours:.1f}"
        print(f"{name:<24}{cfg.data.dataset:<11}{noise:<12}{cfg.schedule.epochs:>7}{hours:>8}"
              f"{paper:>8}  {cfg.description}")
    print("H100 h: expected training hours on one NVIDIA H100 (bf16), from the measured "
          "throughput in docs/speed.md.")
    return 0


def cmd_config(args) -> int:
    cfg = load_preset(args.preset)
    for path, (owner, f) in leaves(cfg).items():
        allowed = describe(hints(type(owner))[f.name])
        print(f"{path} = {getattr(owner, f.name)!r}  ({allowed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
