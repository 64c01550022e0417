"""`python -m tuner.weights hed-vgg16 [OUT] [--force]`: convert known third-party weights into a
file that `--weights PATH` loads, and print its path. The conversion is `tuner.models.pretrained`'s;
this module is its command line.
"""

from __future__ import annotations

import argparse
import sys

from tuner._cli import Command
from tuner.errors import ConfigError
from tuner.models.pretrained import _SOURCES, available, convert


class _Weights(Command):
    name = "weights"
    description = (
        "Convert known third-party weights into a weights file for `--weights PATH`, and print "
        "its path. hed-vgg16: VGG16 conv weights fine-tuned for edge detection (HED, BSDS500), "
        "not ImageNet classification weights."
    )
    # `convert` writes beside the target and moves the file in only when it is complete.
    interrupted = "interrupted: no weights file was written; rerun the same command to convert."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
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

    def run(self, args: argparse.Namespace) -> int:
        # The path (or the list) is the result, and this command prints nothing else: `--quiet`
        # leaves its output as it is.
        if args.list:
            for name in available():
                source = _SOURCES[name]
                print(
                    f"{name:<12} {source.summary} ({source.package}) -> --backbone "
                    f"{source.backbone}"
                )
            return 0
        if args.name is None:
            raise ConfigError(
                f"name the weights to convert, one of: {', '.join(available())} (see "
                f"{self.prog} --help)"
            )
        print(convert(args.name, args.out, force=args.force))
        return 0


main = _Weights().main  # main(argv) runs the command line, returns the exit status


if __name__ == "__main__":
    sys.exit(main())
