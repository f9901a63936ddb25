"""The team's naming convention as enforced rules."""

from __future__ import annotations

import datetime as dt

import pytest

from lenscal.registry.ids import RegistryError, check_id, check_status, kind_of, results_dir_name

GOOD = {
    "training": [
        "gen1",
        "gen4",
        "gen5a",
        "gen12c",
        "resnet-gen1",
        "resnet-gen2",
        "paperIV_resnet18",
        "paired_baseline",
        "unpaired_matched_residual_hardneg",
        "resnet18_baseline_v1",
    ],
    "diagnostic": ["D01", "D05", "D99"],
    "evaluation": ["E04-eval", "E04-IM1", "E04-IM2", "E12-grid_v2"],
    "injection_model": ["IM1", "IM2", "IM10"],
}
BAD = {
    "training": ["gen", "Gen4", "gen4ab", "gen-4", "resnet_gen1x-", "paperIV", "paired-baseline.yaml", "D05"],
    "diagnostic": ["D5", "D005", "d05", "D05a", "D-05"],
    "evaluation": ["E4-IM1", "E04", "E04-", "E04_IM1", "e04-IM1"],
    "injection_model": ["IM", "IMx", "im1", "IM1a"],
}


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_good_ids_pass_and_imply_their_kind(kind: str) -> None:
    for run_id in GOOD[kind]:
        assert check_id(kind, run_id) == run_id
        assert kind_of(run_id) == kind


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_ids_are_refused_with_the_rule(kind: str) -> None:
    for run_id in BAD[kind]:
        with pytest.raises(RegistryError, match=rf"bad {kind} ID '{run_id}': the rule is "):
            check_id(kind, run_id)


def test_wrong_kind_hint_and_unknown_kind() -> None:
    with pytest.raises(RegistryError, match="'D05' looks like a diagnostic ID"):
        check_id("evaluation", "D05")
    with pytest.raises(RegistryError, match="unknown record kind 'run'"):
        check_id("run", "D05")


def test_statuses_and_results_dir() -> None:
    assert check_status("Completed") == "Complete"
    assert check_status("not trained") == "Not trained"
    with pytest.raises(RegistryError, match="unknown status 'Done-ish'"):
        check_status("Done-ish")
    name = results_dir_name("D05", dt.date(2026, 2, 14), "full_reeval")
    assert name == "D05_20260214_full_reeval"
    with pytest.raises(RegistryError, match="lowercase letters and digits"):
        results_dir_name("D05", dt.date(2026, 2, 14), "Full Re-eval")


@pytest.mark.parametrize(
    ("kind", "run_id", "fragment"),
    [
        ("diagnostic", "D٠٥", "ASCII only (found '٠', U+0660)"),
        ("training", "gen５", "ASCII only (found '５', U+FF15)"),
        ("training", "gen٣", "ASCII only"),
        ("evaluation", "E０４-IM1", "ASCII only"),
        ("training", "gen" + "5" * 4999, "5002 characters, at most 64"),
    ],
)
def test_look_alike_and_huge_ids_are_refused_with_the_rule(kind: str, run_id: str, fragment: str) -> None:
    with pytest.raises(RegistryError, match="the rule is") as err:
        check_id(kind, run_id)
    assert fragment in str(err.value)
    assert kind_of(run_id) is None
