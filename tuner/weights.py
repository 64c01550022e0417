"""`python -m tuner.weights hed-vgg16 [OUT] [--force]`: convert known third-party weights into a
file that `--weights PATH` loads, and print its path. The conversion is `tuner.models.pretrained`'s;
this module is its command line.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from tuner.errors import TunerError
from tuner.models.pretrained import _SOURCES, available, convert


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.weights",
        description=(
            "Convert known third-party weights into a weights file for `--weights PATH`, and "
            "print its path. hed-vgg16: VGG16 conv weights fine-tuned for edge detection (HED, "
            "BSDS500), not ImageNet classification weights."
        ),
    )
    parser.add_argument("name", nargs="?", help=f"one of: {', '.join(available())}")
    parser.add_argument(
        "out",
        nargs="?",
        metavar="OUT",
        help="the file to write, ending in .weights.h5 (default: "
        "$TUNER_CACHE_DIR/weights/NAME-notop.weights.h5, TUNER_CACHE_DIR defaulting to "
        "~/.cache/tuner)",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild the file even when it is current"
    )
    parser.add_argument("--list", action="store_true", help="list the known names and exit")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback when something goes wrong"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line: converts NAME into OUT and prints the path.

    Args:
        argv: The arguments, without the program name. Defaults to `sys.argv[1:]`.

    Returns:
        The exit status: 0 on success, 2 on a usage error or a `TunerError` (reported as one line
        on standard error; with `--debug`, as the full traceback).
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse exits on --help and on usage errors (after printing them); returning the code
        # keeps main() callable from tests and other code.
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.list:
        for name in available():
            source = _SOURCES[name]
            print(f"{name:<12} {source.summary} ({source.package}) -> --backbone {source.backbone}")
        return 0
    if args.name is None:
        parser.print_usage(sys.stderr)
        print(
            f"error: name the weights to convert, one of: {', '.join(available())}",
            file=sys.stderr,
        )
        return 2
    try:
        path = convert(args.name, args.out, force=args.force)
    except TunerError as error:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
