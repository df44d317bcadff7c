"""Run tutorial.ipynb from top to bottom and keep its outputs.

    python scripts/run_tutorial.py                       # the committed notebook: run at its size, in place
    python scripts/run_tutorial.py --steps 40 --output /tmp/tutorial.ipynb --out-dir /tmp/tutorial

The notebook runs in a Jupyter kernel of this Python (nbclient drives it, as Jupyter's own
`nbconvert --execute` does), with the project's root as its working folder; a cell that fails stops
the run with that cell's error (exit code 1) and writes nothing. --steps and --out-dir reach the
notebook as TUTORIAL_STEPS and TUTORIAL_OUT.
"""
import argparse
import os
import re
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "tutorial.ipynb")
CELL_SECONDS = 1800  # the training cell at full size on two busy cores, with room to spare


def run(source, output, steps=None, out_dir=None):
    """Execute the notebook at `source` and write it, outputs included, to `output`."""
    import nbclient
    import nbformat

    notebook = nbformat.read(source, as_version=4)
    environment = {"TUTORIAL_STEPS": str(steps) if steps else None, "TUTORIAL_OUT": out_dir,
                   "TF_CPP_MIN_LOG_LEVEL": "2"}
    saved = {name: os.environ.get(name) for name in environment}
    try:
        for name, value in environment.items():
            if value is not None:
                os.environ[name] = value  # the kernel inherits this process's environment
        # TensorFlow's C++ log lines go to the terminal, not into the cells' outputs.
        client = nbclient.NotebookClient(notebook, timeout=CELL_SECONDS, kernel_name="python3",
                                         resources={"metadata": {"path": ROOT}},
                                         extra_arguments=["--IPKernelApp.capture_fd_output=False"])
        client.execute()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    temporary = output + ".tmp"
    nbformat.write(notebook, temporary)
    os.replace(temporary, output)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run tutorial.ipynb and keep its outputs.")
    parser.add_argument("--steps", type=int, help="training iterations (default: the notebook's own)")
    parser.add_argument("--out-dir", help="where the notebook writes its files (default: the notebook's own)")
    parser.add_argument("--output", default=NOTEBOOK, help="the executed notebook; default: in place")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be a positive integer")
    import nbclient.exceptions

    def stop(signum, _frame):  # SIGTERM as Ctrl-C: the client then shuts its kernel down
        raise KeyboardInterrupt(signum)
    signal.signal(signal.SIGTERM, stop)
    try:
        run(NOTEBOOK, args.output, args.steps, args.out_dir)
    except nbclient.exceptions.CellExecutionError as error:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # the kernel colours its tracebacks
        lines = [line for line in plain.splitlines() if line.strip()]
        print(f"run_tutorial.py: a cell failed: {lines[-1] if lines else error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stopped:
        signum = stopped.args[0] if stopped.args else signal.SIGINT
        print(f"run_tutorial.py: stopped by {signal.Signals(signum).name}; {args.output} is as it was",
              file=sys.stderr)
        return 128 + signum
    print(f"ran {NOTEBOOK} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
