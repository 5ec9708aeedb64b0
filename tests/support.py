"""Slow, obviously correct reference implementations and batch builders for the tests."""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from statistics import NormalDist

import numpy as np
import pandas as pd
import torch
from PIL import Image

_NORMAL = NormalDist()


def reference_ot(values: list[float]) -> list[float]:
    """Rank-to-Gaussian map of one vector, written from the spec with plain Python."""
    n = len(values)
    if n <= 1:
        return [0.0] * n
    order = sorted(range(n), key=lambda i: values[i])
    quantile_at_position = [_NORMAL.inv_cdf((k + 0.5) / n) for k in range(n)]
    out = [0.0] * n
    position = 0
    while position < n:  # walk runs of equal values, give each the mean quantile of its positions
        end = position
        while end + 1 < n and values[order[end + 1]] == values[order[position]]:
            end += 1
        run = quantile_at_position[position:end + 1]
        for p in range(position, end + 1):
            # same 2**-40 grid as the implementation: exact-arithmetic ties must stay ties in stage 2
            out[order[p]] = round(sum(run) / len(run) * 2**40) / 2**40
        position = end + 1
    return out


def reference_g2rpo(rewards, uids, tasks, valid, mode="two_stage", include_degenerate_groups=None,
                    tie_tolerance=0.0) -> list[float]:
    """G2RPO per the spec, one dictionary and one loop at a time."""
    n = len(rewards)
    if include_degenerate_groups is None:
        include_degenerate_groups = mode == "single_stage"
    r = [round(x / tie_tolerance) * tie_tolerance if tie_tolerance else x for x in rewards]
    groups = defaultdict(list)
    for i in range(n):
        if valid[i]:
            groups[(tasks[i], uids[i])].append(i)
    stage_one = {}
    degenerate = set()
    for members in groups.values():
        vals = [r[i] for i in members]
        if len(members) == 1 or len(set(vals)) == 1:
            degenerate.update(members)
        mapped = reference_ot(vals) if mode == "two_stage" else vals
        stage_one.update(zip(members, mapped))
    per_task = defaultdict(list)
    for i in range(n):
        if valid[i] and (include_degenerate_groups or i not in degenerate):
            per_task[tasks[i]].append(i)
    out = [0.0] * n
    for members in per_task.values():
        for i, a in zip(members, reference_ot([stage_one[i] for i in members])):
            out[i] = a
    return out


def tensors_from_scores(scores, lengths, width=None):
    """token_level_rewards / response_mask with each score on the last token of its response."""
    scores = torch.as_tensor(scores, dtype=torch.float32)
    lengths = torch.as_tensor(lengths)
    width = width or max(int(lengths.max()), 1)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).float()
    rewards = torch.zeros(len(scores), width)
    rows = lengths > 0
    rewards[torch.arange(len(scores))[rows], (lengths[rows] - 1)] = scores[rows]
    return rewards, mask


