"""Tables that compare runs from their metrics.csv files (evaluate.py --compare).

    python evaluate.py --compare results/a results/b                 # last evaluations side by side
    python evaluate.py --compare results/recipes/* --at 6000 20000   # the recipe x iterations table

Reads only metrics.csv and config.json: nothing is restored or scored again.
"""
import csv
import dataclasses
import os

import numpy as np

import classifier
import runs
from config import RunConfig, recipe_value


def summarize_metrics(out_dir, last=4):
    """{generator: figures} from a run's metrics.csv: the last evaluation's Frechet distance,
    classifier score and smallest / largest class share, and the mean Frechet distance of the
    last `last` evaluations. ValueError when the file is missing or has no rows."""
    rows = read_metric_rows(out_dir)
    by_generator = {}
    for row in rows:
        by_generator.setdefault(row["generator"], []).append(row)
    summary = {}
    for generator, evaluations in by_generator.items():
        evaluations.sort(key=lambda row: int(row["step"]))
        final, window = evaluations[-1], evaluations[-last:]
        shares = [float(value) for key, value in final.items() if key.startswith("share_")]
        summary[generator] = {
            "step": int(final["step"]), "frechet_distance": float(final["frechet_distance"]),
            "mean_frechet_distance": float(np.mean([float(row["frechet_distance"]) for row in window])),
            "window": (int(window[0]["step"]), int(final["step"])),
            "classifier_score": float(final["classifier_score"]),
            "smallest_share": min(shares), "largest_share": max(shares)}
    return summary


def format_comparison(summaries):
    """A text table of summarize_metrics results, {run folder: summary}."""
    width = max(len("run"), *(len(run) for run in summaries))
    lines = [f"{'run':<{width}} {'generator':<16} {'step':>6} {'FD':>7} {'mean FD (steps)':>24} "
             f"{'score':>6} {'shares min / max':>17}"]
    for run, summary in summaries.items():
        for generator, figures in summary.items():
            first, final = figures["window"]
            lines.append(f"{run:<{width}} {generator:<16} {figures['step']:>6} {figures['frechet_distance']:>7.1f} "
                         f"{figures['mean_frechet_distance']:>8.1f} ({first}-{final}) "
                         f"{figures['classifier_score']:>6.2f} "
                         f"{100 * figures['smallest_share']:>7.1f}% / {100 * figures['largest_share']:.1f}%")
    return "\n".join(lines)


class MetricsError(Exception):
    """A run's metrics.csv is missing or empty: a user error, said in one line."""


def read_metric_rows(out_dir):
    """metrics.csv's rows of a run as dicts; MetricsError when missing or empty."""
    path = os.path.join(out_dir, "metrics.csv")
    try:
        with open(path, newline="") as stream:
            rows = list(csv.DictReader(stream))
    except OSError as error:
        raise MetricsError(f"cannot read {path} ({error.strerror}); a run writes it with --eval-every") from None
    if not rows:
        raise MetricsError(f"{path} holds no evaluations")
    return rows


def run_instrument(out_dir):
    """The instrument a run's evaluations name (runs from before instruments were named: machine-local)."""
    named = {row.get("instrument") or classifier.MACHINE_LOCAL for row in read_metric_rows(out_dir)}
    if len(named) > 1:
        raise MetricsError(f"{os.path.join(out_dir, 'metrics.csv')} mixes instruments ({', '.join(sorted(named))}): "
                           f"its figures are on more than one scale")
    return named.pop()


def one_instrument(out_dirs):
    """The instrument every run of a table was measured with; MetricsError when they differ (their
    figures are on different scales) or when it is not the committed one of its name (the
    records must be measured again)."""
    named = {out_dir: run_instrument(out_dir) for out_dir in out_dirs}
    if len(set(named.values())) > 1:
        listing = "; ".join(f"{out_dir}: {name}" for out_dir, name in named.items())
        raise MetricsError(f"the runs were measured with different instruments, whose figures do not compare "
                           f"({listing})")
    instrument = next(iter(named.values()))
    if instrument != classifier.MACHINE_LOCAL:
        committed = {classifier.instrument_id(entry) for entry in classifier.read_manifest().values()}
        if instrument not in committed:
            raise MetricsError(f"the runs were measured with the instrument {instrument}, which is not a committed "
                               f"one ({', '.join(sorted(committed))}): measure them again")
    return instrument


