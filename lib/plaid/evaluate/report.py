"""report.md: the evaluation report (a dict, as in report.json) rendered as Markdown for people."""

from __future__ import annotations

import math
from typing import Any


def _num(value: Any, digits: int = 3) -> str:
    """A number for a table cell; '-' for missing or non-finite values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{float(value):.{digits}f}"


def _ci(bootstrap: dict[str, Any], key: str) -> str:
    low, high = bootstrap.get(key, [None, None])
    return "-" if _num(low) == "-" else f"{_num(low)}-{_num(high)}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


SLOPE1_NOTE = ("\\* The slope-1 point is chosen on these test patches themselves (optimistic); the threshold column "
               "uses the threshold named under Run.")


def _metrics_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """Accuracy/sensitivity/specificity/AUC at the threshold and at the slope-1 point, with CIs."""
    at = summary.get("at_threshold") or {}
    point = summary.get("operating_point") or {}
    boot = summary.get("bootstrap") or {}
    return [
        ["ROC AUC", _num(summary.get("auc")), "", _ci(boot, "auc")],
        ["accuracy", _num(at.get("accuracy")), _num(point.get("accuracy")), ""],
        ["sensitivity", _num(at.get("sensitivity")), _num(point.get("sensitivity")), _ci(boot, "sensitivity")],
        ["specificity", _num(at.get("specificity")), _num(point.get("specificity")), _ci(boot, "specificity")],
        ["TP / FP / TN / FN",
         f"{at.get('true_positives')} / {at.get('false_positives')} / {at.get('true_negatives')} / "
         f"{at.get('false_negatives')}" if at else "-",
         f"{point.get('true_positives')} / {point.get('false_positives')} / {point.get('true_negatives')} / "
         f"{point.get('false_negatives')}" if point else "-", ""],
    ]


def _with_interval(entry: dict[str, Any], digits: int = 2) -> str:
    """'0.82 (0.64-1.00)': a headline value with its bootstrap interval ('-' parts where undefined)."""
    low, high = entry.get("interval") or [None, None]
    interval = "" if _num(low) == "-" else f" ({_num(low, digits)}-{_num(high, digits)})"
    return _num(entry.get("value"), digits) + interval


def headline_lines(headline: dict[str, Any]) -> list[str]:
    """The report's first section: FROC region sensitivity, image AUC and the stored threshold on the test films."""
    boot = headline["bootstrap"]
    confidence = int(round(100 * boot["confidence"]))
    lines = ["## FROC and image AUC", "",
             f"{headline['regions']} calcified regions on {headline['located_films']} films with masks; "
             f"{headline['calcified_films']} of {headline['films']} films calcified, {headline['patients']} patients. "
             f"In brackets: {confidence}% intervals over {boot['iterations']} bootstrap resamples of the patients.", ""]
    lines += _table(["false patches per film", *(f"{item['fp_per_film']:g}" for item in headline["froc"])],
                    [["region sensitivity", *(_with_interval(item) for item in headline["froc"])]])
    lines += [f"Image AUC (film scored by its highest patch): {_with_interval(headline['image_auc'], 3)}.", ""]
    at = headline["at_threshold"]
    lines += ["### The stored operating point on these films", "",
              f"Threshold {_num(at['threshold'], 4)}, source: {at['source']}. On these films: "
              f"{_with_interval(at['false_marks_per_film'])} false patches per film, region sensitivity "
              f"{_with_interval(at['region_sensitivity'])}; calcified films marked "
              f"{_with_interval(at['calcified_films_marked'])}, normal films marked "
              f"{_with_interval(at['normal_films_marked'])}.", ""]
    if at.get("checkpoint"):
        lines += ["The checkpoint says: " + ", ".join(f"`{key}` = {value}" for key, value in at["checkpoint"].items())
                  + ".", ""]
        if at["checkpoint"].get("operating_point_warning"):
            lines += [f"**Warning:** {at['checkpoint']['operating_point_warning']}.", ""]
    given = headline.get("at_given_threshold")
    if given:
        lines += ["### The threshold given on the command line", "",
                  f"Threshold {_num(given['threshold'], 4)}, {given['source']}: "
                  f"{_num(given['false_marks_per_film'])} false patches per film, region sensitivity "
                  f"{_num(given['region_sensitivity'])}.", ""]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The whole report as Markdown (figures linked by their paths inside the report folder)."""
    files = report.get("files", {})
    paper = report["paper_protocol"]
    real = report["realistic_protocol"]
    confidence = int(round(100 * (paper.get("bootstrap") or {}).get("confidence", 0.95)))
    point = paper.get("operating_point") or {}
    lines = ["# PLAID evaluation report", ""]
    if report.get("seen_films_included"):
        split = report["split"]
        lines += [f"**These figures include films the model has seen (--all): patients it trained or validated on: "
                  f"{len(split.get('overlap_with_training') or [])}; patients whose films chose its threshold: "
                  f"{len(split.get('overlap_with_threshold_films') or [])}. They flatter the model.**", ""]
    if report.get("headline"):
        lines += headline_lines(report["headline"])
    lines += ["## Run", ""]
    lines += [f"- model: `{report.get('model', '?')}`", f"- data: `{report.get('data', '?')}`",
              f"- threshold: {_num(report['threshold'], 4)} ({report['threshold_source']})",
              f"- seed: {report['seed']}", f"- test split: {report['split']['source']}",
              f"- test images: {report['test_images']} from {report['test_patients']} patients", ""]
    if report["split"].get("overlap_with_training"):
        lines += [f"**Warning:** patients also used in training: {', '.join(report['split']['overlap_with_training'])}",
                  ""]
    lines += ["## Paper protocol (balanced patches)", "",
              f"{paper['positives']} calcified + {paper['negatives']} normal patches"
              + (f" ({paper['pairs_requested']} pairs requested)" if paper.get("pairs_requested") else
                 " (every calcified patch of the test images, as many random tissue patches)") + ".", ""]
    lines += _table(["metric", "at threshold",
                     f"at slope-1 point* ({_num(point.get('threshold'), 4)})",
                     f"{confidence}% CI (bootstrap by patient)"], _metrics_rows(paper))
    lines += [SLOPE1_NOTE, ""]
    if files.get("roc_paper"):
        lines += [f"![ROC, paper protocol]({files['roc_paper']})", ""]
    lines += ["### Accuracy per age group (at the threshold)", ""]
    lines += _table(["age group", "patches", "calcified", "normal", "accuracy", "images", "patients"],
                    [[g["age_group"], g["patches"], g["positives"], g["negatives"], _num(g["accuracy"]),
                      g["images"], g["patients"]] for g in paper["age_groups"]])
    prevalence = _num(real.get("prevalence"), 4)
    fp_rate = _num(real["false_positive_patches_per_image"], 2)
    lines += ["## Realistic protocol (every tissue patch)", "",
              f"{real['patches']} patches, {real['positives']} calcified (prevalence {prevalence}); "
              f"false-positive patches per image at the threshold: {fp_rate}.", ""]
    lines += _table(["metric", "at threshold", "at slope-1 point*", f"{confidence}% CI (bootstrap by patient)"],
                    _metrics_rows(real))
    lines += [SLOPE1_NOTE, ""]
    image_level = real["image_level"]
    lines += [f"Image level (score = highest patch probability, {image_level['calcified_images']} of "
              f"{image_level['images']} images calcified): AUC {_num(image_level['auc'])}.", ""]
    froc = real["froc"]
    froc_at = froc["at_threshold"]
    lines += [f"FROC: {froc['regions']} calcified regions (clusters of the masks, `plaid.patches.regions`); at the "
              "threshold "
              f"{_num(froc_at['sensitivity'])} of them are touched by a positive patch, with "
              f"{_num(froc_at['fp_per_image'], 2)} false-positive patches per image.", ""]
    if froc.get("sensitivity_at_fp_per_image"):
        rates = froc["sensitivity_at_fp_per_image"]
        lines += _table(["FP patches / image", *rates.keys()], [["region sensitivity", *map(_num, rates.values())]])
    for key, caption in (("roc_realistic", "ROC, realistic protocol"), ("froc", "FROC")):
        if files.get(key):
            lines += [f"![{caption}]({files[key]})", ""]
    if files.get("overlays"):
        lines += ["## Overlays (ground-truth patches | predicted patches)", ""]
        lines += [f"![{path}]({path})" for path in files["overlays"]] + [""]
    lines += ["## Per image", ""]
    lines += _table(["image", "patient", "age", "calcified", "score", "tissue patches", "calcified patches",
                     "predicted", "false positives", "regions detected"],
                    [[i["image_id"], i["patient_id"] or "-", _num(i["age"], 0), "yes" if i["calcified"] else "no",
                      _num(i["image_score"]), i["patches_tissue"], i["patches_calcified"], i["patches_predicted"],
                      i["false_positive_patches"], f"{i['regions_detected']}/{i['regions']}"]
                     for i in report["per_image"]])
    if report.get("problems"):
        lines += ["## Skipped files", ""] + [f"- `{p['path']}`: {p['message']}" for p in report["problems"]] + [""]
    lines += ["## Split", "", f"Patients tested: {', '.join(report['split']['patients'])}. The full list of "
              "test images is in `split.json` (and `report.json`); pass it back with "
              "`plaid evaluate ... --split split.json` to repeat this run.", ""]
    return "\n".join(lines)
