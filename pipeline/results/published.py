"""Published results that ``defr evaluate --compare NAME`` prints beside a run's numbers, with sources.

Only numbers read from a source the project can name exactly are listed: the DEFR paper (Jin et al., "The Overlooked
Classifier in Human-Object Interaction Recognition", ECCV 2022; ``../shared/paper/defr-paper.md``), its
Table 10 (HICO-DET, Default setting, detectors fine-tuned on HICO-DET; each method's numbers as the DEFR
paper reports them from the cited paper) and Tables 2 / 3 (HICO classification mAP, Few@k). No
Known-Object numbers are published there. HICO-DET's zero-shot settings (:data:`ZERO_SHOT`): the tables
GEN-VLKT's and HOICLIP's authors publish in their repositories' READMEs, with the commit read (their
released models, scored by the authors). Percent.
"""
from __future__ import annotations

T10 = "DEFR paper (Jin et al., ECCV 2022), Table 10"
T2 = "DEFR paper (Jin et al., ECCV 2022), Table 2"
T3 = "DEFR paper (Jin et al., ECCV 2022), Table 3"

HICODET = {
    "ppdm": ("PPDM, Hourglass-104", 21.94, 13.97, 24.32),
    "bansal": ("Bansal et al., ResNet-101", 21.96, 16.43, 23.63),
    "gg-net": ("GG-Net, Hourglass-104", 23.47, 16.48, 25.60),
    "vcl": ("VCL, ResNet-50", 23.63, 17.21, 25.55),
    "drg": ("DRG, ResNet-50-FPN", 24.53, 19.47, 26.04),
    "idn": ("IDN, ResNet-50", 26.29, 22.61, 27.39),
    "atl": ("ATL, ResNet-50", 28.53, 21.64, 30.59),
    "scg": ("SCG, ResNet-50-FPN", 31.33, 24.72, 33.31),
    "hoi-trans": ("HOI-Trans, ResNet-50", 23.46, 16.91, 25.41),
    "qpic": ("QPIC, ResNet-50", 29.07, 21.85, 31.23),
    "hotr": ("HOTR, ResNet-50", 25.10, 17.34, 27.42),
    "as-net": ("AS-Net, ResNet-50", 28.87, 24.25, 30.25),
    "cdn-b": ("CDN-B, ResNet-50", 31.78, 27.55, 33.05),
    "cdn-l": ("CDN-L, ResNet-101", 32.07, 27.19, 33.53),
    "defr-b16": ("DEFR, ViT-B/16", 32.35, 33.45, 32.02),
    "defr-l14": ("DEFR, ViT-L/14", 35.36, 38.28, 34.49),
}
# name: (label, mAP, Few@1, Few@5, Few@10, source); None where the table has no number.
HICO = {
    "r-cnn-star": ("R*CNN", 28.5, None, None, None, T2),
    "girdhar": ("Girdhar et al.", 34.6, None, None, None, T2),
    "mallya": ("Mallya et al.", 36.1, None, None, None, T2),
    "pairwise-part": ("Pairwise-Part", 39.9, 13.0, 19.8, 22.3, T3),
    "pastanet": ("PastaNet", 46.3, 24.7, 31.8, 33.1, T3),
    "hake": ("HAKE", 47.1, 25.4, 32.5, 33.7, T3),
    "defr-32": ("DEFR/32 (ViT-B/32)", 60.5, None, None, None, T2),
    "defr-16": ("DEFR/16 (ViT-B/16)", 65.6, 52.7, 56.9, 57.2, T3),
}


# HICO-DET zero-shot settings (Default protocol), as each method's authors publish them in their repository's
# README: name -> (label, source, {setting: (Unseen, Seen, Full)}).
GEN_VLKT_README = "GEN-VLKT README (github.com/YueLiao/gen-vlkt @ 154dbd96b569), 'Zero-shot HOI Detection Results'"
HOICLIP_README = "HOICLIP README (github.com/Artanic30/HOICLIP @ 06b65177e593), 'Zero-shot HOI Detection Results'"
ZERO_SHOT = {
    "gen-vlkt-s": ("GEN-VLKT-S, ResNet-50", GEN_VLKT_README, {
        "rf-uc": (21.36, 32.91, 30.56), "nf-uc": (25.05, 23.38, 23.71), "uo": (10.51, 28.92, 25.63),
        "uv": (20.96, 30.23, 28.74)}),
    "hoiclip": ("HOICLIP, ResNet-50", HOICLIP_README, {
        "rf-uc": (25.53, 34.85, 32.99), "nf-uc": (26.39, 28.10, 27.75), "uo": (16.20, 30.99, 28.53),
        "uv": (24.30, 32.19, 31.09)}),
}


def names(benchmark: str) -> list[str]:
    return sorted(HICODET) + sorted(ZERO_SHOT) if benchmark == "hicodet" else sorted(HICO)


def lookup(benchmark: str, wanted: list[str], zero_shot: str = "none") -> list[dict]:
    """Rows for ``wanted`` names (case-insensitive); with a HICO-DET ``zero_shot`` setting, names of
    :data:`ZERO_SHOT` give that setting's row (``kind`` "zero_shot": unseen, seen, full).

    Raises:
        ValueError: an unknown name, listing the known ones; a zero-shot result without a setting.
    """
    table = HICODET if benchmark == "hicodet" else HICO
    rows = []
    for name in wanted:
        key = name.lower()
        if benchmark == "hicodet" and key in ZERO_SHOT:
            if zero_shot == "none":
                raise ValueError(f"--compare {name!r}: published for HICO-DET's zero-shot settings only; add "
                                 "--zero-shot rf-uc|nf-uc|uo|uv")
            label, source, settings = ZERO_SHOT[key]
            unseen, seen, full = settings[zero_shot]
            rows.append({"name": key, "method": label, "kind": "zero_shot", "setting": zero_shot, "unseen": unseen,
                         "seen": seen, "full": full, "source": source})
            continue
        if key not in table:
            known = sorted(table) + (sorted(ZERO_SHOT) if benchmark == "hicodet" else [])
            raise ValueError(f"--compare {name!r}: no published {benchmark} result by that name; known: "
                             f"{', '.join(known)}")
        if benchmark == "hicodet":
            label, full, rare, non_rare = table[key]
            rows.append({"name": key, "method": label, "full": full, "rare": rare, "non_rare": non_rare, "source": T10})
        else:
            label, m, f1, f5, f10, source = table[key]
            rows.append({"name": key, "method": label, "map": m, "few1": f1, "few5": f5, "few10": f10,
                         "source": source})
    return rows