def instrument_floor(instrument):
    """The committed real floor of an instrument's reference set, or None (machine-local)."""
    for entry in classifier.read_manifest().values():
        if classifier.instrument_id(entry) == instrument:
            return entry["reference"]
    return None


def run_label(out_dir):
    """(dataset, what the run trained) from its config.json: 'reference', 'original', 'tuned',
    'tuned without hinge', and each setting whose value is not the recipe's, as its declaration
    in config.RunConfig labels it."""
    values = runs.read_json(os.path.join(out_dir, runs.CONFIG_FILE), f"{out_dir}: no config.json says what it trained")
    if isinstance(values, dict) and values.get("recipe") == "reference":
        return values.get("dataset", "mnist"), "reference"
    config = runs.read_config(out_dir)
    label = config.recipe
    if config.without:
        label += " without " + ", ".join(config.without)
    if config.conditional:
        label += f" conditional ({config.conditioning})"
    recipes = RunConfig(recipe=config.recipe, without=config.without)  # every setting the recipe's
    for field in dataclasses.fields(RunConfig):
        describe = field.metadata["label"]
        if describe is None:
            continue
        value, default = getattr(config, field.name), getattr(recipes, field.name)
        if default is None:  # decided when a run starts (bfloat16: where the CPU has it)
            default = recipe_value(config.recipe, field.name)
        if value is not None and value != default:
            label += f" ({describe(value) if callable(describe) else describe.format(value=value)})"
    return config.dataset, label


def run_labels(out_dirs):
    """{out_dir: label}: runs of one dataset and recipe share a label (the seeds of one recipe);
    the dataset leads the label when the runs are of more than one."""
    labels = {out_dir: run_label(out_dir) for out_dir in out_dirs}
    several = len({dataset for dataset, _ in labels.values()}) > 1
    return {out_dir: f"{dataset}: {label}" if several else label for out_dir, (dataset, label) in labels.items()}


def own_generator(out_dir):
    """The generator a run makes its pictures with (config.json's; the reference has only raw)."""
    values = runs.read_json(os.path.join(out_dir, runs.CONFIG_FILE), f"{out_dir}: no config.json says what it trained")
    return "raw" if values.get("recipe") == "reference" else values.get("generator", "averaged")


def evaluation_rows(out_dir, own_only=False):
    """metrics.csv's rows; own_only: only those of the run's own generator."""
    rows = read_metric_rows(out_dir)
    if own_only:
        generator = own_generator(out_dir)
        rows = [row for row in rows if row["generator"] == generator]
    return rows


def group_figures(out_dirs, steps, own_only=False):
    """{(label, generator, step): {figure: [one value per run]}} over runs grouped by run_labels:
    the seeds of one recipe on one dataset. own_only: each run's own generator only."""
    groups, labels = {}, run_labels(out_dirs)
    for out_dir in out_dirs:
        label = labels[out_dir]
        for row in evaluation_rows(out_dir, own_only):
            if int(row["step"]) not in steps:
                continue
            shares = [float(value) for key, value in row.items() if key.startswith("share_")]
            figures = groups.setdefault((label, row["generator"], int(row["step"])), {})
            for name, value in (("frechet_distance", float(row["frechet_distance"])),
                                ("classifier_score", float(row["classifier_score"])),
                                ("smallest_share", min(shares)), ("largest_share", max(shares)),
                                ("train_seconds", float(row.get("train_seconds") or "nan"))):
                figures.setdefault(name, []).append(value)
            for name in ("label_agreement", "worst_class_label_agreement",  # conditional runs
                         "precision", "recall"):  # runs scored since these were measured
                if row.get(name):
                    figures.setdefault(name, []).append(float(row[name]))
    return groups


