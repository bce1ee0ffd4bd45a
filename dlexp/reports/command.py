"""``dlexp report <sweep dir | run dirs…>``: rebuild a sweep's tables, groups and plots."""

from __future__ import annotations

from pathlib import Path

from dlexp.errors import EXIT_OK, ArgumentParser, ConfigError


def report_command(args: list[str]) -> int:
    """``dlexp report <sweep dir | run dirs…>``: summary, seed groups, plots and report.md
    (with accuracy against MACs, marker area = parameters, when the configurations differ
    in cost)."""
    parser = ArgumentParser(prog="dlexp report", description=report_command.__doc__)
    parser.add_argument("paths", nargs="+", type=_user_path, help="a sweep dir or run dirs")
    parser.add_argument(
        "--metric",
        default="test/acc",
        help="the final metric to compare (default test/acc; val/acc, test/f1…)",
    )
    parser.add_argument(
        "--out",
        type=_user_path,
        default=None,
        help="where to write (default: the sweep dir; for several paths a new "
        "outputs/reports/<date>_<time>_<id> dir)",
    )
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="also report the first epoch at which val/acc reached this value",
    )
    parsed = parser.parse_args(args)
    from dlexp.reports.report import build_report
    from dlexp.reports.summary import METRIC_COLUMNS

    if parsed.metric not in METRIC_COLUMNS:
        raise ConfigError("--metric", parsed.metric, "must be one of: " + ", ".join(METRIC_COLUMNS))
    path = build_report(parsed.paths, parsed.out, parsed.metric, parsed.target)
    print(f"report: {path}")
    return EXIT_OK


def _user_path(text: str) -> Path:
    """A path argument with ``~`` expanded (a quoted ``'~/x'`` reaches dlexp unexpanded)."""
    return Path(text).expanduser()
