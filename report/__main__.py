"""``python -m dynheads.report DIR``: the trace explorer of a ``trace_dir`` (or a run's results folder).

    lm_eval --model dynheads --tasks niah_uuid --model_args trace_dir=traces
    python -m dynheads.report traces            # writes traces/explorer/index.html and one page per document
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dynheads.report", description=__doc__.split("\n\n")[0])
    p.add_argument("trace_dir", type=Path, help="a trace_dir written with --model_args trace_dir=DIR, or a results folder")
    p.add_argument("--out", type=Path, default=None, help="where to write the pages (default: TRACE_DIR/explorer)")
    p.add_argument("--pretrained", default=None, help="the model that wrote the traces (default: the embedded SmolLM2)")
    args = p.parse_args(argv)
    from .explorer import explorer_for

    out = args.out or args.trace_dir / "explorer"
    try:
        if not args.trace_dir.is_dir():
            raise ValueError(f"dynheads: {args.trace_dir} is not a folder; give the trace_dir the traces were written to")
        pages = explorer_for(args.trace_dir, out, args.pretrained)
    except (OSError, ValueError) as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    print(f"dynheads: {len(pages)} explorer pages; open {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