def steps_to_reach(out_dirs, target, own_only=False):
    """{(label, generator): [per run: the first evaluated step with Frechet distance <= target,
    or None]}."""
    reached, labels = {}, run_labels(out_dirs)
    for out_dir in out_dirs:
        label, firsts = labels[out_dir], {}
        for row in sorted(evaluation_rows(out_dir, own_only), key=lambda row: int(row["step"])):
            if float(row["frechet_distance"]) <= target:
                firsts.setdefault(row["generator"], int(row["step"]))
            firsts.setdefault(row["generator"] + "?", None)
        for key in [k for k in firsts if k.endswith("?")]:
            reached.setdefault((label, key[:-1]), []).append(firsts.get(key[:-1]))
    return reached


def format_recipe_table(out_dirs, steps, markdown=False, speed=None, own_only=False):
    """The recipe x iterations table: per recipe (seeds grouped), generator and step, the mean
    and range of the Frechet distance, the mean classifier score, the smallest and the largest
    class share of any seed, and the mean training time before the evaluation; the real floor of
    the instrument they were measured with (all runs must share one). With reference runs among
    them, also the iteration at which each run first reached the reference's final mean, and with
    `speed` (a bench.py record) what share of the reference's time that is. markdown: Markdown.
    own_only: each run's own generator only (what its pictures show)."""
    instrument = one_instrument(out_dirs)
    groups = group_figures(out_dirs, set(steps), own_only)
    width = max([len("recipe")] + [len(label) for label, _, _ in groups])
    # Conditional runs among them: a column of label agreement, mean (the worst class of any seed).
    agreement = any("label_agreement" in figures for figures in groups.values())
    # Runs with precision and recall: a column of their means.
    manifold = any("precision" in figures for figures in groups.values())
    if markdown:
        lines = ["| recipe | generator | iterations | seeds | Frechet distance, mean [range] | classifier score "
                 "| smallest / largest class share | training s |" + (" label agreement (worst class) |" if agreement
                                                                      else "")
                 + (" precision / recall |" if manifold else ""),
                 "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if agreement else "")
                 + ("---:|" if manifold else "")]
    else:
        lines = [f"{'recipe':<{width}} {'generator':<16} {'step':>6} {'runs':>4} {'FD mean [min-max]':>24} "
                 f"{'score':>6} {'smallest':>9} {'largest':>8} {'train s':>8}"
                 + ("  label agreement" if agreement else "") + ("  precision / recall" if manifold else "")]
    for (label, generator, step), figures in sorted(groups.items()):
        fd = figures["frechet_distance"]
        smallest, largest = 100 * min(figures["smallest_share"]), 100 * max(figures["largest_share"])
        score, seconds = np.mean(figures["classifier_score"]), np.mean(figures["train_seconds"])
        agrees = ""
        if "label_agreement" in figures:
            agrees = (f"{100 * np.mean(figures['label_agreement']):.1f}% "
                      f"({100 * min(figures['worst_class_label_agreement']):.1f}%)")
        pr = ""
        if "precision" in figures:
            pr = f"{np.mean(figures['precision']):.3f} / {np.mean(figures['recall']):.3f}"
        if markdown:
            lines.append(f"| {label} | {generator} | {step:,} | {len(fd)} "
                         f"| {np.mean(fd):.1f} [{min(fd):.1f}-{max(fd):.1f}] "
                         f"| {score:.2f} | {smallest:.1f}% / {largest:.1f}% | {seconds:.0f} |"
                         + (f" {agrees} |" if agreement else "") + (f" {pr} |" if manifold else ""))
        else:
            lines.append(f"{label:<{width}} {generator:<16} {step:>6} {len(fd):>4} "
                         f"{np.mean(fd):>8.1f} [{min(fd):6.1f}-{max(fd):6.1f}] {score:>6.2f} "
                         f"{smallest:>8.1f}% {largest:>7.1f}% {seconds:>8.0f}" + (f"  {agrees}" if agreement else "")
                         + (f"  {pr}" if manifold else ""))
    reference = instrument_floor(instrument)
    if reference is not None:
        lines.append(floor_row(reference, markdown, width, agreement, manifold))
    if markdown:
        scale = ("on this machine's own scale (a classifier trained here)" if reference is None else
                 f"with the committed instrument {instrument}")
        lines += ["", f"Measured {scale}."]
    return "\n".join(lines + reach_lines(out_dirs, groups, steps, markdown, width, speed, own_only))