def object_array(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def recording_estimator(record: dict, required_fields=None):
    """An estimator that accepts the seam's fields, records what it received, and returns zeros."""

    def probe(token_level_rewards, response_mask, index=None, config=None, batch=None, non_tensor_batch=None,
              **kwargs):
        record.clear()
        record.update(batch=batch, batch_keys=set(batch.keys()), non_tensor_batch=dict(non_tensor_batch), index=index,
                      entropy=batch["entropy"].clone() if "entropy" in batch.keys() else None)
        zeros = torch.zeros_like(token_level_rewards)
        return zeros, zeros

    if required_fields is not None:
        probe.required_fields = lambda config: set(required_fields)
    return probe


@contextlib.contextmanager
def registered_estimators(**estimators):
    """Put test estimators into verl's registry for the duration of the block."""
    from verl.trainer.ppo import core_algos

    core_algos.ADV_ESTIMATOR_REGISTRY.update(estimators)
    try:
        yield
    finally:
        for name in estimators:
            core_algos.ADV_ESTIMATOR_REGISTRY.pop(name, None)


def _midrank_buckets(values: dict, edges) -> dict:
    """prompt -> bucket: rank fraction (tie-averaged rank - 1/2) / n, bucket = number of edges <= fraction."""
    keys = list(values)
    n = len(keys)
    out = {}
    for k in keys:
        below = sum(1 for j in keys if values[j] < values[k])
        equal = sum(1 for j in keys if values[j] == values[k])
        fraction = (below + (equal - 1) / 2 + 0.5) / n  # 0-based mean position of the tie run, + 1/2
        out[k] = sum(1 for e in edges if e <= fraction)
    return out


def _closed_buckets(values: dict, low, high) -> dict:
    """The paper's Eq. 10: H <= low -> 0, H >= high -> 2, else 1 (in both: 1)."""
    return {k: 1 if (v <= low) == (v >= high) else 0 if v <= low else 2 for k, v in values.items()}


def _exact_quantile(values, q):
    """numpy's default (linear) quantile, in exact rational arithmetic."""
    from fractions import Fraction

    ordered = sorted(Fraction(v) for v in values)
    position = Fraction(str(q)) * (len(ordered) - 1)  # the decimal the user wrote: 0.3 · 10 = 3 exactly
    j = int(position)
    if j + 1 >= len(ordered):
        return ordered[j]
    return ordered[j] + (ordered[j + 1] - ordered[j]) * (position - j)


def reference_durian(rewards, uids, valid, entropy, confidence, alphas=(0.1, 0.2, 0.7), b=12,
                     quantiles=(0.25, 0.75), thresholds=None, include_degenerate=False, min_bucket=2, eps=1e-6,
                     rule="closed_quantile"):
    """Durian per the spec, written with dictionaries and loops."""
    import math
    import statistics

    groups = defaultdict(list)
    for i, ok in enumerate(valid):
        if ok:
            groups[uids[i]].append(i)
    mean = {g: sum(rewards[i] for i in m) / len(m) for g, m in groups.items()}
    own = {g: statistics.stdev([rewards[i] for i in m]) if len(m) > 1 else 0.0 for g, m in groups.items()}
    degenerate = {g for g, m in groups.items() if len(m) == 1 or len({rewards[i] for i in m}) == 1}
    eligible = [g for g in groups if include_degenerate or g not in degenerate]
    h = {g: entropy[m[0]] for g, m in groups.items()}  # a per-prompt value: its first row's
    conf = {g: sum(confidence[i] for i in m) / len(m) for g, m in groups.items()}
    with_image = {g: h[g] for g in eligible if not math.isnan(h[g])}
    if rule == "closed_quantile":
        cuts = thresholds if thresholds is not None else (
            [_exact_quantile(with_image.values(), q) for q in quantiles] if with_image else (0, 0))
        perc = _closed_buckets(with_image, *cuts)
    elif thresholds is not None:
        perc = {g: sum(1 for t in thresholds if t <= v) for g, v in with_image.items()}
    else:
        perc = _midrank_buckets(with_image, quantiles)
    reas = _midrank_buckets({g: conf[g] for g in eligible}, [k / b for k in range(1, b)])

    def pooled(assign):
        pools = defaultdict(list)
        for g, k in assign.items():
            pools[k].extend(rewards[i] for i in groups[g])
        return {k: (statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in pools.items()}

    perc_pool, reas_pool = pooled(perc), pooled(reas)
    out = [0.0] * len(rewards)
    def term(g, assign, pools):
        if g in assign:
            std, size = pools[assign[g]]
            if size >= min_bucket and std > 0:
                return std
        return own[g]

    for g, members in groups.items():
        sp, sr = term(g, perc, perc_pool), term(g, reas, reas_pool)
        for i in members:
            c = rewards[i] - mean[g]
            out[i] = alphas[0] * c / (own[g] + eps) + alphas[1] * c / (sp + eps) + alphas[2] * c / (sr + eps)
    return out


def reference_diva(rewards, uids, problems, difficulty, valid, lengths, batch_norm="response", rrb="paper",
                   reward_range=1.0, kappa=0.1, local_weight=1.0, global_weight=1.0, eps=1e-6, width=None):
    """DIVA-GRPO per the spec, with dictionaries and loops."""
    import math
    import statistics

    rows = [i for i in range(len(rewards)) if valid[i]]

    def z_scores(key):
        groups = defaultdict(list)
        for i in rows:
            groups[key[i]].append(i)
        z, single = {}, set()
        for members in groups.values():
            if len(members) == 1:
                single.add(members[0])
                z[members[0]] = 0.0
                continue
            vals = [rewards[i] for i in members]
            m, s = sum(vals) / len(vals), statistics.stdev(vals)
            for i in members:
                z[i] = 0.0 if len(set(vals)) == 1 else (rewards[i] - m) / (s + eps)
        return z, single, groups

    def normalise(z, single):
        members = [i for i in rows if i not in single]
        out = {i: 0.0 for i in rows}
        if not members:
            return out
        if batch_norm == "response":
            m = sum(z[i] for i in members) / len(members)
            s = math.sqrt(sum((z[i] - m) ** 2 for i in members) / len(members))
        else:  # every entry of the padded [rows, T_max] tensor, zeros included, torch.std (unbiased)
            t_max = width if width is not None else max(max(lengths[i] for i in rows), 1)
            entries = [z[i] for i in members for _ in range(lengths[i])]
            entries += [0.0] * (len(members) * t_max - len(entries))
            m = sum(entries) / len(entries)
            s = math.sqrt(sum((e - m) ** 2 for e in entries) / max(len(entries) - 1, 1))
        for i in members:
            out[i] = (z[i] - m) / (s + eps)
        return out

    def scale(groups):
        out = {}
        for members in groups.values():
            vals = [rewards[i] for i in members]
            if rrb == "paper":
                f = min((max(vals) - min(vals)) / reward_range, 1.0)  # a spread beyond R_max is capped
            elif rrb == "code":
                f = 0.1 if max(vals) < 0.15 else 1.0
            else:
                f = 1.0
            for i in members:
                out[i] = f
        return out

    zl, sl, lg = z_scores(uids)
    zg, sg, gg = z_scores(problems)
    local, glob = normalise(zl, sl), normalise(zg, sg)
    mean_d = {p: sum(difficulty[i] for i in m) / len(m) for p, m in gg.items()}
    for i in rows:
        sign = (glob[i] > 0) - (glob[i] < 0)
        glob[i] *= math.exp(kappa * (difficulty[i] - mean_d[problems[i]]) * sign)
    ls, gs = scale(lg), scale(gg)
    out = [0.0] * len(rewards)
    for i in rows:
        out[i] = local_weight * local[i] * ls[i] + global_weight * glob[i] * gs[i]
    return out


def reference_step_table(d, a):
    """The released code's tracker rule, written as the table reads."""
    if a <= 0.05:
        step = 2
    elif a <= 0.3:
        step = 1
    elif a <= 0.5:
        step = 0
    elif a <= 0.7:
        step = -1
    else:
        step = -2
    return min(9.0, max(1.0, d + step))


# ---------------------------------------------------------------- toy verl parquet rows (DIVA dataset tests)

INSTRUCTION = " Put the final answer in \\boxed{}."


def picture(shade: int) -> Image.Image:
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[..., 0] = np.linspace(0, 255, 40)[None, :]
    pixels[..., 1] = shade
    pixels[3:9, 4:12] = 255
    return Image.fromarray(pixels, "RGB")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_row(i: int, *, image=True, paraphrases=True, steps=True, problem_id=True, question_key=True) -> dict:
    question = ("<image>" if image else "") + f"What is {i} + {i}?"
    info = {"index": i, "question": question if question_key else None,
            "problem_id": f"p{i}" if problem_id else None,
            "paraphrases": [f"Compute the sum of {i} and {i}.", f"Add {i} to itself."] if paraphrases else None,
            "think_steps": [f"Write {i} twice.", "Add them.", "Check.", "Box it."] if steps else None}
    row = {"data_source": "toy", "prompt": [{"role": "user", "content": question + INSTRUCTION}],
           "ability": "math", "reward_model": {"ground_truth": str(2 * i), "style": "rule"}, "extra_info": info}
    if image:
        row["images"] = [{"bytes": png(picture(20 * i)), "path": None}]
    return row


def write_rows(path, rows) -> str:
    pd.DataFrame(rows).to_parquet(path)
    return str(path)