def floor_row(reference, markdown, width, agreement, manifold):
    """The row of real images: the committed floor of the instrument's reference set."""
    floor = reference["floor"]
    shares = [100 * share for share in floor["class_shares"]]
    title = f"real (floor, {reference['images']:,} vs {reference['images']:,})"
    if markdown:
        return (f"| {title} | | | | {floor['frechet_distance']:.1f} | {floor['classifier_score']:.2f} "
                f"| {min(shares):.1f}% / {max(shares):.1f}% | |"
                + (f" {100 * floor['label_agreement']:.1f}% |" if agreement else "")
                + (f" {floor['precision']:.3f} / {floor['recall']:.3f} |" if manifold else ""))
    return (f"{title:<{width}} {'':<16} {'':>6} {'':>4} {floor['frechet_distance']:>8.1f} {'':>16} "
            f"{floor['classifier_score']:>6.2f} {min(shares):>8.1f}% {max(shares):>7.1f}%")


def reach_lines(out_dirs, groups, steps, markdown, width, speed, own_only):
    """With reference runs: when each run first reached the reference's mean at the last step
    (and, with a bench.py record, that iteration's share of the reference's time)."""
    final = max(steps)
    references = {}  # dataset prefix of the labels ("" for one dataset) -> the reference's distances
    for (label, _, step), figures in groups.items():
        if label.endswith("reference") and step == final:
            references.setdefault(label[:-len("reference")], []).extend(figures["frechet_distance"])
    lines = []
    for prefix, distances in sorted(references.items()):
        target = float(np.mean(distances))
        lines += [""] if markdown else []
        lines.append(f"First evaluation at or below the {prefix}reference's mean Frechet distance at {final:,} "
                     f"({target:.1f}), per seed:")
        for (label, generator), firsts in sorted(steps_to_reach(out_dirs, target, own_only).items()):
            if not label.startswith(prefix):
                continue
            shown = ", ".join("never" if step is None else f"{step:,}" for step in firsts)
            ratio = (speed or {}).get("ratios", {}).get(label[len(prefix):].split(" ")[0])
            if ratio and None not in firsts:  # iterations -> a share of the reference's time
                shares = [step / final / ratio for step in firsts]
                low, high = f"{min(shares):.2f}x", f"{max(shares):.2f}x"
                shown += (f": {low if low == high else f'{low}-{high}'} of the reference's time (its iterations at "
                          f"{ratio:.2f}x the reference's images/s, {speed['file']})")
            lines.append(f"- {label}, {generator}: {shown}" if markdown
                         else f"  {label:<{width}} {generator:<16} {shown}")
    return lines


def format_instruments():
    """Markdown: the committed instruments, from instruments/instruments.json."""
    lines = ["| instrument | file, size | trained on | held-out accuracy | reference set | real floor: Frechet "
             "distance | classifier score | precision / recall | float16 weights change the figures by |",
             "|---|---|---|---:|---|---:|---:|---:|---:|"]
    for entry in classifier.read_manifest().values():
        trained, reference = entry["trained_on"], entry["reference"]
        floor = reference["floor"]
        lines.append(
            f"| `{classifier.instrument_id(entry)}` | `instruments/{entry['file']}`, {entry['bytes'] / 1e6:.2f} MB "
            f"({entry['weights_dtype']} weights) | {trained['images']:,} {trained['dataset']} images "
            f"({trained['reader']}), {trained['steps']:,} steps | {100 * floor['label_agreement']:.1f}% of "
            f"{trained['heldout_images']:,} | {reference['images']:,} {reference['dataset']} images "
            f"({reference['reader']}) | {floor['frechet_distance']:.2f} ({floor['frechet_method']}) "
            f"| {floor['classifier_score']:.2f} | {floor['precision']:.3f} / {floor['recall']:.3f} "
            f"({floor['manifold_method']}) | {100 * entry['float16_check']['largest_relative_change']:.3f}% |")
    return "\n".join(lines)
